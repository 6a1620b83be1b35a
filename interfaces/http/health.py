"""``/health`` (the process is alive) and ``/ready`` (its dependencies answer)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from infrastructure.bootstrap import Container
from interfaces.http.deps import ContainerDep
from interfaces.http.routing import DirectRoute

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"], route_class=DirectRoute)


def readiness(container: Container) -> dict[str, Any]:
    """Each dependency's state: ``ok`` or why not."""
    checks: dict[str, Any] = {}
    try:
        container.app.recorder.max_notification_id()
        checks["event_store"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        checks["event_store"] = f"unavailable: {type(error).__name__}"
    try:
        with container.read_engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["read_models"] = "ok"
    except Exception as error:  # noqa: BLE001
        checks["read_models"] = f"unavailable: {type(error).__name__}"
    try:
        # Through the circuit breaker: fails fast while it is open, probes when half-open.
        container.blobs.health()
        checks["blob_storage"] = "ok"
    except Exception as error:  # noqa: BLE001
        checks["blob_storage"] = f"unavailable: {error}"
    return checks


@router.get("/health", summary="The process is alive")
def health() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


@router.get("/ready", summary="The database (and blob storage) answer", response_model=None)
def ready(container: ContainerDep) -> JSONResponse:
    """200 when every dependency answers, else 503 with the failing ones."""
    checks = readiness(container)
    ok = all(value == "ok" for value in checks.values())
    if not ok:
        log.warning("not ready", extra={"checks": checks})
    return JSONResponse(
        {
            "status": "ready" if ok else "unavailable",
            "checks": checks,
            "storage_breaker": container.blobs.snapshot().as_dict(),
        },
        status_code=200 if ok else 503,
    )

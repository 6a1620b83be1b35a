"""Server processes leave what start-up built out of garbage collection."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from interfaces.http.serving import FrozenAfterStartup, young_generation_threshold


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """Give this test process its collector back, whatever the test froze or set."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_what_exists_once_started_is_frozen_and_requests_pass_through() -> None:
    seen_at_startup: list[int] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        seen_at_startup.append(gc.get_freeze_count())
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    default = gc.get_threshold()
    with TestClient(FrozenAfterStartup(app)) as client:
        # Not while the app was starting, but as soon as it said it had started.
        assert seen_at_startup == [0]
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == default
        assert client.get("/ping").json() == {"ok": True}


def test_the_command_service_collects_its_youngest_generation_less_often() -> None:
    app = FastAPI()
    threshold = young_generation_threshold("commands")
    assert threshold is not None and threshold > gc.get_threshold()[0]
    assert young_generation_threshold("queries") is None

    with TestClient(FrozenAfterStartup(app, threshold)):
        assert gc.get_threshold()[0] == threshold

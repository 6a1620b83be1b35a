"""``/api/v1/audit``: the event log itself, time travel and the integrity check.

For callers whose access token carries the ``auditor`` role: anonymous callers
get 401, everyone else 403. Answers come straight from the event store (no
read model, so no ``X-Min-Position``) and never unseal personal data.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from application.audit import AggregateState, AuditEvent, AuditPage, VerifyReport
from application.errors import Forbidden
from interfaces.http.deps import ContainerDep, SettingsDep
from interfaces.http.errors import ApiError
from interfaces.http.queries.params import Instant, Position
from interfaces.http.routing import DirectRoute
from interfaces.http.security import Caller, CurrentCaller

AUDITOR = "auditor"
_HASH = re.compile(r"^[0-9a-f]{64}$")

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], route_class=DirectRoute)


def require_auditor(caller: CurrentCaller) -> Caller:
    """The caller, if their token carries the auditor role; 403 otherwise."""
    if AUDITOR not in caller.roles:
        raise Forbidden("this needs the auditor role")
    return caller


Auditor = Annotated[Caller, Depends(require_auditor)]


class AuditEventOut(BaseModel):
    """One event of the log; sealed personal data stays sealed in ``data``."""

    position: int
    aggregate_id: UUID
    version: int
    type: str
    topic: str
    recorded_at: datetime | None
    hash: str | None
    data: dict[str, Any]


class AuditPageOut(BaseModel):
    """A page of the log; pass ``next_cursor`` back as ``after`` for the next one."""

    items: list[AuditEventOut]
    next_cursor: str | None


class AggregateStateOut(BaseModel):
    """An aggregate as of some version."""

    aggregate_id: UUID
    version: int
    type: str
    created_on: datetime
    modified_on: datetime
    state: dict[str, Any]


class VerifyOut(BaseModel):
    """The outcome of recomputing the integrity chain over the whole log."""

    ok: bool
    checked: int
    first_broken_position: int | None
    reason: str | None
    head_position: int
    head_hash: str | None


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422, "validation_error", f"{field} {message}", fields=[{"field": field, "message": message}]
    )


def _limit(settings: SettingsDep, limit: Annotated[int | None, Query(ge=1)] = None) -> int:
    if limit is None:
        return settings.page_limit_default
    if limit > settings.page_limit_max:
        raise _invalid("limit", f"must be at most {settings.page_limit_max}")
    return limit


Limit = Annotated[int, Depends(_limit)]
After = Annotated[Position, Query(description="Only events after this position (a cursor).")]


def _page(page: AuditPage) -> AuditPageOut:
    return AuditPageOut(items=[_event(e) for e in page.items], next_cursor=page.next_cursor)


def _event(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        position=event.position,
        aggregate_id=event.aggregate_id,
        version=event.version,
        type=event.type,
        topic=event.topic,
        recorded_at=event.recorded_at,
        hash=event.hash,
        data=event.data,
    )


@router.get("/events", response_model=AuditPageOut, summary="The global event log")
def events(
    _auditor: Auditor,
    container: ContainerDep,
    limit: Limit,
    after: After = 0,
    event_type: Annotated[
        str | None,
        Query(
            alias="type",
            max_length=200,
            description="An event type such as User.Registered, or a full topic.",
        ),
    ] = None,
    aggregate_id: UUID | None = None,
    start: Annotated[Instant | None, Query(alias="from")] = None,
    end: Annotated[Instant | None, Query(alias="to")] = None,
) -> AuditPageOut:
    """Events by position, optionally of one type, one aggregate, or recorded in [from, to]."""
    if start is not None and end is not None and start > end:
        raise _invalid("from", "must not be after to")
    return _page(
        container.audit.events(
            after=after,
            limit=limit,
            event_type=event_type,
            aggregate_id=aggregate_id,
            start=start,
            end=end,
        )
    )


@router.get(
    "/aggregates/{aggregate_id}/events",
    response_model=AuditPageOut,
    summary="One aggregate's history",
)
def aggregate_events(
    aggregate_id: UUID,
    _auditor: Auditor,
    container: ContainerDep,
    limit: Limit,
    after: After = 0,
) -> AuditPageOut:
    """The aggregate's events in order; 404 for an id the log has never seen."""
    page = container.audit.events(after=after, limit=limit, aggregate_id=aggregate_id)
    if not page.items and after == 0:
        raise ApiError(404, "not_found", "no aggregate has this id")
    return _page(page)


@router.get(
    "/aggregates/{aggregate_id}/state",
    response_model=AggregateStateOut,
    summary="An aggregate as of a version or an instant (time travel)",
)
def aggregate_state(
    aggregate_id: UUID,
    _auditor: Auditor,
    container: ContainerDep,
    version: Annotated[Position | None, Query(ge=1)] = None,
    at: Instant | None = None,
) -> AggregateStateOut:
    """Rebuilt from its events up to ``version``, or those recorded by ``at`` (else all)."""
    if version is not None and at is not None:
        raise _invalid("version", "give either version or at, not both")
    state: AggregateState = container.audit.state(aggregate_id, version=version, at=at)
    return AggregateStateOut(
        aggregate_id=state.aggregate_id,
        version=state.version,
        type=state.type,
        created_on=state.created_on,
        modified_on=state.modified_on,
        state=state.state,
    )


@router.get("/verify", response_model=VerifyOut, summary="Check the log's integrity chain")
def verify(
    _auditor: Auditor,
    container: ContainerDep,
    anchor_position: Annotated[Position | None, Query(ge=1)] = None,
    anchor_hash: Annotated[str | None, Query(description="64 hex digits")] = None,
) -> VerifyOut:
    """Recompute every link; with an anchor kept from an earlier head, also check it."""
    if (anchor_position is None) != (anchor_hash is None):
        raise _invalid("anchor_hash", "give anchor_position and anchor_hash together")
    anchor = None
    if anchor_position is not None and anchor_hash is not None:
        if not _HASH.match(anchor_hash):
            raise _invalid("anchor_hash", "must be 64 lower-case hex digits")
        anchor = (anchor_position, bytes.fromhex(anchor_hash))
    report: VerifyReport = container.audit.verify(anchor=anchor)
    return VerifyOut(
        ok=report.ok,
        checked=report.checked,
        first_broken_position=report.first_broken_position,
        reason=report.reason,
        head_position=report.head_position,
        head_hash=report.head_hash,
    )

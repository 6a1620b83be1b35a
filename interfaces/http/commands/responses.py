"""Command responses: every one carries ``X-Event-Position``."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from application.unit_of_work import Committed
from interfaces.http.json import OrjsonResponse

POSITION_HEADER = "X-Event-Position"


def committed_response(
    committed: Committed[Any], status_code: int = 200, body: dict[str, Any] | None = None
) -> Response:
    """A JSON (or empty, for 204) response with the log position the command reached.

    Rendered by orjson, as the read side's answers are: ``body`` may hold UUIDs
    and aware datetimes as they are.
    """
    headers = {POSITION_HEADER: str(committed.position)}
    if body is None:
        return Response(status_code=status_code, headers=headers)
    return OrjsonResponse(body, status_code=status_code, headers=headers)

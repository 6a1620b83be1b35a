"""Pure ASGI middleware shared by both services.

``RequestContext`` gives each request an id (``X-Request-ID``, taken from the
client when sane), logs one line per request, lets handlers and dependencies
add response headers (cookies of a sliding renewal, for instance), and refuses
bodies over the size limit before they are read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from interfaces.http.errors import ApiError
from interfaces.logging import request_id_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("theplaylist.access")

_EXTRA_HEADERS = "theplaylist.extra_headers"
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")


def add_response_header(request: Request, name: str, value: str) -> None:
    """Add a header to whatever response this request ends with."""
    request.scope.setdefault(_EXTRA_HEADERS, []).append(
        (name.lower().encode("latin-1"), value.encode("latin-1"))
    )


class BodyTooLarge(ApiError, StarletteHTTPException):  # type: ignore[misc]  # headers: ApiError's dict wins
    """The request body passed its limit while being read (mapped to 413 like any ApiError).

    Also an HTTPException: FastAPI re-raises those when met while it parses a body,
    but turns any other exception there into a 400.
    """

    def __init__(self, limit: int) -> None:
        message = f"the request body is larger than {limit} bytes"
        StarletteHTTPException.__init__(self, 413, message)
        ApiError.__init__(self, 413, "payload_too_large", message)


def _envelope(code: str, message: str, **extra: Any) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, **extra}}).encode()


class RequestContext:
    """Request id, access log, extra headers and body-size limits."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        json_limit: int,
        multipart_limit: int,
    ) -> None:
        self.app = app
        self.json_limit = json_limit
        self.multipart_limit = multipart_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Only three headers matter here: decode those, not all of them.
        given, content_type, declared = b"", b"", None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value.decode("latin-1")
        # 32 random hex digits, as a UUID's hex would be, without building the UUID.
        request_id = (
            given.decode("latin-1") if _SANE_REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
        )
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        is_multipart = content_type.startswith(b"multipart/form-data")
        limit = self.multipart_limit if is_multipart else self.json_limit

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(b"x-request-id", request_id.encode())]
                extra.extend(scope.get(_EXTRA_HEADERS, []))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            if declared is not None and not (declared.isascii() and declared.isdigit()):
                await self._refuse(
                    send_with_headers,
                    400,
                    "bad_request",
                    "the Content-Length header is not a non-negative integer",
                )
                return
            if declared is not None and int(declared) > limit:
                await self._refuse(
                    send_with_headers,
                    413,
                    "payload_too_large",
                    f"the request body is larger than {limit} bytes",
                )
                return
            if b"%00" in scope.get("query_string", b""):
                # No parameter takes NUL, and PostgreSQL text cannot hold it: refused
                # here, once, rather than as a database error behind every route.
                await self._refuse(
                    send_with_headers,
                    422,
                    "validation_error",
                    "the query string contains a NUL character",
                    fields=[{"field": "query", "message": "must not contain NUL (%00)"}],
                )
                return
            await self.app(scope, _limited(receive, limit), send_with_headers)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            request_id_var.reset(token)

    @staticmethod
    async def _refuse(send: Send, status: int, code: str, message: str, **extra: Any) -> None:
        body = _envelope(code, message, **extra)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _limited(receive: Receive, limit: int) -> Receive:
    """A ``receive`` that raises :class:`BodyTooLarge` once more than ``limit`` bytes came."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped

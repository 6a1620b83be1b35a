"""``Idempotency-Key`` on unsafe requests of the command service (pure ASGI middleware).

A retry with the same key (and the same user) gets the first response again,
status, headers (``X-Event-Position`` included) and body, marked with
``Idempotent-Replayed: true``, and appends nothing. The key is scoped per user;
anonymous requests (register, login) share one scope, where the request's
fingerprint keeps strangers apart: a key reused with a different request is
refused with 422 ``idempotency_key_reused``. Of concurrent requests with one
key, one runs and the others wait for its response (up to a setting, then 409
``idempotency_in_progress``).

Responses worth a retry are not remembered: 5xx (the key is freed), and 401,
403 and 429, which depend on credentials or timing rather than on the request.
The body is spooled (to disk past 1 MiB) so that it can be fingerprinted before
the request runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import tempfile
import time
from datetime import timedelta
from typing import IO, Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware

from infrastructure.bootstrap import Container
from infrastructure.idempotency import KeyRef, Outcome, SqlIdempotencyStore, StoredResponse
from infrastructure.tokens import InvalidToken
from interfaces.http.errors import ApiError, error_response
from interfaces.http.middleware import ASGIApp, Message, Receive, Scope, Send

HEADER = "idempotency-key"
_RAW_HEADER = HEADER.encode()
REPLAYED_HEADER = (b"idempotent-replayed", b"true")
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NOT_REMEMBERED = frozenset({401, 403, 408, 429})
_SPOOL_IN_MEMORY = 1024 * 1024
_MAX_REMEMBERED_BODY = 1024 * 1024
_CHUNK = 64 * 1024
_PURGE_EVERY_SECONDS = 60.0
_POLL_FIRST, _POLL_MAX = 0.01, 0.2


def install_idempotency(app: FastAPI) -> None:
    """Add the middleware innermost, inside the request context and size limits."""
    app.user_middleware.append(Middleware(IdempotencyMiddleware))


def _valid_key(key: str) -> bool:
    return 1 <= len(key) <= 255 and all(0x21 <= ord(ch) <= 0x7E for ch in key)


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def _form_boundary(content_type: str) -> bytes | None:
    """The multipart boundary a ``Content-Type`` names, or None."""
    if not content_type.lower().startswith("multipart/"):
        return None
    found = _BOUNDARY.search(content_type)
    return None if found is None else found.group(1).encode("latin-1")


class _Spool:
    """The request body, kept to be fingerprinted and then replayed to the app.

    A multipart body is fingerprinted without its boundary: clients draw a new
    one for every request, retries included, and a retry must match its first try.
    """

    def __init__(self, boundary: bytes | None) -> None:
        self._digest = hashlib.sha256()
        self._delimiter = b"--" + boundary if boundary else b""
        self._tail = b""
        self._memory: list[bytes] = []
        self._size = 0
        self._file: IO[bytes] | None = None

    def _fingerprint(self, chunk: bytes) -> None:
        if not self._delimiter:
            self._digest.update(chunk)
            return
        # A delimiter may straddle two chunks: hold back what could start one.
        data = (self._tail + chunk).replace(self._delimiter, b"")
        keep = len(self._delimiter) - 1
        self._digest.update(data[:-keep])
        self._tail = data[-keep:]

    def digest(self) -> bytes:
        """The body's SHA-256 (boundaries left out), once it is all written."""
        self._digest.update(self._tail)
        self._tail = b""
        return self._digest.digest()

    async def write(self, chunk: bytes) -> None:
        self._fingerprint(chunk)
        self._size += len(chunk)
        if self._file is None and self._size <= _SPOOL_IN_MEMORY:
            self._memory.append(chunk)
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
            for kept in self._memory:
                await run_in_threadpool(self._file.write, kept)
            self._memory = []
        await run_in_threadpool(self._file.write, chunk)

    async def chunks(self) -> list[bytes] | IO[bytes]:
        if self._file is None:
            return self._memory
        await run_in_threadpool(self._file.seek, 0)
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class IdempotencyMiddleware:
    """Remembers the outcome of unsafe requests that carry an ``Idempotency-Key``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._last_purge = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _UNSAFE:
            await self.app(scope, receive, send)
            return
        # Most commands carry no key: look for it before decoding any header.
        # ASGI says names come lowercased; a retry must not run twice if one does not.
        raw_headers = scope["headers"]
        if not any(name.lower() == _RAW_HEADER for name, _ in raw_headers):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
        key = headers[HEADER]
        if not _valid_key(key):
            await self._refuse(
                scope, receive, send, 422, "validation_error",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
                fields=[{"field": "Idempotency-Key", "message": "is not a valid key"}],
            )  # fmt: skip
            return
        container: Container = scope["app"].state.container
        owner = self._owner(headers, scope, container)
        if owner is None:
            # A token that does not verify: the request will be refused anyway.
            await self.app(scope, receive, send)
            return
        store = container.idempotency
        spool = _Spool(_form_boundary(headers.get("content-type", "")))
        try:
            try:
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    await spool.write(message.get("body", b""))
                    more = message.get("more_body", False)
            except ApiError as error:  # the body passed its size limit while read
                await self._refuse(scope, receive, send, error.status, error.code, error.message)
                return
            ref = store.ref(owner, key)
            fingerprint = store.fingerprint(
                scope["method"].encode(),
                scope["path"].encode(),
                scope.get("query_string", b""),
                headers.get("content-type", "").partition(";")[0].strip().lower().encode(),
                spool.digest(),
            )
            await self._handle(scope, receive, send, container, ref, fingerprint, spool)
        finally:
            spool.close()
        await self._purge_now_and_then(container)

    @staticmethod
    def _owner(headers: dict[str, str], scope: Scope, container: Container) -> str | None:
        token = None
        authorization = headers.get("authorization")
        if authorization is not None:
            kind, _, value = authorization.partition(" ")
            if kind.lower() != "bearer" or not value.strip():
                return None
            token = value.strip()
        else:
            for raw in headers.get("cookie", "").split(";"):
                name, _, value = raw.strip().partition("=")
                if name == "access_token" and value:
                    token = value
        if token is None:
            return "anonymous"
        try:
            return f"user:{container.tokens.verify(token).user_id}"
        except InvalidToken:
            return None

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        container: Container,
        ref: KeyRef,
        fingerprint: str,
        spool: _Spool,
    ) -> None:
        store: SqlIdempotencyStore = container.idempotency
        settings = container.settings
        deadline = time.monotonic() + settings.idempotency_wait_seconds
        delay = _POLL_FIRST
        claim = await run_in_threadpool(store.claim, ref, fingerprint, container.clock.now())
        while claim.outcome is Outcome.IN_PROGRESS:
            if time.monotonic() >= deadline:
                await self._refuse(
                    scope, receive, send, 409, "idempotency_in_progress",
                    "a request with this Idempotency-Key is still running; retry shortly",
                    headers={"Retry-After": "1"},
                )  # fmt: skip
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
            now = container.clock.now()
            looked = await run_in_threadpool(store.look, ref, fingerprint, now)
            # Freed (the first request failed): this one may run it now.
            if looked is None:
                looked = await run_in_threadpool(store.claim, ref, fingerprint, now)
            claim = looked
        if claim.outcome is Outcome.MISMATCH:
            await self._refuse(
                scope, receive, send, 422, "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request",
            )  # fmt: skip
            return
        if claim.outcome is Outcome.REPLAY:
            assert claim.response is not None
            await self._replay(claim.response, send)
            return
        await self._run(scope, receive, send, container, ref, spool)

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        container: Container,
        ref: KeyRef,
        spool: _Spool,
    ) -> None:
        store = container.idempotency
        chunks = await spool.chunks()
        started: dict[str, Any] = {}
        body: list[bytes] = []
        size = 0
        body_sent = False

        async def replay_body() -> Message:
            nonlocal body_sent
            if body_sent:
                return await receive()
            if isinstance(chunks, list):
                body_sent = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            chunk = await run_in_threadpool(chunks.read, _CHUNK)
            if len(chunk) < _CHUNK:
                body_sent = True
            return {"type": "http.request", "body": chunk, "more_body": not body_sent}

        async def record(message: Message) -> None:
            nonlocal size
            if message["type"] == "http.response.start":
                started.update(status=message["status"], headers=list(message.get("headers", [])))
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
                if size <= _MAX_REMEMBERED_BODY:
                    body.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_body, record)
        except BaseException:
            await run_in_threadpool(store.release, ref)
            raise
        status = started.get("status", 500)
        if status >= 500 or status in _NOT_REMEMBERED or size > _MAX_REMEMBERED_BODY:
            await run_in_threadpool(store.release, ref)
            return
        response = StoredResponse(status, started["headers"], b"".join(body))
        ttl = timedelta(seconds=container.settings.idempotency_ttl_seconds)
        await run_in_threadpool(store.complete, ref, response, container.clock.now(), ttl)

    @staticmethod
    async def _replay(response: StoredResponse, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [*response.headers, REPLAYED_HEADER],
            }
        )
        await send({"type": "http.response.body", "body": response.body, "more_body": False})

    @staticmethod
    async def _refuse(
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        await error_response(status, code, message, headers, **extra)(scope, receive, send)

    async def _purge_now_and_then(self, container: Container) -> None:
        if time.monotonic() - self._last_purge < _PURGE_EVERY_SECONDS:
            return
        self._last_purge = time.monotonic()
        await run_in_threadpool(container.idempotency.purge, container.clock.now())

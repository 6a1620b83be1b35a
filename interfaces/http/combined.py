"""The embedded default: both services and the projectors behind one port.

Requests are routed by the rule of API.md: everything under /api/v1/auth/ and
every non-GET/HEAD request under /api/v1/ goes to the command service, other
/api/v1/ requests to the query service. /health, /ready and the docs are
served by a small front app whose OpenAPI schema merges both services'.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings
from interfaces.http.commands.app import create_command_app
from interfaces.http.common import make_service
from interfaces.http.middleware import Receive, Scope, Send
from interfaces.http.queries.app import create_query_app

_READ_METHODS = frozenset({"GET", "HEAD"})


def is_command(method: str, path: str) -> bool:
    """True when API.md sends this request to the command service."""
    if path.startswith("/api/v1/auth/") or path == "/api/v1/auth":
        return True
    return path.startswith("/api/v1/") and method not in _READ_METHODS


class Combined:
    """An ASGI app dispatching to the command app, the query app or the front app."""

    def __init__(self, settings: Settings, *, run_projections: bool = True) -> None:
        self.settings = settings
        self.run_projections = run_projections
        self.container: Container | None = None
        self.commands: FastAPI | None = None
        self.queries: FastAPI | None = None
        self.front: FastAPI | None = None

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        container = build(self.settings)
        self.container = container
        self.commands = create_command_app(self.settings, container)
        self.queries = create_query_app(self.settings, container)
        self.front = make_service(
            "ThePlaylist", "Commands and queries behind one port.", self.settings, container
        )
        self.front.openapi = self._merged_openapi  # type: ignore[method-assign]
        async with AsyncExitStack() as stack:
            for app in (self.commands, self.queries, self.front):
                await stack.enter_async_context(app.router.lifespan_context(app))
            if self.run_projections:
                container.start_projections()
            try:
                yield
            finally:
                container.close()

    def _merged_openapi(self) -> dict[str, Any]:
        assert self.front is not None and self.commands is not None and self.queries is not None
        if self.front.openapi_schema is None:
            merged = dict(self.commands.openapi())
            merged["info"] = {
                "title": "ThePlaylist",
                "version": "1",
                "description": "Commands and queries behind one port (routed as in API.md).",
            }
            queries = self.queries.openapi()
            # Both services serve /health and /ready alike: the paths merge without clashes.
            # A path may have methods in both (POST /api/v1/tracks, GET /api/v1/tracks):
            # merge per method, not per path.
            command_paths = merged.get("paths", {})
            query_paths = queries.get("paths", {})
            merged["paths"] = {
                path: {**query_paths.get(path, {}), **command_paths.get(path, {})}
                for path in {**query_paths, **command_paths}
            }
            components = dict(merged.get("components", {}))
            for section, entries in queries.get("components", {}).items():
                components[section] = {**entries, **components.get(section, {})}
            merged["components"] = components
            self.front.openapi_schema = merged
        return self.front.openapi_schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
            return
        assert self.commands is not None and self.queries is not None and self.front is not None
        if scope["type"] == "http" and is_command(scope["method"], scope["path"]):
            await self.commands(scope, receive, send)
        elif scope["type"] == "http" and scope["path"].startswith("/api/"):
            await self.queries(scope, receive, send)
        else:
            await self.front(scope, receive, send)

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        context = self._lifespan()
        try:
            await context.__aenter__()
        except Exception as error:  # noqa: BLE001 - reported to the server, which exits
            await send({"type": "lifespan.startup.failed", "message": str(error)})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        await context.__aexit__(None, None, None)
        await send({"type": "lifespan.shutdown.complete"})

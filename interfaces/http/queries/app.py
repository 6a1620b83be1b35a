"""The query service: every GET/HEAD under /api/v1 except /api/v1/auth."""

from __future__ import annotations

from fastapi import FastAPI

from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings
from interfaces.http.common import make_service
from interfaces.http.queries import audit as audit_routes
from interfaces.http.queries import history as history_routes
from interfaces.http.queries import playlists as playlist_routes
from interfaces.http.queries import stats as stats_routes
from interfaces.http.queries import tracks as track_routes
from interfaces.http.queries import users


def create_query_app(settings: Settings, container: Container | None = None) -> FastAPI:
    """The read side's ASGI app; it builds its own container unless given one."""
    app = make_service(
        "ThePlaylist queries",
        "The read side: answers from the read models the projectors build.",
        settings,
        container if container is not None else (lambda: build(settings)),
    )
    app.include_router(users.router)
    app.include_router(track_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(playlist_routes.router)
    app.include_router(history_routes.router)
    app.include_router(stats_routes.router)
    return app

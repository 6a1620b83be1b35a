"""The command service: every unsafe request under /api/v1, and all of /api/v1/auth."""

from __future__ import annotations

from fastapi import FastAPI

from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings
from interfaces.http.commands import auth, playback, playlists, plays, reactions, tracks, users
from interfaces.http.common import make_service
from interfaces.http.idempotency import install_idempotency
from interfaces.http.routing import include_express


def create_command_app(settings: Settings, container: Container | None = None) -> FastAPI:
    """The write side's ASGI app; it builds its own container unless given one."""
    app = make_service(
        "ThePlaylist commands",
        "The write side: commands become events in the event store.",
        settings,
        container if container is not None else (lambda: build(settings)),
    )
    app.include_router(playback.router)
    app.include_router(auth.router)
    app.include_router(users.router)
    app.include_router(playlists.router)
    app.include_router(tracks.router)
    install_idempotency(app)
    # The most frequent commands, run before the router (see ExpressLane);
    # last, so that the lane is the innermost middleware.
    include_express(app, reactions.router, plays.router)
    return app

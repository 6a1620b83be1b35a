"""What both services share: middleware, error mapping, CORS, health, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from infrastructure.bootstrap import Container
from infrastructure.settings import Settings
from interfaces.http.errors import install_error_handlers
from interfaces.http.health import router as health_router
from interfaces.http.middleware import RequestContext

ContainerSource = Callable[[], Container]


def make_service(
    title: str,
    description: str,
    settings: Settings,
    container: Container | ContainerSource,
) -> FastAPI:
    """A FastAPI app with the shared plumbing.

    ``container`` is either built already (shared with another app in one
    process, and closed by its owner) or a function that builds it at start-up,
    in which case this app's lifespan also closes it.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = not isinstance(container, Container)
        built = container() if not isinstance(container, Container) else container
        app.state.container = built
        try:
            yield
        finally:
            # The commands this loop's committer still holds are saved while it runs.
            await built.app.drain()
            if owned:
                built.close()

    app = FastAPI(
        title=title,
        description=description,
        version="1",
        lifespan=lifespan,
        # No OpenTelemetry SDK ships with the services, so FastAPI's native telemetry
        # could only ever find the API's no-op providers, yet it looks them up again
        # (environment included) on every request: a few percent of a command's CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Event-Position", "X-Request-ID", "ETag", "Content-Range"],
        )
    app.add_middleware(
        RequestContext,
        json_limit=settings.max_json_body_bytes,
        multipart_limit=settings.max_track_bytes + 1_048_576,
    )
    app.include_router(health_router)
    return app

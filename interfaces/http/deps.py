"""Dependencies over the objects built once at start-up (in the lifespan).

They are ``async def`` on purpose: they only read attributes, and FastAPI runs
every plain ``def`` dependency in the thread pool, a hop that costs more than
the whole lookup under load. Each takes the request itself rather than
another dependency: every level FastAPI resolves costs about as much as the
lookup (a tenth of a command's main-thread CPU went to resolving them).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from application.app import ThePlaylist
from infrastructure.bootstrap import Container, Queries
from infrastructure.settings import Settings


def container_of(request: Request) -> Container:
    """The container the lifespan put on the app."""
    container: Container = request.app.state.container
    return container


async def get_container(request: Request) -> Container:
    """The container the lifespan put on the app."""
    return container_of(request)


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_app(request: Request) -> ThePlaylist:
    """The write side."""
    return container_of(request).app


async def get_queries(request: Request) -> Queries:
    """The read side."""
    return container_of(request).queries


async def get_settings(request: Request) -> Settings:
    """The settings."""
    return container_of(request).settings


AppDep = Annotated[ThePlaylist, Depends(get_app)]
QueriesDep = Annotated[Queries, Depends(get_queries)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

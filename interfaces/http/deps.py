"""Dependencies over the objects built once at start-up (in the lifespan).

They are ``async def`` on purpose: they only read attributes, and FastAPI runs
every plain ``def`` dependency in the thread pool, a hop that costs more than
the whole lookup under load.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from application.app import ThePlaylist
from infrastructure.bootstrap import Container, Queries
from infrastructure.settings import Settings


async def get_container(request: Request) -> Container:
    """The container the lifespan put on the app."""
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_app(container: ContainerDep) -> ThePlaylist:
    """The write side."""
    return container.app


async def get_queries(container: ContainerDep) -> Queries:
    """The read side."""
    return container.queries


async def get_settings(container: ContainerDep) -> Settings:
    """The settings."""
    return container.settings


AppDep = Annotated[ThePlaylist, Depends(get_app)]
QueriesDep = Annotated[Queries, Depends(get_queries)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

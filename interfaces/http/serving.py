"""Running the services under uvicorn, in one process or several.

Several worker processes share one listening socket that this module binds
itself: uvicorn's own multi-worker socket is created without
``IPPROTO_TCP``, so on the plain asyncio loop the sockets it accepts never get
``TCP_NODELAY`` and every small response waits ~40 ms for a delayed ACK
(uvicorn issue #3149, measured here). A socket made with the protocol named
passes asyncio's check, and uvloop sets the option either way.

Workers are spawned (not forked) by uvicorn's supervisor, which restarts one
that dies; each builds its app from the settings in the environment through a
zero-argument factory below.
"""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING, Literal

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from infrastructure.settings import Settings
from interfaces.logging import configure_logging

if TYPE_CHECKING:
    from fastapi import FastAPI

Service = Literal["combined", "commands", "queries"]

_FACTORIES: dict[Service, str] = {
    "combined": "interfaces.http.serving:combined_app",
    "commands": "interfaces.http.serving:command_app",
    "queries": "interfaces.http.serving:query_app",
}


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def combined_app() -> object:
    """The embedded default (commands, queries, projectors) from the environment's settings."""
    from interfaces.http.combined import Combined

    return Combined(_settings())


def command_app() -> FastAPI:
    """The command service from the environment's settings."""
    from interfaces.http.commands.app import create_command_app

    return create_command_app(_settings())


def query_app() -> FastAPI:
    """The query service from the environment's settings."""
    from interfaces.http.queries.app import create_query_app

    return create_query_app(_settings())


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A bound, listening TCP socket whose accepted connections get ``TCP_NODELAY``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def run(service: Service, host: str, port: int, workers: int = 1) -> None:
    """Serve ``service`` on ``host:port`` with ``workers`` processes until stopped."""
    run_factory(_FACTORIES[service], host, port, workers)


def run_factory(factory: str, host: str, port: int, workers: int = 1) -> None:
    """Serve the app ``factory`` (``module:function``, called in each worker) until stopped."""
    config = uvicorn.Config(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    try:
        sock = listening_socket(host, port)
    except OSError as error:
        sys.stderr.write(f"cannot listen on {host}:{port}: {error.strerror}\n")
        sys.exit(STARTUP_FAILURE)
    if workers == 1:
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    Multiprocess(config, sockets=[sock]).run()

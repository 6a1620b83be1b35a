"""Running the services under uvicorn, in one process or several.

This module binds the listening sockets itself. uvicorn's own multi-worker
socket is created without ``IPPROTO_TCP``, so on the plain asyncio loop the
sockets it accepts never get ``TCP_NODELAY`` and every small response waits
~40 ms for a delayed ACK (uvicorn issue #3149, measured here). A socket made
with the protocol named passes asyncio's check, and uvloop sets the option
either way. Several workers each listen on a socket of their own on one port
(``SO_REUSEPORT``, see ``WorkersPort``), so that the kernel shares the
connections out between them.

Workers are spawned (not forked) by uvicorn's supervisor, which restarts one
that dies; each builds its app from the settings in the environment through a
zero-argument factory below.
"""

from __future__ import annotations

import gc
import socket
import sys
from typing import TYPE_CHECKING, Literal

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from infrastructure.settings import Settings
from interfaces.logging import configure_logging

if TYPE_CHECKING:
    from interfaces.http.middleware import ASGIApp, Message, Receive, Scope, Send

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


# The command service's: see FrozenAfterStartup. The others keep Python's default.
COMMANDS_YOUNG_GENERATION_THRESHOLD = 20_000


def young_generation_threshold(service: str) -> int | None:
    """The collector's youngest-generation threshold for ``service``; None: the default."""
    return COMMANDS_YOUNG_GENERATION_THRESHOLD if service == "commands" else None


class FrozenAfterStartup:
    """An app whose objects alive once it has started are left out of garbage collection.

    Start-up leaves a quarter of a million objects tracked by the collector
    (modules, routes, schemas, compiled statements, the container), and every
    full collection walked them all. Driving the query mix in process with 64
    concurrent clients against the bench population, full collections took
    8.9% of the wall time, up to 126 ms each, a pause for every request in
    flight; after ``gc.freeze()`` at start-up, 0.2% and at most 3.6 ms
    (``gc.callbacks``, 6,000 answers each). What start-up built lives as long
    as the process, so nothing is lost by never collecting it; this is what
    the ``gc`` documentation advises for servers. Only server processes do it:
    a test process builds many apps and must get their garbage back.

    Given ``young_generation_threshold``, the youngest generation is also
    collected less often. In the command service, at the default threshold
    (700 net allocations) the objects one command allocates and frees a
    moment later were enough to trigger it: 3,600 collections in 11 seconds
    of the commands bench (one worker), 0.97 s of its 11.5 s of CPU, mostly
    finding nothing to free; at 20,000, three, and 5% more commands per
    second. The other services keep the default: at 20,000 the query
    bench's mix had a p99 of 42 ms against 35 ms at the default, and the ratio
    of its rate to the trivial endpoint's was 0.55 against 0.58 (one run each).
    """

    def __init__(self, app: ASGIApp, young_generation_threshold: int | None = None) -> None:
        self.app = app
        self.young_generation_threshold = young_generation_threshold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's own answer; the lifespan's start-up freezes what it built."""
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def freeze_when_started(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.freeze()
                if self.young_generation_threshold is not None:
                    _, older, oldest = gc.get_threshold()
                    gc.set_threshold(self.young_generation_threshold, older, oldest)
            await send(message)

        await self.app(scope, receive, freeze_when_started)


def combined_app() -> FrozenAfterStartup:
    """The embedded default (commands, queries, projectors) from the environment's settings."""
    from interfaces.http.combined import Combined

    return FrozenAfterStartup(Combined(_settings()), young_generation_threshold("combined"))


def command_app() -> FrozenAfterStartup:
    """The command service from the environment's settings."""
    from interfaces.http.commands.app import create_command_app

    return FrozenAfterStartup(
        create_command_app(_settings()), young_generation_threshold("commands")
    )


def query_app() -> FrozenAfterStartup:
    """The query service from the environment's settings."""
    from interfaces.http.queries.app import create_query_app

    return FrozenAfterStartup(create_query_app(_settings()), young_generation_threshold("queries"))


def listening_socket(
    host: str, port: int, backlog: int = 2048, *, reuse_port: bool = False
) -> socket.socket:
    """A bound, listening TCP socket whose accepted connections get ``TCP_NODELAY``."""
    sock = _bound_socket(host, port, reuse_port=reuse_port)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _bound_socket(
    host: str, port: int, *, reuse_port: bool, kind: type[socket.socket] = socket.socket
) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = kind(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class WorkersPort(socket.socket):
    """The supervisor's hold on the port; each worker it is handed to listens on its own.

    With one listening socket shared by the workers, whichever worker wakes
    first accepts a whole burst of connections: 64 opened at once split
    1/63, 6/58, 11/53 or 13/51 in four tries of sixteen (measured here), and
    kept-alive connections stay where they landed, one worker busy and the
    other idle. With ``SO_REUSEPORT`` every worker listens on a socket of its
    own and the kernel spreads new connections over them by address hash.

    The supervisor hands its workers their sockets by pickling them as it
    spawns each one; this one unpickles, in the worker, as a new listening
    socket on the same port, so a restarted worker gets its own again. The
    supervisor's copy is bound but never listens (no connection is queued on
    it) and keeps the port from other services meanwhile; only one started
    in the same moment, before any worker listens, could still share it.
    """

    address: tuple[str, int, int]

    def __reduce_ex__(self, protocol: object) -> tuple[object, tuple[str, int, int]]:
        host, port, backlog = self.address
        return _worker_socket, (host, port, backlog)


def workers_port(host: str, port: int, backlog: int = 2048) -> WorkersPort:
    """The port for several workers; ``OSError`` if another service listens on it."""
    # Bound once without SO_REUSEPORT first: that fails for a port another
    # service listens on, even one whose sockets have SO_REUSEPORT too.
    _bound_socket(host, port, reuse_port=False).close()
    held = _bound_socket(host, port, reuse_port=True, kind=WorkersPort)
    assert isinstance(held, WorkersPort)
    held.address = (host, held.getsockname()[1], backlog)
    return held


def _worker_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A worker's own listening socket on the supervisor's port (see ``WorkersPort``)."""
    return listening_socket(host, port, backlog, reuse_port=True)


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
        sock = listening_socket(host, port) if workers == 1 else workers_port(host, port)
    except OSError as error:
        sys.stderr.write(f"cannot listen on {host}:{port}: {error.strerror}\n")
        sys.exit(STARTUP_FAILURE)
    if workers == 1:
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    # The supervisor stops when a worker fails to start, but returns as if stopped on purpose.
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        sys.exit(STARTUP_FAILURE)

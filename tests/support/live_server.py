"""A real uvicorn server in a background thread, for tests that need real sockets.

``live_server(app)`` serves any ASGI app (``Combined(settings)``, a single
service...) on a free port of 127.0.0.1, with its lifespan, and stops it on exit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from tests.support.postgres import free_port


@dataclass(frozen=True)
class LiveServer:
    """A running server."""

    base_url: str
    server: uvicorn.Server


@contextmanager
def live_server(app: Any, *, start_timeout: float = 60.0) -> Iterator[LiveServer]:
    """Serve ``app`` with uvicorn on a free port until the block ends."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        # The default (100) queues part of a burst of parallel requests at the socket.
        limit_concurrency=None,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    try:
        # Startup is a one-off wait on another thread's flag; nothing to wake us instead.
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server stopped during start-up (see the log)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not start within {start_timeout} s")
            time.sleep(0.01)
        yield LiveServer(f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        thread.join(timeout=30)

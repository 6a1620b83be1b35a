"""Several worker processes behind one port, and the socket they share."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from interfaces.http.serving import listening_socket
from tests.conftest import make_settings
from tests.support.accounts import API, PASSWORD
from tests.support.postgres import free_port
from tests.support.processes import run_cli, settings_env, started


def _nodelay_of_an_accepted_connection(sock: socket.socket) -> int:
    """TCP_NODELAY as the plain asyncio loop leaves it on a connection accepted from ``sock``."""

    async def main() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def accepted(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    return asyncio.run(main())


def test_connections_accepted_from_the_shared_socket_get_tcp_nodelay() -> None:
    # The socket uvicorn binds for --workers (no protocol named) is the counter-example.
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    plain.bind(("127.0.0.1", 0))
    plain.listen()
    assert _nodelay_of_an_accepted_connection(plain) == 0

    assert _nodelay_of_an_accepted_connection(listening_socket("127.0.0.1", 0)) != 0


def test_a_busy_port_stops_the_service_with_a_message(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    taken = listening_socket("127.0.0.1", 0)
    port = taken.getsockname()[1]
    env = settings_env(make_settings("sqlite", tmp_path, request))
    stopped = run_cli(["serve-queries", "--port", str(port), "--workers", "2"], env, tmp_path)
    taken.close()
    assert stopped.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in stopped.stderr
    assert "Traceback" not in stopped.stderr


def test_workers_that_fail_to_start_stop_the_service_with_a_failure_status(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Nothing listens on port 1: every worker fails its start-up on the database.
    env = settings_env(
        make_settings("sqlite", tmp_path, request),
        database_url="postgresql://nobody:secret@127.0.0.1:1/theplaylist",
    )
    for service in ("serve-commands", "serve-queries"):
        stopped = run_cli([service, "--port", str(free_port()), "--workers", "2"], env, tmp_path)
        assert stopped.returncode == 3, (service, stopped.stderr[-2000:])
        assert "failed to start" in stopped.stderr


def test_command_workers_need_postgres(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = settings_env(make_settings("sqlite", tmp_path, request))
    refused = run_cli(
        ["serve-commands", "--port", str(free_port()), "--workers", "2"], env, tmp_path
    )
    assert refused.returncode == 2
    assert "needs THEPLAYLIST_DATABASE_URL" in refused.stderr


@pytest.mark.slow
def test_two_command_workers_share_the_port_and_one_username_is_still_taken_once(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = settings_env(make_settings("postgres", tmp_path, request))
    port = free_port()
    with started(
        ["serve-commands", "--port", str(port), "--workers", "2"],
        env,
        tmp_path,
        port=port,
        name="commands",
    ) as service:
        base = service.base_url or ""
        children = Path(f"/proc/{service.process.pid}/task/{service.process.pid}/children")
        commands = [
            Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children.read_text().split()
        ]
        assert sum(b"spawn_main" in command for command in commands) == 2, commands

        def register(i: int) -> int:
            body = {"username": "popular", "email": f"p{i}@example.com", "password": PASSWORD}
            # A fresh connection per request: the kernel spreads them over both workers.
            return httpx.post(f"{base}{API}/auth/register", json=body, timeout=60).status_code

        with ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(register, range(24)))
        assert statuses.count(201) == 1, statuses
        assert statuses.count(409) == 23, statuses

        # Small answers on a kept-alive connection are not held back by Nagle's algorithm
        # waiting for a delayed ACK (which costs ~40 ms each).
        with httpx.Client(base_url=base, timeout=10) as client:
            timings = []
            for _ in range(30):
                began = time.perf_counter()
                assert client.post(f"{API}/auth/login", data={}).status_code == 422
                timings.append(time.perf_counter() - began)
        assert statistics.median(timings) < 0.03, timings
    assert service.process.returncode in (0, -15), service.log()

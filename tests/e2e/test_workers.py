"""Several worker processes behind one port, and the socket they share."""

from __future__ import annotations

import asyncio
import collections
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from interfaces.http.serving import listening_socket, workers_port
from tests.conftest import make_settings
from tests.support.accounts import API, PASSWORD
from tests.support.postgres import free_port
from tests.support.processes import run_cli, settings_env, started

FACTORY = "tests.support.pid_app:factory"


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


def _serving_pids(port: int, connections: int) -> collections.Counter[str]:
    """Which worker answers each of ``connections`` connections opened at once."""

    async def main() -> list[str]:
        opened = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(connections))
        )
        try:
            for _, writer in opened:
                writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            answers = []
            for reader, _ in opened:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                answers.append((await reader.readexactly(length)).decode())
            return answers
        finally:
            for _, writer in opened:
                writer.close()

    return collections.Counter(asyncio.run(main()))


def test_workers_share_a_burst_of_connections(tmp_path: Path) -> None:
    # One socket shared by the workers let whichever woke first take most of
    # a burst (6 of 64 for the other, in one try of twelve): each worker now
    # listens on its own socket (SO_REUSEPORT) and the kernel spreads them.
    port = free_port()
    serve = (
        "from interfaces.http.serving import run_factory; "
        f"run_factory({FACTORY!r}, '127.0.0.1', {port}, 2)"
    )
    with (tmp_path / "workers.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", serve], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while not _answers(port) or len(_serving_pids(port, 16)) < 2:
            assert process.poll() is None and time.monotonic() < deadline, (
                tmp_path / "workers.log"
            ).read_text()
            time.sleep(0.2)
        # A socket of its own for each worker (the supervisor's never listens).
        assert _listeners(port) == 2
        # Spread by address hash, about evenly: the smaller share of 64 averaged
        # 27.7 in twelve tries here, against 20.2 from a shared socket.
        smaller = [min(_serving_pids(port, 64).values(), default=0) for _ in range(10)]
        assert statistics.mean(smaller) >= 24, smaller
    finally:
        process.terminate()
        process.wait(timeout=30)


def _listeners(port: int) -> int:
    """How many sockets listen on ``port`` (IPv4), from the kernel's table."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1
        for row in rows
        if row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "0A"  # LISTEN
    )


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_port_of_running_workers_is_refused_to_another_service() -> None:
    # With SO_REUSEPORT alone, a second service (of the same user) could share
    # the port and silently take half of the connections.
    held = workers_port("127.0.0.1", 0)
    port = held.getsockname()[1]
    worker = listening_socket("127.0.0.1", port, reuse_port=True)
    try:
        with pytest.raises(OSError, match="in use"):
            workers_port("127.0.0.1", port)
        with pytest.raises(OSError, match="in use"):
            listening_socket("127.0.0.1", port)
    finally:
        worker.close()
        held.close()


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

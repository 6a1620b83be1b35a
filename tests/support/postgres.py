"""A throwaway PostgreSQL cluster: initdb + pg_ctl in a temp dir, on a free port.

PostgreSQL refuses to run as root, so as root the cluster runs as the
``postgres`` user. It listens on 127.0.0.1 only, with trust authentication
for that address, and is removed on stop.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def _find_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"PostgreSQL server binary {name!r} not found (install postgresql)")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresCluster:
    """A running cluster; ``url`` points at its ``postgres`` database as superuser."""

    directory: Path
    port: int
    user: str

    @property
    def url(self) -> str:
        """A URL for the ``theplaylist`` database."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/theplaylist"


def _run_as(user: str | None, argv: list[str]) -> None:
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def start_cluster() -> PostgresCluster:
    """initdb, start and create the ``theplaylist`` database."""
    run_as = "postgres" if os.geteuid() == 0 else None
    directory = Path(tempfile.mkdtemp(prefix="theplaylist-pg-"))
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    data = directory / "data"
    user = "theplaylist"
    _run_as(
        run_as,
        [
            _find_bin("initdb"),
            "-D",
            str(data),
            "-U",
            user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
    )
    port = free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={directory} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        "-c max_connections=300 -c shared_buffers=128MB"
    )
    _run_as(
        run_as,
        [
            _find_bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(directory / "log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
    )
    cluster = PostgresCluster(directory, port, user)
    deadline = time.monotonic() + 30
    while True:
        try:
            _run_as(
                run_as,
                [
                    _find_bin("createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    user,
                    "theplaylist",
                ],
            )
            return cluster
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop_cluster(cluster: PostgresCluster) -> None:
    """Stop the cluster fast and remove its files."""
    run_as = "postgres" if os.geteuid() == 0 else None
    with contextlib.suppress(subprocess.CalledProcessError):
        _run_as(
            run_as,
            [
                _find_bin("pg_ctl"),
                "-D",
                str(cluster.directory / "data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    shutil.rmtree(cluster.directory, ignore_errors=True)

"""Start-up on a fresh database: processes started together must not trip over each other."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from infrastructure.bootstrap import Container, build
from infrastructure.settings import Settings

STARTING_TOGETHER = 6


def test_containers_built_at_once_on_a_fresh_database_all_start(settings: Settings) -> None:
    barrier = threading.Barrier(STARTING_TOGETHER)

    def start(_: int) -> Container:
        barrier.wait()
        return build(settings)

    with ThreadPoolExecutor(STARTING_TOGETHER) as pool:
        containers = list(pool.map(start, range(STARTING_TOGETHER)))
    try:
        heads = {container.app.head for container in containers}
        assert heads == {0}
        containers[0].app.register_user("alice", "alice@example.com", "correct horse")
        assert {container.app.head for container in containers} == {containers[0].app.head}
    finally:
        for container in containers:
            container.close()

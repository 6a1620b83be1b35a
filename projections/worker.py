"""Runs every projector in its own thread until stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from projections.runner import ProjectionRunner, Wakeup


class ProjectionWorker:
    """Owns one thread per projection runner, all woken by the same signal."""

    def __init__(
        self,
        runners: Sequence[ProjectionRunner],
        wakeups: Sequence[Wakeup],
        idle_wait: float,
        coalesce: float = 0.0,
        on_batch: Callable[[], None] | None = None,
    ) -> None:
        if len(runners) != len(wakeups):
            raise ValueError("one wake-up per runner")
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=runner.run,
                args=(self._stop, wakeup, idle_wait, coalesce, on_batch),
                name=f"projection-{runner.name}",
                daemon=True,
            )
            for runner, wakeup in zip(runners, wakeups, strict=True)
        ]

    def start(self) -> None:
        """Start following the log."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop after the batch in hand (its transaction commits or rolls back whole)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

"""Runs the projectors in background threads until stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from projections.runner import ProjectionGroup, ProjectionRunner, Wakeup


class ProjectionWorker:
    """Owns the projection threads, all woken by the same signal.

    The runners in ``together`` follow the log as one
    :class:`projections.runner.ProjectionGroup`, from one thread: one read and
    one decoding of the log for all of them, whether they are catching up on
    a fresh read-model database or following new commands. Each runner in
    ``alone`` has a thread of its own: one rebuilding its read model, or a
    policy whose work outside the database (storage) must not hold the read
    models back.
    """

    def __init__(
        self,
        together: Sequence[ProjectionRunner],
        alone: Sequence[ProjectionRunner],
        subscribe: Callable[[], Wakeup],
        idle_wait: float,
        coalesce: float = 0.0,
        on_batch: Callable[[], None] | None = None,
    ) -> None:
        self._stop = threading.Event()
        followers: list[tuple[str, ProjectionGroup | ProjectionRunner]] = [
            (f"projection-{runner.name}", runner) for runner in alone
        ]
        if together:
            followers.insert(0, ("projections", ProjectionGroup(together)))
        self._threads = [
            threading.Thread(
                target=follower.run,
                args=(self._stop, subscribe(), idle_wait, coalesce, on_batch),
                name=name,
                daemon=True,
            )
            for name, follower in followers
        ]

    def start(self) -> None:
        """Start following the log."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop after the batch in hand (its transaction commits or rolls back whole)."""
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(timeout=10)

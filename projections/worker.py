"""Runs every projector in its own thread until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from projections.runner import ProjectionRunner, Wakeup, catch_up_together

log = logging.getLogger(__name__)


class ProjectionWorker:
    """Owns one thread per projection runner, all woken by the same signal.

    The runners in ``catch_up`` are first brought to the head of the log
    together (one read and one decoding of the log for all of them, see
    :func:`projections.runner.catch_up_together`): a fresh read-model database,
    or one far behind, fills several times faster than with each runner
    reading the whole log on its own. Then every runner follows the log in
    its own thread.
    """

    def __init__(
        self,
        runners: Sequence[ProjectionRunner],
        wakeups: Sequence[Wakeup],
        idle_wait: float,
        coalesce: float = 0.0,
        on_batch: Callable[[], None] | None = None,
        catch_up: Sequence[ProjectionRunner] = (),
    ) -> None:
        if len(runners) != len(wakeups):
            raise ValueError("one wake-up per runner")
        self._stop = threading.Event()
        self._on_batch = on_batch
        self._catch_up = list(catch_up)
        self._threads = [
            threading.Thread(
                target=runner.run,
                args=(self._stop, wakeup, idle_wait, coalesce, on_batch),
                name=f"projection-{runner.name}",
                daemon=True,
            )
            for runner, wakeup in zip(runners, wakeups, strict=True)
        ]
        self._starter = threading.Thread(
            target=self._catch_up_then_follow, name="projections-catch-up", daemon=True
        )

    def start(self) -> None:
        """Start following the log."""
        self._starter.start()

    def _catch_up_then_follow(self) -> None:
        try:
            catch_up_together(self._catch_up, self._stop, self._on_batch)
        except Exception:
            # The runners retry on their own, with back-off: just go on to them.
            log.exception("catching the projections up together failed")
        for thread in self._threads:
            if not self._stop.is_set():
                thread.start()

    def stop(self) -> None:
        """Stop after the batch in hand (its transaction commits or rolls back whole)."""
        self._stop.set()
        if self._starter.ident is not None:
            self._starter.join(timeout=10)
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(timeout=10)

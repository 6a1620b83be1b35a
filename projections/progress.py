"""Tells queries waiting for ``X-Min-Position`` that a projector of this process committed.

Projector threads call :meth:`ProjectionProgress.advanced` after each batch;
a waiting request registers with :meth:`ProjectionProgress.watch` *before* it
reads the positions, so a batch committed in between still wakes it. Where
the projectors run in another process nothing calls ``advanced`` and waiting
falls back to its polling interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class ProgressWatch:
    """One request's registration: resolved by the next batch any projector commits."""

    def __init__(self, progress: ProjectionProgress, future: asyncio.Future[None]) -> None:
        self._progress = progress
        self._future = future

    def cancel(self) -> None:
        """Unregister without waiting."""
        self._progress.forget(self._future)

    async def wait(self, timeout: float) -> None:
        """Return after the next batch, or after ``timeout`` seconds; then unregister."""
        try:
            await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except TimeoutError:
            pass
        finally:
            self._progress.forget(self._future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ProjectionProgress:
    """Wakes coroutines (on any event loop) from projector threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[asyncio.Future[None], asyncio.AbstractEventLoop] = {}

    def watch(self) -> ProgressWatch:
        """Register the calling coroutine for the next batch (call before reading positions)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiting[future] = loop
        return ProgressWatch(self, future)

    def watching(self) -> int:
        """How many watches are registered (none once every request is answered)."""
        with self._lock:
            return len(self._waiting)

    def forget(self, future: asyncio.Future[None]) -> None:
        """Unregister a watch that is over."""
        with self._lock:
            self._waiting.pop(future, None)

    def advanced(self) -> None:
        """A projector committed a batch: wake every watch registered so far."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for future, loop in waiting.items():
            # A loop closed meanwhile (a test's) has no one left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

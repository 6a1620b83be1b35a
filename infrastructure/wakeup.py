"""Wake-ups for idle projectors: in-process signals, and PostgreSQL LISTEN/NOTIFY.

The eventsourcing PostgreSQL recorder NOTIFYs its channel in every insert
transaction; a listener here turns those into wake-ups, so projectors on
PostgreSQL react within milliseconds to writes from any process. SQLite has
no such thing: projectors there are woken in-process by the command runner
and otherwise poll at the configured interval.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


class Wakeup:
    """A resettable signal: ``set`` by writers, ``wait``-ed on by projectors."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Wake every waiter."""
        self._event.set()

    def wait(self, timeout: float) -> None:
        """Return when woken or after ``timeout``; the signal is then reset.

        Resetting after waking and before the caller reads the log cannot lose
        events: whatever woke us was committed before the signal was sent.
        """
        self._event.wait(timeout)
        self._event.clear()


class Broadcast:
    """Sets many wake-ups at once: one per waiting projector, so none steals another's."""

    def __init__(self) -> None:
        self._wakeups: list[Wakeup] = []
        self._lock = threading.Lock()

    def subscribe(self) -> Wakeup:
        """A new wake-up that every later :meth:`set` will set."""
        wakeup = Wakeup()
        with self._lock:
            self._wakeups.append(wakeup)
        return wakeup

    def set(self) -> None:
        """Wake every subscriber."""
        with self._lock:
            wakeups = list(self._wakeups)
        for wakeup in wakeups:
            wakeup.set()


class PostgresListener:
    """LISTENs on the event store's channel and sets a :class:`Broadcast` on each NOTIFY."""

    def __init__(self, conninfo: str, channel: str, wakeup: Broadcast) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._wakeup = wakeup
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="pg-listen", daemon=True)

    def start(self) -> None:
        """Start listening in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (returns within about a second)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    # Writes may have happened while we were (re)connecting.
                    self._wakeup.set()
                    while not self._stop.is_set():
                        # A short timeout keeps stop() quick; idle LISTEN wake-ups cost nothing.
                        for _ in conn.notifies(timeout=0.1, stop_after=1):
                            self._wakeup.set()
            except psycopg.Error:
                log.warning("LISTEN connection lost; reconnecting", exc_info=True)
                self._stop.wait(1.0)

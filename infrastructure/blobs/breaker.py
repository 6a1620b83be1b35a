"""Any blob store behind a circuit breaker (purgatory) and per-operation timeouts.

Every call to the store runs with a time limit of its kind (upload, read,
delete; from settings). Consecutive failures (errors or timeouts) up to the
threshold open the circuit: calls then fail at once with
:class:`application.errors.StorageUnavailable`, whose ``retry_after`` says
when the breaker will let a trial call through. That trial (half-open) call
is the only one let through; if it succeeds the circuit closes, else it opens
again for another recovery period. A missing blob is an answer, not a
failure, and never trips the breaker.

State changes are logged, and the breaker's state and call outcomes are
exported as Prometheus metrics (``theplaylist_storage_*``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge
from purgatory import SyncCircuitBreakerFactory
from purgatory.domain.model import HALF_OPENED, OPENED, OpenedState

from application.errors import BlobNotFound, StorageUnavailable
from application.ports import BlobInfo, BlobStore

log = logging.getLogger(__name__)

T = TypeVar("T")

CALLS = Counter(
    "theplaylist_storage_calls",
    "Blob storage calls by store, operation and outcome "
    "(ok, missing, failed, timeout, rejected while the circuit is open).",
    ["store", "operation", "outcome"],
)
BREAKER_STATE = Gauge(
    "theplaylist_storage_breaker_state",
    "The blob storage circuit breaker: 0 closed, 1 half-open, 2 open.",
    ["store"],
)
BREAKER_TRANSITIONS = Counter(
    "theplaylist_storage_breaker_transitions",
    "Blob storage circuit breaker state changes, by the state entered.",
    ["store", "state"],
)

_STATE_VALUES: dict[str, int] = {"closed": 0, HALF_OPENED: 1, OPENED: 2}


class StorageTimeout(Exception):
    """A storage call ran past its time limit."""


@dataclass(frozen=True)
class BreakerTimeouts:
    """Time limits per kind of operation, in seconds."""

    upload: float
    read: float
    delete: float


@dataclass(frozen=True)
class BreakerSnapshot:
    """The breaker's state and counters, for /ready and operators."""

    store: str
    state: str
    consecutive_failures: int
    retry_after: int | None
    calls: int
    failures: int
    timeouts: int
    rejected: int
    times_opened: int

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return dict(vars(self))


class GuardedBlobStore:
    """A :class:`application.ports.BlobStore` guarding another one."""

    def __init__(
        self,
        store: BlobStore,
        *,
        name: str,
        failure_threshold: int,
        recovery_seconds: float,
        timeouts: BreakerTimeouts,
        max_workers: int = 32,
    ) -> None:
        self.inner = store
        self.name = name
        self._timeouts = timeouts
        self._recovery = recovery_seconds
        self._factory = SyncCircuitBreakerFactory(
            default_threshold=failure_threshold,
            default_ttl=recovery_seconds,
            exclude=[BlobNotFound],
        )
        self._factory.add_listener(self._on_breaker_event)
        self._breaker = self._factory.get_breaker(f"blob-storage-{name}")
        self._lock = threading.Lock()
        self._probing = False
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix=f"blobs-{name}")
        self._counts = {"calls": 0, "failures": 0, "timeouts": 0, "rejected": 0, "opened": 0}
        BREAKER_STATE.labels(name).set(0)

    # --- the breaker --------------------------------------------------------------------

    def _on_breaker_event(self, _circuit: str, kind: str, event: Any) -> None:
        if kind != "state_changed":
            return
        state = str(event.state)
        BREAKER_STATE.labels(self.name).set(_STATE_VALUES.get(state, 2))
        BREAKER_TRANSITIONS.labels(self.name, state).inc()
        if state == OPENED:
            self._counts["opened"] += 1
            log.warning(
                "blob storage circuit opened: failing fast for %.1f s",
                self._recovery,
                extra={"store": self.name, "breaker_state": state},
            )
        elif state == HALF_OPENED:
            log.info(
                "blob storage circuit half-open: letting a trial call through",
                extra={"store": self.name, "breaker_state": state},
            )
        else:
            log.info(
                "blob storage circuit closed: storage answers again",
                extra={"store": self.name, "breaker_state": state},
            )

    @property
    def state(self) -> str:
        """``closed``, ``half-opened`` or ``opened``."""
        return str(self._breaker.context.state)

    def retry_after(self) -> int:
        """Seconds until the breaker lets a trial call through (at least 1)."""
        opened_at = self._breaker.context.opened_at
        if self.state != OPENED or opened_at is None:
            return 1
        return max(1, math.ceil(opened_at + self._recovery - time.time()))

    def snapshot(self) -> BreakerSnapshot:
        """The state and counters now."""
        context = self._breaker.context
        state = self.state
        return BreakerSnapshot(
            store=self.name,
            state=state,
            consecutive_failures=int(context.failure_count or 0) if state != OPENED else 0,
            retry_after=self.retry_after() if state == OPENED else None,
            calls=self._counts["calls"],
            failures=self._counts["failures"],
            timeouts=self._counts["timeouts"],
            rejected=self._counts["rejected"],
            times_opened=self._counts["opened"],
        )

    def _reject(self, operation: str) -> StorageUnavailable:
        self._counts["rejected"] += 1
        CALLS.labels(self.name, operation, "rejected").inc()
        return StorageUnavailable(
            "blob storage is unavailable; try again later", self.retry_after()
        )

    def ensure_available(self, operation: str = "precheck") -> None:
        """Fail now, as the next call would, while the circuit is open and no trial is due.

        Lets a caller refuse work before doing any of it (an upload before its
        body is read, for instance).
        """
        with self._lock:
            context = self._breaker.context
            opened_at = context.opened_at
            if (
                self.state == OPENED
                and opened_at is not None
                and time.time() <= opened_at + self._recovery
            ) or (self.state == HALF_OPENED and self._probing):
                raise self._reject(operation)

    def _enter(self, operation: str) -> bool:
        """Ask the breaker for a call; True when this call is the half-open trial."""
        with self._lock:
            if self.state == HALF_OPENED and self._probing:
                raise self._reject(operation)
            try:
                self._breaker.__enter__()
            except OpenedState:
                raise self._reject(operation) from None
            self._counts["calls"] += 1
            trial = self.state == HALF_OPENED
            if trial:
                self._probing = True
            return trial

    def _exit(self, error: BaseException | None) -> None:
        with self._lock:
            if error is None:
                self._breaker.__exit__(None, None, None)
            else:
                self._breaker.__exit__(type(error), error, error.__traceback__)

    def _failed(self, operation: str, error: BaseException) -> StorageUnavailable:
        timed_out = isinstance(error, StorageTimeout)
        self._counts["timeouts" if timed_out else "failures"] += 1
        CALLS.labels(self.name, operation, "timeout" if timed_out else "failed").inc()
        log.warning(
            "blob storage %s failed: %s",
            operation,
            error,
            extra={"store": self.name, "operation": operation, "error": type(error).__name__},
        )
        return StorageUnavailable(
            f"blob storage failed ({operation}); try again later", self.retry_after()
        )

    def _call(self, operation: str, timeout: float | None, call: Callable[[], T]) -> T:
        trial = self._enter(operation)
        try:
            try:
                result = call() if timeout is None else self._within(timeout, operation, call)
            except BlobNotFound as missing:
                self._exit(missing)
                CALLS.labels(self.name, operation, "missing").inc()
                raise
            except Exception as error:
                self._exit(error)
                raise self._failed(operation, error) from error
            self._exit(None)
            CALLS.labels(self.name, operation, "ok").inc()
            return result
        finally:
            if trial:
                with self._lock:
                    self._probing = False

    def _within(self, timeout: float, operation: str, call: Callable[[], T]) -> T:
        future = self._executor.submit(call)
        try:
            return future.result(timeout)
        except FutureTimeout:
            # A call still queued never starts; one running ends on its socket timeout.
            future.cancel()
            raise StorageTimeout(f"{operation} took longer than {timeout:g} s") from None

    def _guard_chunks(self, operation: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Failures half-way through a stream count against the breaker too."""
        try:
            yield from chunks
        except Exception as error:
            self._exit(error)
            raise self._failed(operation, error) from error
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    # --- the store ----------------------------------------------------------------------

    def put(self, key: str, source: Path, size: int) -> None:
        """See :meth:`application.ports.BlobStore.put` (upload time limit)."""
        self._call("put", self._timeouts.upload, lambda: self.inner.put(key, source, size))

    def exists(self, key: str) -> bool:
        """See :meth:`application.ports.BlobStore.exists`."""
        return self._call("exists", self._timeouts.read, lambda: self.inner.exists(key))

    def stat(self, key: str) -> BlobInfo:
        """See :meth:`application.ports.BlobStore.stat`."""
        return self._call("stat", self._timeouts.read, lambda: self.inner.stat(key))

    def read(self, key: str, start: int, end: int) -> bytes:
        """See :meth:`application.ports.BlobStore.read`."""
        return self._call("read", self._timeouts.read, lambda: self.inner.read(key, start, end))

    def read_cached(self, key: str, start: int, end: int) -> memoryview | None:
        """See :meth:`application.ports.BlobStore.read_cached`: no time limit (it does not
        wait) and no say in the breaker's state (it never fails; :meth:`read` does)."""
        data = self.inner.read_cached(key, start, end)
        if data is not None:
            CALLS.labels(self.name, "read", "ok").inc()
        return data

    def open(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """See :meth:`application.ports.BlobStore.open` (the opening is time-limited)."""
        chunks = self._call("open", self._timeouts.read, lambda: self.inner.open(key, start, end))
        return self._guard_chunks("stream", chunks)

    def local_path(self, key: str) -> Path | None:
        """See :meth:`application.ports.BlobStore.local_path`."""
        return self._call("local_path", self._timeouts.read, lambda: self.inner.local_path(key))

    # Neither of these two calls the storage (they compute a path or sign a URL), so
    # they bypass the breaker: no time limit, not counted, not refused while it is
    # open. Its state describes this service's own path to the store; a client sent
    # to nginx or to the bucket's public endpoint takes another one.

    def delivery_path(self, key: str) -> str | None:
        """See :meth:`application.ports.BlobStore.delivery_path` (not a storage call)."""
        return self.inner.delivery_path(key)

    def presigned_url(
        self, key: str, ttl_seconds: int, content_type: str, disposition: str
    ) -> str | None:
        """See :meth:`application.ports.BlobStore.presigned_url` (not a storage call)."""
        return self.inner.presigned_url(key, ttl_seconds, content_type, disposition)

    def delete(self, key: str) -> None:
        """See :meth:`application.ports.BlobStore.delete` (delete time limit)."""
        self._call("delete", self._timeouts.delete, lambda: self.inner.delete(key))

    def list(self) -> Iterator[BlobInfo]:
        """See :meth:`application.ports.BlobStore.list` (no time limit: it may be long)."""
        listing = self._call("list", self._timeouts.read, lambda: iter(self.inner.list()))
        return self._guard_chunks_of(listing)

    def _guard_chunks_of(self, items: Iterator[BlobInfo]) -> Iterator[BlobInfo]:
        try:
            yield from items
        except Exception as error:
            self._exit(error)
            raise self._failed("list", error) from error

    def sweep_incomplete(self, older_than: datetime) -> int:
        """See :meth:`application.ports.BlobStore.sweep_incomplete`."""
        return self._call("sweep", None, lambda: self.inner.sweep_incomplete(older_than))

    def health(self) -> None:
        """See :meth:`application.ports.BlobStore.health`: a trial call when half-open."""
        self._call("health", self._timeouts.read, self.inner.health)

    def close(self) -> None:
        """Stop the worker threads and close the store."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.inner.close()

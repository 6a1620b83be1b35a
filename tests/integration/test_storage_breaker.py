"""The circuit breaker in front of blob storage: real outages (moto stopped), timeouts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from application.errors import BlobNotFound, StorageUnavailable
from infrastructure.blobs.breaker import BreakerTimeouts, GuardedBlobStore
from infrastructure.blobs.disk import DiskBlobStore
from infrastructure.blobs.s3 import S3BlobStore, S3Options
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Endpoint, s3_endpoint

KEY = "ab" * 32
RECOVERY = 0.2
TIMEOUTS = BreakerTimeouts(upload=5, read=5, delete=5)


@pytest.fixture
def endpoint() -> Iterator[S3Endpoint]:
    """A moto server of this test's own: the test stops and restarts it."""
    with s3_endpoint() as running:
        yield running


def _guarded(store: DiskBlobStore | S3BlobStore, **overrides: object) -> GuardedBlobStore:
    options: dict[str, object] = {
        "name": "test",
        "failure_threshold": 3,
        "recovery_seconds": RECOVERY,
        "timeouts": TIMEOUTS,
        **overrides,
    }
    return GuardedBlobStore(store, **options)  # type: ignore[arg-type]


def _s3(endpoint: S3Endpoint) -> S3BlobStore:
    return S3BlobStore(
        S3Options(
            bucket=endpoint.new_bucket(),
            endpoint_url=endpoint.url,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            connect_timeout=1,
            read_timeout=1,
        )
    )


def _wait_for_recovery(guarded: GuardedBlobStore) -> None:
    # The breaker's recovery period is wall-clock time; it is kept tiny here.
    time.sleep(RECOVERY * 1.5)
    assert guarded.retry_after() == 1


def test_an_unreachable_endpoint_opens_the_circuit_then_calls_fail_fast(
    endpoint: S3Endpoint,
) -> None:
    guarded = _guarded(_s3(endpoint))
    guarded.health()
    endpoint.stop()
    for _ in range(3):
        with pytest.raises(StorageUnavailable):
            guarded.health()
    assert guarded.state == "opened"
    calls_before = guarded.snapshot().calls
    with pytest.raises(StorageUnavailable) as raised:
        guarded.exists(KEY)
    # Fast because it never reaches the store: no connect attempt, no timeout.
    assert guarded.snapshot().calls == calls_before
    assert raised.value.retry_after >= 1
    with pytest.raises(StorageUnavailable):
        guarded.ensure_available()
    snapshot = guarded.snapshot()
    assert (snapshot.state, snapshot.failures, snapshot.rejected, snapshot.times_opened) == (
        "opened",
        3,
        2,
        1,
    )
    guarded.close()


def test_when_the_endpoint_is_back_a_trial_call_closes_the_circuit(endpoint: S3Endpoint) -> None:
    guarded = _guarded(_s3(endpoint), failure_threshold=1)
    endpoint.stop()
    with pytest.raises(StorageUnavailable):
        guarded.health()
    assert guarded.state == "opened"
    endpoint.start()
    _wait_for_recovery(guarded)
    guarded.ensure_available()  # a trial is due: work may begin
    guarded.health()
    assert guarded.state == "closed"
    assert not guarded.exists(KEY)
    guarded.close()


def test_a_failed_trial_call_opens_the_circuit_again(endpoint: S3Endpoint) -> None:
    guarded = _guarded(_s3(endpoint), failure_threshold=1)
    endpoint.stop()
    with pytest.raises(StorageUnavailable):
        guarded.health()
    _wait_for_recovery(guarded)
    with pytest.raises(StorageUnavailable):
        guarded.health()
    assert guarded.state == "opened"
    assert guarded.snapshot().times_opened == 2
    guarded.close()


def test_a_missing_blob_is_an_answer_not_a_failure(tmp_path: Path) -> None:
    guarded = _guarded(DiskBlobStore(tmp_path / "blobs"), failure_threshold=1)
    for _ in range(3):
        with pytest.raises(BlobNotFound):
            guarded.stat(KEY)
    assert guarded.state == "closed"
    guarded.close()


class _StallingStore(DiskBlobStore):
    """A disk store whose health check hangs until released (a stand-in for a dead socket)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()
        self.entered = threading.Event()

    def health(self) -> None:
        self.entered.set()
        self.release.wait(5)


def test_a_call_past_its_time_limit_fails_and_counts_against_the_circuit(tmp_path: Path) -> None:
    stalling = _StallingStore(tmp_path / "blobs")
    guarded = _guarded(
        stalling,
        failure_threshold=2,
        timeouts=BreakerTimeouts(upload=5, read=0.05, delete=5),
    )
    for _ in range(2):
        started = time.perf_counter()
        with pytest.raises(StorageUnavailable):
            guarded.health()
        # Well short of the 5 s stall: the 0.05 s limit cut the call off.
        assert time.perf_counter() - started < 2.5
    assert guarded.state == "opened"
    assert guarded.snapshot().timeouts == 2
    stalling.release.set()
    guarded.close()


def test_while_half_open_only_the_one_trial_call_gets_through(tmp_path: Path) -> None:
    stalling = _StallingStore(tmp_path / "blobs")
    guarded = _guarded(
        stalling, failure_threshold=1, timeouts=BreakerTimeouts(upload=5, read=0.05, delete=5)
    )
    with pytest.raises(StorageUnavailable):
        guarded.health()
    assert guarded.state == "opened"
    _wait_for_recovery(guarded)
    guarded._timeouts = TIMEOUTS  # the trial may take its time now
    stalling.entered.clear()
    trial = threading.Thread(target=guarded.health)
    trial.start()
    assert stalling.entered.wait(5)
    assert guarded.state == "half-opened"
    with pytest.raises(StorageUnavailable):
        guarded.exists(KEY)
    stalling.release.set()
    trial.join(5)
    assert guarded.state == "closed"
    assert not guarded.exists(KEY)
    guarded.close()

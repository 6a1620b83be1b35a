"""The personal-data vault: one AES-256-GCM key per person, kept outside the event log.

Keys live in their own table (``personal_data_keys``). Sealed values name the
format version, so the scheme can change later without breaking old events.
Forgetting a key deletes its row and then makes the deleted bytes physically
unrecoverable: on SQLite ``secure_delete`` zeroes the freed space and the
write-ahead log (which still holds the page as it was) is truncated; on
PostgreSQL the table is rewritten (``VACUUM FULL``: a plain VACUUM leaves the
dead row's bytes in the page's free space), and no column statistics are
gathered on the keys, so ``pg_statistic`` never samples one (see
``docs/erasure.md``).
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, Engine, LargeBinary, MetaData, Table, Uuid, delete, insert, select
from sqlalchemy.exc import IntegrityError

_PREFIX = "v1."

log = logging.getLogger(__name__)

metadata = MetaData()
personal_data_keys = Table(
    "personal_data_keys",
    metadata,
    Column("subject_id", Uuid, primary_key=True),
    Column("key", LargeBinary, nullable=False),
)


class SqlPersonalDataVault:
    """:class:`application.ports.PersonalDataVault` over a SQL table, with a small cache."""

    def __init__(self, engine: Engine, cache_size: int = 10_000) -> None:
        self._engine = engine
        self._cache: OrderedDict[UUID, bytes | None] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        metadata.create_all(engine)
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "ALTER TABLE personal_data_keys ALTER COLUMN key SET STATISTICS 0"
                )

    def _remember(self, subject_id: UUID, key: bytes | None) -> None:
        with self._lock:
            self._cache[subject_id] = key
            self._cache.move_to_end(subject_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _key(self, subject_id: UUID, *, create: bool) -> bytes | None:
        with self._lock:
            if subject_id in self._cache and (self._cache[subject_id] or not create):
                return self._cache[subject_id]
        with self._engine.begin() as conn:
            key = conn.execute(
                select(personal_data_keys.c.key).where(
                    personal_data_keys.c.subject_id == subject_id
                )
            ).scalar_one_or_none()
        if key is None and create:
            new_key = AESGCM.generate_key(bit_length=256)
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        insert(personal_data_keys).values(subject_id=subject_id, key=new_key)
                    )
                key = new_key
            except IntegrityError:  # another thread created it first: use that one
                return self._key(subject_id, create=False)
        self._remember(subject_id, key)
        return key

    def preload(self, subject_ids: Iterable[UUID]) -> None:
        """Read many subjects' keys in a few queries, replacing what the cache held.

        A projector calls it before unsealing a batch: one query per 500 subjects
        instead of one per event, and no key forgotten meanwhile by another
        process survives in this one's cache.
        """
        wanted = list(dict.fromkeys(subject_ids))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            with self._engine.connect() as conn:
                found = {
                    row.subject_id: row.key
                    for row in conn.execute(
                        select(personal_data_keys.c.subject_id, personal_data_keys.c.key).where(
                            personal_data_keys.c.subject_id.in_(chunk)
                        )
                    )
                }
            for subject_id in chunk:
                self._remember(subject_id, found.get(subject_id))

    def seal(self, subject_id: UUID, plaintext: str) -> str:
        """``plaintext`` encrypted and authenticated with the subject's key."""
        key = self._key(subject_id, create=True)
        assert key is not None
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), subject_id.bytes)
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def unseal(self, subject_id: UUID, sealed: str) -> str | None:
        """The clear value, or None once the key is forgotten (or the value is not ours)."""
        if not sealed.startswith(_PREFIX):
            return None
        key = self._key(subject_id, create=False)
        if key is None:
            return None
        raw = base64.urlsafe_b64decode(sealed[len(_PREFIX) :])
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], subject_id.bytes).decode()
        except InvalidTag:
            return None

    def forget(self, subject_id: UUID) -> None:
        """Delete the subject's key for good."""
        with self._engine.begin() as conn:
            conn.execute(
                delete(personal_data_keys).where(personal_data_keys.c.subject_id == subject_id)
            )
        self._remember(subject_id, None)
        self._erase_deleted_bytes()

    def _erase_deleted_bytes(self) -> None:
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if self._engine.dialect.name == "postgresql":
                conn.exec_driver_sql("VACUUM FULL personal_data_keys")
                return
            # Readers finish quickly; the busy timeout covers them. Retry a few times.
            for _ in range(5):
                busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
                if busy is None or not busy[0]:
                    return
                time.sleep(0.05)
            log.warning("vault: the write-ahead log could not be truncated (readers busy)")

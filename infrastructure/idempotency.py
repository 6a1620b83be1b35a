"""Remembered outcomes of unsafe requests, by ``Idempotency-Key`` (a SQL table).

A request with a key first inserts a *pending* row; the primary key decides
which of several concurrent requests runs, the others wait for its outcome.
When it is done the row holds the response, until it expires.

Nothing here is readable from the database alone: the row id is an HMAC of
(scope, key) and the fingerprint an HMAC of the request, both under a secret
kept outside the database, and the stored response (which can carry tokens and
a username, for a login) is encrypted with a key derived from that secret *and*
the client's idempotency key, which is never stored.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

# A request still running after this long is taken for dead (its process
# crashed): a retry may then run it again. Longer than any request may take.
PENDING_LEASE = timedelta(minutes=15)

metadata = MetaData()
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    # NULL while the first request runs.
    Column("status", Integer, nullable=True),
    Column("response", LargeBinary, nullable=True),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_idempotency_keys_expires_at", "expires_at"),
)


class Outcome(enum.Enum):
    """What a request holding a key should do."""

    RUN = "run"
    """It is the first: run it, then :meth:`SqlIdempotencyStore.complete` or ``release``."""
    REPLAY = "replay"
    """Answer with the stored response."""
    MISMATCH = "mismatch"
    """The key was used for a different request: refuse."""
    IN_PROGRESS = "in_progress"
    """The first request with the key is still running: wait and look again."""


@dataclass(frozen=True)
class StoredResponse:
    """A response as sent the first time."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key, with the response to replay if any."""

    outcome: Outcome
    response: StoredResponse | None = None


@dataclass(frozen=True)
class KeyRef:
    """One key in one scope, with what is derived from it (never stored in clear)."""

    id: str
    cipher_key: bytes


def _epoch(instant: datetime) -> int:
    return int(instant.timestamp())


class SqlIdempotencyStore:
    """Idempotency keys in their own table (SQLite file or PostgreSQL schema)."""

    def __init__(self, engine: Engine, secret: str) -> None:
        self._engine = engine
        self._secret = hashlib.sha256(b"theplaylist/idempotency/" + secret.encode()).digest()
        metadata.create_all(engine)

    def close(self) -> None:
        """Release the store's connections."""
        self._engine.dispose()

    def _mac(self, label: str, *parts: bytes) -> bytes:
        mac = hmac.new(self._secret, label.encode(), hashlib.sha256)
        for part in parts:
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()

    def ref(self, scope: str, key: str) -> KeyRef:
        """The row id and the response key for ``key`` in ``scope`` (a user, or anonymous)."""
        return KeyRef(
            id=self._mac("id", scope.encode(), key.encode()).hex(),
            cipher_key=self._mac("response", scope.encode(), key.encode()),
        )

    def fingerprint(self, *parts: bytes) -> str:
        """A keyed digest of what makes two requests the same one."""
        return self._mac("fingerprint", *parts).hex()

    def claim(self, ref: KeyRef, fingerprint: str, now: datetime) -> Claim:
        """Take the key for this request, or learn what became of its first use."""
        for _ in range(5):
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        insert(idempotency_keys).values(
                            id=ref.id,
                            fingerprint=fingerprint,
                            status=None,
                            response=None,
                            expires_at=_epoch(now + PENDING_LEASE),
                        )
                    )
                return Claim(Outcome.RUN)
            except IntegrityError:
                pass
            claim = self.look(ref, fingerprint, now)
            if claim is not None:
                return claim
        # Expiring and re-taking kept racing: let the client try again shortly.
        return Claim(Outcome.IN_PROGRESS)

    def look(self, ref: KeyRef, fingerprint: str, now: datetime) -> Claim | None:
        """What the first use of the key came to; None when the key is free (again)."""
        with self._engine.begin() as conn:
            row = conn.execute(
                select(idempotency_keys).where(idempotency_keys.c.id == ref.id)
            ).first()
            if row is None:
                return None
            if row.expires_at <= _epoch(now):
                # Forgotten, or its request died: free it (unless someone just did).
                conn.execute(
                    delete(idempotency_keys).where(
                        idempotency_keys.c.id == ref.id,
                        idempotency_keys.c.expires_at == row.expires_at,
                    )
                )
                return None
        if not hmac.compare_digest(row.fingerprint, fingerprint):
            return Claim(Outcome.MISMATCH)
        if row.status is None:
            return Claim(Outcome.IN_PROGRESS)
        response = self._open(ref, row.response)
        if response is None:
            # Not ours to read (the secret changed): the safe answer is a refusal.
            return Claim(Outcome.MISMATCH)
        return Claim(Outcome.REPLAY, response)

    def complete(
        self, ref: KeyRef, response: StoredResponse, now: datetime, ttl: timedelta
    ) -> None:
        """Remember the response of the request that ran, until ``now + ttl``."""
        with self._engine.begin() as conn:
            conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.id == ref.id)
                .values(
                    status=response.status,
                    response=self._seal(ref, response),
                    expires_at=_epoch(now + ttl),
                )
            )

    def release(self, ref: KeyRef) -> None:
        """Forget a key whose request failed in a way worth retrying (5xx, crash)."""
        with self._engine.begin() as conn:
            conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.id == ref.id, idempotency_keys.c.status.is_(None)
                )
            )

    def purge(self, now: datetime) -> int:
        """Delete every expired key; return how many."""
        with self._engine.begin() as conn:
            return conn.execute(
                delete(idempotency_keys).where(idempotency_keys.c.expires_at <= _epoch(now))
            ).rowcount

    def _seal(self, ref: KeyRef, response: StoredResponse) -> bytes:
        plain = json.dumps(
            {
                "status": response.status,
                "headers": [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in response.headers
                ],
                "body": base64.b64encode(response.body).decode(),
            }
        ).encode()
        nonce = os.urandom(12)
        return nonce + AESGCM(ref.cipher_key).encrypt(nonce, plain, ref.id.encode())

    @staticmethod
    def _open(ref: KeyRef, sealed: bytes | None) -> StoredResponse | None:
        if sealed is None:
            return None
        try:
            plain = AESGCM(ref.cipher_key).decrypt(sealed[:12], sealed[12:], ref.id.encode())
        except InvalidTag:
            return None
        data = json.loads(plain)
        return StoredResponse(
            status=int(data["status"]),
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in data["headers"]],
            body=base64.b64decode(data["body"]),
        )

"""Argon2id password hashing (argon2-cffi), parameters from settings."""

from __future__ import annotations

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Argon2PasswordHasher:
    """:class:`application.ports.PasswordHasher` with Argon2id."""

    def __init__(self, time_cost: int, memory_cost_kib: int, parallelism: int) -> None:
        self._argon2 = _Argon2(
            time_cost=time_cost,
            memory_cost=memory_cost_kib,
            parallelism=parallelism,
            type=Type.ID,
        )
        # Verified when the user is unknown, so that path costs a real verification.
        self._decoy = self._argon2.hash("decoy password nobody knows")

    def hash(self, password: str) -> str:
        """A new salted Argon2id hash."""
        return self._argon2.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when the password matches; False for no hash, a mismatch or a bad hash."""
        try:
            return self._argon2.verify(password_hash or self._decoy, password) and bool(
                password_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

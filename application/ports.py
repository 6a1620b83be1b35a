"""Ports: what the application needs from the outside world, as protocols.

Adapters live in ``infrastructure``; the composition root picks them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID


class Clock(Protocol):
    """The current time, in UTC."""

    def now(self) -> datetime:
        """Now, timezone-aware UTC."""
        ...


class PasswordHasher(Protocol):
    """A slow, salted, memory-hard password hash."""

    def hash(self, password: str) -> str:
        """A new hash of ``password``."""
        ...

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches ``password_hash``.

        With no hash (unknown user) it verifies against a decoy and returns
        False, so that both paths cost the same time.
        """
        ...


class PersonalDataVault(Protocol):
    """Seals personal data with a key of its own per person (crypto-shredding).

    Sealed values may be stored anywhere, events included; forgetting the
    subject's key makes every one of them unreadable for good.
    """

    def seal(self, subject_id: UUID, plaintext: str) -> str:
        """``plaintext`` encrypted with the subject's key (created on first use)."""
        ...

    def unseal(self, subject_id: UUID, sealed: str) -> str | None:
        """The clear value, or None once the subject's key was forgotten."""
        ...

    def forget(self, subject_id: UUID) -> None:
        """Destroy the subject's key."""
        ...

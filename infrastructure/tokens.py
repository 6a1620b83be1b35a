"""Access tokens: short-lived JWTs signed with HS256 (the algorithm is pinned on decode)."""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import jwt

_ALGORITHM = "HS256"
_AUDIENCE = "theplaylist"
# Verified tokens remembered per process (a few hundred bytes each).
_CACHED_TOKENS = 8192


@dataclass(frozen=True)
class AccessClaims:
    """What an access token says about its bearer."""

    user_id: UUID
    username: str
    session_id: UUID
    roles: frozenset[str]
    expires_at: datetime


class InvalidToken(Exception):
    """The token is malformed, forged, of another algorithm, or expired."""


class AccessTokens:
    """Issues and checks access tokens."""

    def __init__(self, key: str, ttl: timedelta) -> None:
        self._key = key
        self._ttl = ttl
        # A client sends the same token with every request until it expires:
        # checking its signature and claims once per token spares ~10% of a
        # command's CPU (profiled). Only valid tokens are kept (lru_cache does
        # not keep exceptions), and expiry is checked again on every use.
        self._decode = functools.lru_cache(maxsize=_CACHED_TOKENS)(self._decode_checked)

    @property
    def ttl(self) -> timedelta:
        """How long a new token lives."""
        return self._ttl

    def issue(
        self,
        user_id: UUID,
        username: str,
        session_id: UUID,
        roles: frozenset[str],
        now: datetime,
        not_after: datetime | None = None,
    ) -> tuple[str, datetime]:
        """A new signed token and its expiry, which is never later than ``not_after``."""
        expires_at = (now + self._ttl).replace(microsecond=0)
        if not_after is not None:
            expires_at = min(expires_at, not_after.replace(microsecond=0))
        payload = {
            "sub": str(user_id),
            "name": username,
            "sid": str(session_id),
            "roles": sorted(roles),
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "aud": _AUDIENCE,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(payload, self._key, algorithm=_ALGORITHM), expires_at

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; :class:`InvalidToken` otherwise."""
        claims = self._decode(token)
        if claims.expires_at.timestamp() <= time.time():
            raise InvalidToken("Signature has expired")
        return claims

    def _decode_checked(self, token: str) -> AccessClaims:
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                audience=_AUDIENCE,
                options={"require": ["sub", "sid", "exp", "iat", "aud"]},
            )
            return AccessClaims(
                user_id=UUID(payload["sub"]),
                username=str(payload.get("name", "")),
                session_id=UUID(payload["sid"]),
                roles=frozenset(str(r) for r in payload.get("roles", [])),
                expires_at=datetime.fromtimestamp(int(payload["exp"]), tz=UTC),
            )
        # OverflowError, OSError: an exp beyond datetime's range (only our key can sign one).
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError, OSError) as error:
            raise InvalidToken(str(error)) from None

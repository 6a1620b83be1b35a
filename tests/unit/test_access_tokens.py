"""Access tokens: a verified token is remembered, never past its expiry."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import jwt
import pytest

from infrastructure.tokens import AccessTokens, InvalidToken


def test_a_remembered_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = AccessTokens("k" * 48, timedelta(seconds=60))
    user, session = uuid4(), uuid4()
    token, expires_at = tokens.issue(user, "alice", session, frozenset(), datetime.now(UTC))

    first = tokens.verify(token)
    assert (first.user_id, first.session_id) == (user, session)
    assert tokens.verify(token) == first  # from memory this time

    later = expires_at.timestamp() + 1
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(InvalidToken):
        tokens.verify(token)


def test_a_forged_token_is_refused_every_time() -> None:
    tokens = AccessTokens("k" * 48, timedelta(seconds=60))
    token, _ = tokens.issue(uuid4(), "alice", uuid4(), frozenset(), datetime.now(UTC))
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            tokens.verify(forged)
    other = AccessTokens("z" * 48, timedelta(seconds=60))
    with pytest.raises(InvalidToken):
        other.verify(token)
    assert time.time() < tokens.verify(token).expires_at.timestamp()


@pytest.mark.parametrize("exp", [2**70, 10**20, 1e300])
def test_a_signed_token_expiring_past_the_calendar_is_refused(exp: float) -> None:
    key = "k" * 48
    tokens = AccessTokens(key, timedelta(seconds=60))
    claims = {"sub": str(uuid4()), "sid": str(uuid4()), "iat": int(time.time()), "exp": exp}
    token = jwt.encode({**claims, "aud": "theplaylist"}, key, algorithm="HS256")
    with pytest.raises(InvalidToken):
        tokens.verify(token)

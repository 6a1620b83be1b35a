"""The client families that Session.Opened v2 records (and its upcaster derives)."""

from __future__ import annotations

import pytest

from domain.sessions import Session, client_family_v2


@pytest.mark.parametrize(
    ("agent", "family"),
    [
        ("Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/120.0 Safari/537.36", "Chrome"),
        ("Mozilla/5.0 (Windows NT 10.0) Chrome/120.0 Safari/537.36 Edg/120.0", "Edge"),
        ("Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 Version/17.1 Safari/605.1.15", "Safari"),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "Firefox"),
        ("Mozilla/5.0 Chrome/119.0 Safari/537.36 OPR/105.0", "Opera"),
        ("curl/8.5.0", "curl"),
        ("python-httpx/0.27.0", "Python"),
        ("unknown client", "other"),
        ("", "other"),
    ],
)
def test_a_user_agent_maps_to_its_family(agent: str, family: str) -> None:
    assert client_family_v2(agent) == family


def test_the_upcaster_derives_the_family_from_the_v1_client() -> None:
    state = {"client": "curl/7.88"}
    Session.Opened.upcast_v1_v2(state)
    assert state == {"client": "curl/7.88", "client_family": "curl"}

"""Session.Opened gained ``client_family`` (v2): v1 events already stored still load."""

from __future__ import annotations

import json
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from domain.sessions import Session
from infrastructure.bootstrap import Container
from tests.conftest import catch_up

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
OPENED = "domain.sessions:Session.Opened"


def v1_opened(user_id: UUID) -> bytes:
    """A Session.Opened exactly as version 1 of the code stored it: no family, no version."""
    return (
        '{"timestamp":{"_type_":"datetime_iso","_data_":"2024-03-01T10:00:00+00:00"},'
        '"originator_topic":"domain.sessions:Session",'
        f'"user_id":{{"_type_":"uuid_hex","_data_":"{user_id.hex}"}},'
        '"token_hash":"4f0b4cf2e4a9f3a1c0d2b6e8a7c5d3e1f9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4",'
        '"expires_at":{"_type_":"datetime_iso","_data_":"2099-01-01T00:00:00+00:00"},'
        f'"client":"{FIREFOX}"}}'
    ).encode()


@pytest.fixture
def old_session(container: Container) -> tuple[UUID, UUID]:
    """A user, and a session of theirs recorded by version 1 of the code."""
    user_id = container.app.register_user("alice", "a@example.com", "correct horse").value
    session_id = uuid4()
    container.app.recorder.insert_events([StoredEvent(session_id, 1, OPENED, v1_opened(user_id))])
    return user_id, session_id


def test_an_old_session_event_loads_with_the_field_derived(
    container: Container, old_session: tuple[UUID, UUID]
) -> None:
    user_id, session_id = old_session
    session: object = container.app.repository.get(session_id)
    assert isinstance(session, Session)
    assert (session.user_id, session.client, session.client_family) == (user_id, FIREFOX, "Firefox")


def test_an_old_session_event_projects_and_audits_in_todays_shape(
    container: Container, old_session: tuple[UUID, UUID]
) -> None:
    user_id, session_id = old_session
    catch_up(container)
    rows = container.queries.sessions.open_sessions(user_id, container.clock.now())
    assert [(r.id, r.client_family) for r in rows] == [(session_id, "Firefox")]
    page = container.audit.events(aggregate_id=session_id)
    assert page.items[0].data["client_family"] == "Firefox"
    assert container.audit.verify().ok


def test_new_session_events_are_stored_as_version_2(container: Container) -> None:
    container.app.register_user("bob", "b@example.com", "correct horse")
    opened = container.app.open_session("bob", "correct horse", "curl/8.5.0").value
    stored = container.app.recorder.select_events(opened.session_id)[0]
    state = json.loads(stored.state)
    assert (state["class_version"], state["client_family"]) == (2, "curl")

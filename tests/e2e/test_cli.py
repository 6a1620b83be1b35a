"""The ``theplaylist`` command line, run as the installed console script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infrastructure.bootstrap import build
from infrastructure.settings import Settings
from tests.conftest import catch_up
from tests.support.accounts import PASSWORD
from tests.support.processes import run_cli, settings_env

pytestmark = pytest.mark.slow


def test_projections_status_prints_each_projections_position_head_and_lag_as_json(
    settings: Settings, tmp_path: Path
) -> None:
    container = build(settings)
    try:
        container.app.register_user("alice", "alice@example.com", PASSWORD)
        container.app.register_user("bob", "bob@example.com", PASSWORD)
        head = container.app.head
        names = {p.name for p in container.projectors}
    finally:
        container.close()
    env = settings_env(settings)

    behind = run_cli(["projections", "status", "--json"], env, tmp_path)
    assert behind.returncode == 0, behind.stderr
    rows = json.loads(behind.stdout)
    assert {row["name"] for row in rows} == names
    for row in rows:
        assert set(row) == {"name", "position", "head", "lag_events", "lag_seconds"}
        assert (row["position"], row["head"], row["lag_events"]) == (0, head, head)
        assert isinstance(row["lag_seconds"], float) and row["lag_seconds"] >= 0

    container = build(settings)
    try:
        catch_up(container)
    finally:
        container.close()
    caught_up = json.loads(run_cli(["projections", "status", "--json"], env, tmp_path).stdout)
    assert {(r["position"], r["lag_events"], r["lag_seconds"]) for r in caught_up} == {
        (head, 0, 0.0)
    }


def test_roles_are_granted_and_revoked_from_the_command_line(
    settings: Settings, tmp_path: Path
) -> None:
    container = build(settings)
    try:
        user_id = container.app.register_user("alice", "alice@example.com", PASSWORD).value
    finally:
        container.close()
    env = settings_env(settings)

    granted = run_cli(["users", "grant-role", "Alice", "auditor"], env, tmp_path)
    assert granted.returncode == 0, granted.stderr
    assert "auditor" in granted.stdout
    container = build(settings)
    try:
        assert container.app.account(user_id).roles == {"auditor"}
    finally:
        container.close()

    revoked = run_cli(["users", "revoke-role", "alice", "auditor"], env, tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    container = build(settings)
    try:
        assert container.app.account(user_id).roles == frozenset()
        head = container.app.head
    finally:
        container.close()

    for args, complaint in [
        (["users", "revoke-role", "alice", "superuser"], "role"),
        (["users", "grant-role", "nobody", "admin"], "nobody"),
    ]:
        refused = run_cli(args, env, tmp_path)
        assert refused.returncode == 1, refused.stdout
        assert complaint in refused.stderr
    container = build(settings)
    try:
        assert container.app.head == head  # the refusals stored nothing
    finally:
        container.close()


def test_a_bad_setting_stops_the_command_with_a_message_naming_it(tmp_path: Path) -> None:
    env = settings_env(Settings.model_validate({"data_dir": tmp_path / "data"}))
    env["THEPLAYLIST_PAGE_LIMIT_MAX"] = "abc"
    for args in (["projections", "status", "--json"], ["serve", "--port", "1"]):
        stopped = run_cli(args, env, tmp_path)
        assert stopped.returncode != 0
        assert "THEPLAYLIST_PAGE_LIMIT_MAX" in stopped.stderr
        assert "Traceback" not in stopped.stderr + stopped.stdout
        assert stopped.stdout == ""

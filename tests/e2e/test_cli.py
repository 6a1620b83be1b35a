"""The ``theplaylist`` command line, run as the installed console script."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from infrastructure.bootstrap import build
from infrastructure.settings import Settings
from tests.conftest import catch_up, make_settings
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


# -- refusals and failures: one line on stderr, never a traceback ---------------------------

HASH = "ab" * 32


@pytest.fixture
def sqlite_settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Fresh settings on the embedded SQLite store."""
    return make_settings("sqlite", tmp_path, request)


def registered(settings: Settings, *names: str) -> int:
    """Register NAMES in the store of SETTINGS; the log's head afterwards."""
    container = build(settings)
    try:
        for name in names:
            container.app.register_user(name, f"{name}@example.com", PASSWORD)
        return container.app.head
    finally:
        container.close()


def head_of(settings: Settings) -> int:
    """The head of the log of SETTINGS' store."""
    container = build(settings)
    try:
        return container.app.head
    finally:
        container.close()


def assert_refused(
    result: subprocess.CompletedProcess[str], code: int, message: str, *, one_line: bool = True
) -> None:
    """Exit status CODE, MESSAGE on stderr (on one line of its own), nothing on stdout."""
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output
    assert result.stdout == ""
    assert message in result.stderr, result.stderr
    if one_line:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_an_anchor_at_position_0_or_in_other_digits_is_a_usage_error(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    registered(sqlite_settings, "alice")
    env = settings_env(sqlite_settings)
    for position in ("0", "00", "\u0663", "\uff11", "-1"):
        refused = run_cli(["audit", "verify", "--anchor", f"{position}:{HASH}"], env, tmp_path)
        assert_refused(refused, 2, "--anchor must be POSITION:HASH")

    report = json.loads(run_cli(["audit", "verify", "--json"], env, tmp_path).stdout)
    anchor = f"{report['head_position']}:{report['head_hash']}"
    assert run_cli(["audit", "verify", "--anchor", anchor], env, tmp_path).returncode == 0
    moved = run_cli(["audit", "verify", "--anchor", f"1:{HASH}"], env, tmp_path)
    assert moved.returncode == 1, moved.stdout  # a real anchor is checked, not ignored


def test_a_failed_export_leaves_the_previous_one_whole_and_no_temporary_file(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    registered(sqlite_settings, *(f"user{i}" for i in range(120)))
    env = settings_env(sqlite_settings)
    exports = tmp_path / "exports"
    exports.mkdir()
    out = exports / "log.jsonl"
    out.write_text("the previous export\n")
    limit = 48 * 1024

    def small_files() -> None:
        # Writing past LIMIT fails with EFBIG, as a full disk fails with ENOSPC.
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    failed = run_cli(["audit", "export", "--out", str(out)], env, tmp_path, preexec_fn=small_files)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"cannot write {out}" in failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    assert out.read_text() == "the previous export\n"
    assert [p.name for p in exports.iterdir()] == ["log.jsonl"]

    done = run_cli(["audit", "export", "--out", str(out)], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == head_of(sqlite_settings)
    assert out.stat().st_size > limit
    assert [p.name for p in exports.iterdir()] == ["log.jsonl"]


def test_export_to_dash_is_refused_rather_than_written_to_a_file_named_dash(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    registered(sqlite_settings, "alice")
    refused = run_cli(["audit", "export", "--out", "-"], settings_env(sqlite_settings), tmp_path)
    assert_refused(refused, 2, "--out must name a file")
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("command", ["serve", "serve-commands", "serve-queries"])
def test_a_port_outside_0_to_65535_is_a_usage_error(command: str, tmp_path: Path) -> None:
    env = settings_env(Settings.model_validate({"data_dir": tmp_path / "data"}))
    for port in ("-1", "65536", str(2**70)):
        refused = run_cli([command, "--port", port], env, tmp_path, timeout=60)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "Invalid value for '--port'" in refused.stderr
        assert "Traceback" not in refused.stdout + refused.stderr
    assert not (tmp_path / "data").exists()


def test_a_grace_period_beyond_ten_years_is_a_usage_error(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    registered(sqlite_settings, "alice")
    env = settings_env(sqlite_settings)
    for grace in ("99999999999999", str(2**70)):
        refused = run_cli(["storage", "gc", "--grace-seconds", grace], env, tmp_path)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "Invalid value for '--grace-seconds'" in refused.stderr
        assert "Traceback" not in refused.stdout + refused.stderr
    ten_years = str(10 * 365 * 24 * 3600)
    kept = run_cli(["storage", "gc", "--dry-run", "--grace-seconds", ten_years], env, tmp_path)
    assert kept.returncode == 0, kept.stderr


STORE_COMMANDS = [
    ["projections", "status"],
    ["projections", "run"],
    ["projections", "rebuild", "users"],
    ["audit", "verify"],
    ["audit", "export", "--out", "export.jsonl"],
    ["storage", "gc"],
    ["users", "grant-role", "alice", "admin"],
    ["users", "revoke-role", "alice", "admin"],
]


def _spoil(settings: Settings, how: str) -> Path:
    """Make the data dir of SETTINGS unusable; the data dir the command is to be given."""
    data = settings.data_dir
    if how == "a file":
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("not a directory")
        return data
    if how == "under a file":
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("not a directory")
        return data / "sub"
    registered(settings, "alice")
    if how == "blobs a file":
        shutil.rmtree(data / "blobs")
        (data / "blobs").write_text("not a directory")
    else:  # a corrupt database file
        (data / how).write_bytes(b"this is not a database at all" * 200)
    return data


@pytest.mark.parametrize(
    "how",
    ["a file", "under a file", "blobs a file", "events.sqlite3", "readmodels.sqlite3"],
)
def test_every_command_on_an_unusable_data_dir_says_so_in_one_line(
    how: str, sqlite_settings: Settings, tmp_path: Path
) -> None:
    data = _spoil(sqlite_settings, how)
    env = settings_env(sqlite_settings, data_dir=data)
    for args in STORE_COMMANDS:
        refused = run_cli(args, env, tmp_path, timeout=60)
        assert_refused(refused, 1, str(data))
        assert "cannot open the data directory" in refused.stderr or (
            "no event store" in refused.stderr
        )
    assert not (tmp_path / "export.jsonl").exists()


def test_every_command_on_an_unreachable_database_says_so_in_one_line(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"data_dir": tmp_path / "data", "database_url": "postgresql://u:p@127.0.0.1:1/db"}
    )
    env = settings_env(settings)
    for args in STORE_COMMANDS:
        refused = run_cli(args, env, tmp_path, timeout=60)
        assert_refused(refused, 1, "cannot connect to the database: ")
        assert "p@" not in refused.stderr  # no password


READING_COMMANDS = [
    ["projections", "status"],
    ["projections", "rebuild", "users"],
    ["audit", "verify"],
    ["audit", "export", "--out", "export.jsonl"],
    ["storage", "gc"],
]


def test_reading_commands_refuse_a_data_dir_without_an_event_store_and_create_nothing(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    registered(sqlite_settings, "alice")
    empty = tmp_path / "empty"
    empty.mkdir()
    for data in (tmp_path / "dtaa", empty):  # a typo, and a directory of something else
        env = settings_env(sqlite_settings, data_dir=data)
        for args in READING_COMMANDS:
            refused = run_cli(args, env, tmp_path)
            assert_refused(refused, 1, f"no event store in {data}")
    assert not (tmp_path / "dtaa").exists()
    assert list(empty.iterdir()) == []
    assert not (tmp_path / "export.jsonl").exists()


def test_a_settings_file_that_is_not_utf8_is_a_settings_error(tmp_path: Path) -> None:
    env = settings_env(Settings.model_validate({"data_dir": tmp_path / "data"}))
    (tmp_path / ".env").write_bytes(b"THEPLAYLIST_LOG_LEVEL=\xff\xfe\n")
    refused = run_cli(["projections", "status"], env, tmp_path)
    assert_refused(refused, 2, "cannot read the settings file .env: not UTF-8")
    assert not (tmp_path / "data").exists()


def test_a_username_that_is_not_utf8_is_refused(sqlite_settings: Settings, tmp_path: Path) -> None:
    head = registered(sqlite_settings, "alice")
    env = settings_env(sqlite_settings)
    not_utf8 = os.fsdecode(b"\xff")  # what Python makes of such bytes in argv
    for args, name in [
        (["users", "grant-role", not_utf8, "admin"], "USERNAME"),
        (["users", "revoke-role", "alice", not_utf8], "ROLE"),
    ]:
        refused = run_cli(args, env, tmp_path)
        assert_refused(refused, 2, f"{name} is not valid UTF-8")
    assert head_of(sqlite_settings) == head


def test_a_rebuild_over_an_event_that_cannot_be_decoded_says_so(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    registered(sqlite_settings, "alice", "bob")
    with sqlite3.connect(sqlite_settings.data_dir / "events.sqlite3") as db:
        db.execute(
            "UPDATE stored_events SET state = x'00ff' WHERE rowid = "
            "(SELECT MIN(rowid) FROM stored_events WHERE topic LIKE '%Registered')"
        )
    db.close()
    env = settings_env(sqlite_settings)
    for args in (["projections", "rebuild", "users"], ["users", "grant-role", "alice", "admin"]):
        refused = run_cli(args, env, tmp_path)
        assert_refused(refused, 1, "holds an event that cannot be decoded", one_line=False)
        assert "theplaylist audit verify" in refused.stderr


def test_a_role_change_that_changes_nothing_says_so(settings: Settings, tmp_path: Path) -> None:
    registered(settings, "alice", "bob")
    env = settings_env(settings)

    granted = run_cli(["users", "grant-role", "alice", "auditor"], env, tmp_path)
    assert granted.returncode == 0, granted.stderr
    head = head_of(settings)
    assert granted.stdout.strip() == f"role auditor granted to alice (position {head})"

    for args, said in [
        (["users", "grant-role", "alice", "auditor"], "alice already has the role auditor"),
        (["users", "revoke-role", "bob", "auditor"], "bob does not have the role auditor"),
        (["users", "revoke-role", "alice", "admin"], "alice does not have the role admin"),
    ]:
        unchanged = run_cli(args, env, tmp_path)
        assert unchanged.returncode == 0, unchanged.stderr
        assert unchanged.stdout.strip() == f"{said}: nothing changed"
    assert head_of(settings) == head


def test_messages_and_anchors_stay_on_one_line_however_long(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    registered(sqlite_settings, "alice")
    env = settings_env(sqlite_settings)
    verified = run_cli(["audit", "verify"], env, tmp_path)
    anchor = re.compile(r"head \(keep it as an anchor\): [0-9]+:[0-9a-f]{64}")
    assert any(anchor.fullmatch(line) for line in verified.stdout.splitlines()), verified.stdout

    far = tmp_path / ("a-rather-long-directory-name-" * 4) / "data"
    refused = run_cli(["audit", "verify"], settings_env(sqlite_settings, data_dir=far), tmp_path)
    assert_refused(refused, 1, str(far))


def test_rebuilding_an_unknown_projection_lists_only_those_that_can_be_rebuilt(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    registered(sqlite_settings, "alice")
    env = settings_env(sqlite_settings)
    unknown = run_cli(["projections", "rebuild", "nosuch"], env, tmp_path)
    assert_refused(unknown, 2, "no projection is named 'nosuch' (known: ")
    assert "users" in unknown.stderr and "blob_cleanup" not in unknown.stderr
    policy = run_cli(["projections", "rebuild", "blob_cleanup"], env, tmp_path)
    assert_refused(policy, 1, "blob_cleanup keeps no read model to rebuild")


def test_usage_lines_name_the_arguments(tmp_path: Path) -> None:
    env = settings_env(Settings.model_validate({"data_dir": tmp_path / "data"}))
    for command in ("grant-role", "revoke-role"):
        shown = run_cli(["users", command, "--help"], env, tmp_path)
        usage = next(line for line in shown.stdout.splitlines() if "Usage:" in line)
        assert "USERNAME" in usage and "ROLE" in usage, usage
        assert "username" not in usage and "role}" not in usage

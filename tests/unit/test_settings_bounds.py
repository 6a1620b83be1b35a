"""Settings that used to pass validation and fail later are refused at start-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from infrastructure.settings import Settings


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No inherited THEPLAYLIST_* variable and no stray .env; data lives under tmp_path."""
    for name in list(os.environ):
        if name.startswith("THEPLAYLIST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("THEPLAYLIST_DATA_DIR", str(data_dir))
    return data_dir


def from_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> Settings:
    """Settings read from the environment, as the CLI reads them."""
    for name, value in values.items():
        monkeypatch.setenv(f"THEPLAYLIST_{name.upper()}", value)
    return Settings()


def assert_refused(monkeypatch: pytest.MonkeyPatch, field: str, **values: str) -> str:
    """The values are refused by a validation error that names ``field``; its text."""
    with pytest.raises(ValidationError) as caught:
        from_env(monkeypatch, **values)
    named = [
        item
        for item in caught.value.errors()
        if field in item["loc"] or f"THEPLAYLIST_{field.upper()}" in item["msg"]
    ]
    assert named, f"no error names {field}: {caught.value}"
    return str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@127.0.0.1:99999/db",
        "postgresql://u:p@127.0.0.1:abc/db",
        "postgresql://u:p@127.0.0.1:0/db",
        "postgresql://u:p@127.0.0.1:-1/db",
    ],
)
def test_a_database_url_with_a_bad_port_is_refused(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    message = assert_refused(monkeypatch, "database_url", database_url=url)
    assert "port" in message


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("postgresql://u:p@127.0.0.1:65535/db", "65535"),
        ("postgresql://u:p@127.0.0.1:1/db", "1"),
        ("postgresql://u:p@db.example/db", "5432"),
    ],
)
def test_a_database_url_with_a_valid_port_passes(
    monkeypatch: pytest.MonkeyPatch, url: str, port: str
) -> None:
    assert from_env(monkeypatch, database_url=url).postgres_parts()["port"] == port


@pytest.mark.parametrize("field", ["s3_endpoint_url", "s3_public_endpoint_url"])
@pytest.mark.parametrize(
    "url", ["https://s3.example:70000", "http://s3.example:abc", "ftp://s3.example", "s3.example"]
)
def test_an_s3_endpoint_that_is_not_an_http_url_is_refused(
    monkeypatch: pytest.MonkeyPatch, field: str, url: str
) -> None:
    assert_refused(monkeypatch, field, **{field: url})


@pytest.mark.parametrize("field", ["s3_endpoint_url", "s3_public_endpoint_url"])
def test_an_s3_endpoint_keeps_its_url_without_the_trailing_slash(
    monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    settings = from_env(monkeypatch, **{field: "http://127.0.0.1:9000/"})
    assert getattr(settings, field) == "http://127.0.0.1:9000"


@pytest.mark.parametrize("content", ["", "   \n\t\n", "short-key", "a" * 64])
def test_an_empty_or_weak_key_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, isolated_environment: Path, content: str
) -> None:
    isolated_environment.mkdir()
    (isolated_environment / "secret_key").write_text(content)
    message = assert_refused(monkeypatch, "secret_key")
    assert "secret_key" in message


def test_a_key_file_that_is_a_directory_is_refused(
    monkeypatch: pytest.MonkeyPatch, isolated_environment: Path
) -> None:
    (isolated_environment / "secret_key").mkdir(parents=True)
    message = assert_refused(monkeypatch, "secret_key")
    assert "directory" in message


def test_a_broken_key_file_does_not_matter_when_the_key_is_set(
    monkeypatch: pytest.MonkeyPatch, isolated_environment: Path
) -> None:
    (isolated_environment / "secret_key").mkdir(parents=True)
    settings = from_env(monkeypatch, secret_key="configured")
    assert settings.signing_key() == "configured"


def test_the_generated_key_file_is_accepted_on_the_next_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = from_env(monkeypatch).signing_key()
    assert len(key) >= 32
    assert from_env(monkeypatch).signing_key() == key


def test_a_kept_key_of_32_varied_characters_is_accepted(
    monkeypatch: pytest.MonkeyPatch, isolated_environment: Path
) -> None:
    isolated_environment.mkdir()
    (isolated_environment / "secret_key").write_text("0123456789abcdefghijklmnopqrstuv\n")
    assert from_env(monkeypatch).signing_key() == "0123456789abcdefghijklmnopqrstuv"


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_secret_key_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert_refused(monkeypatch, "secret_key", secret_key=value)


@pytest.mark.parametrize(("memory", "parallelism"), [("8", "4"), ("31", "4"), ("1024", "255")])
def test_argon2_memory_below_8_kib_per_lane_is_refused(
    monkeypatch: pytest.MonkeyPatch, memory: str, parallelism: str
) -> None:
    assert_refused(
        monkeypatch,
        "argon2_memory_cost_kib",
        argon2_memory_cost_kib=memory,
        argon2_parallelism=parallelism,
    )


@pytest.mark.parametrize(("memory", "parallelism"), [("32", "4"), ("8", "1"), ("2040", "255")])
def test_argon2_memory_of_8_kib_per_lane_passes(
    monkeypatch: pytest.MonkeyPatch, memory: str, parallelism: str
) -> None:
    settings = from_env(monkeypatch, argon2_memory_cost_kib=memory, argon2_parallelism=parallelism)
    assert settings.argon2_memory_cost_kib == int(memory)


@pytest.mark.parametrize("pattern", ["(", "[a-z", "a{2,1}", "*"])
def test_a_username_pattern_that_does_not_compile_is_refused(
    monkeypatch: pytest.MonkeyPatch, pattern: str
) -> None:
    message = assert_refused(monkeypatch, "username_pattern", username_pattern=pattern)
    assert "regular expression" in message


def test_a_custom_username_pattern_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(monkeypatch, username_pattern=r"^[a-z][a-z0-9]*$")
    assert settings.username_pattern == r"^[a-z][a-z0-9]*$"


HUGE = str(2**70)


@pytest.mark.parametrize(
    "field",
    [
        "storage_gc_grace_seconds",
        "access_token_ttl_seconds",
        "access_token_renew_within_seconds",
        "refresh_token_ttl_seconds",
        "argon2_time_cost",
        "argon2_memory_cost_kib",
        "argon2_parallelism",
        "page_limit_max",
        "s3_multipart_threshold_bytes",
        "s3_multipart_chunk_bytes",
        "username_min_length",
        "password_min_length",
    ],
)
def test_huge_numbers_are_refused(monkeypatch: pytest.MonkeyPatch, field: str) -> None:
    assert_refused(monkeypatch, field, **{field: HUGE})


def test_the_gc_grace_example_of_the_audit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_refused(
        monkeypatch, "storage_gc_grace_seconds", storage_gc_grace_seconds="99999999999999"
    )


def test_ten_years_and_the_other_upper_edges_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    ten_years = str(10 * 365 * 24 * 3600)
    settings = from_env(
        monkeypatch,
        storage_gc_grace_seconds=ten_years,
        access_token_ttl_seconds=ten_years,
        access_token_renew_within_seconds=ten_years,
        refresh_token_ttl_seconds=ten_years,
        page_limit_max="100000",
        page_limit_default="100000",
        s3_multipart_threshold_bytes=str(5 * 1024**3),
        s3_multipart_chunk_bytes=str(5 * 1024**3),
        username_min_length="128",
        username_max_length="128",
        password_min_length="4096",
        password_max_length="4096",
    )
    assert settings.storage_gc_grace_seconds == 10 * 365 * 24 * 3600


def test_the_defaults_still_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(monkeypatch)
    assert settings.storage_gc_grace_seconds == 3600
    assert settings.argon2_memory_cost_kib == 65536


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("username_min_length", {"username_min_length": "40", "username_max_length": "32"}),
        ("password_min_length", {"password_min_length": "300", "password_max_length": "256"}),
    ],
)
def test_a_minimum_above_its_maximum_is_refused(
    monkeypatch: pytest.MonkeyPatch, field: str, values: dict[str, str]
) -> None:
    assert_refused(monkeypatch, field, **values)


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_data_dir_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert_refused(monkeypatch, "data_dir", data_dir=value)


def test_a_data_dir_under_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = from_env(monkeypatch, data_dir="~/x")
    assert settings.data_dir == tmp_path / "home" / "x"


def test_a_relative_data_dir_stays_relative(monkeypatch: pytest.MonkeyPatch) -> None:
    assert from_env(monkeypatch, data_dir="var").data_dir == Path("var")
    assert from_env(monkeypatch, data_dir=".").data_dir == Path()

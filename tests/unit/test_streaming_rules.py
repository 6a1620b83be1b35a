"""Byte ranges, ETags and download names, as RFC 9110 and RFC 6266 have them."""

from __future__ import annotations

import pytest

from interfaces.http.errors import ApiError
from interfaces.http.streaming import (
    ByteRange,
    content_disposition,
    download_name,
    etag_matches,
    requested_range,
)

ETAG = '"abc"'


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", ByteRange(0, 10, 100)),
        ("bytes=90-", ByteRange(90, 100, 100)),
        ("bytes=-10", ByteRange(90, 100, 100)),
        ("bytes=-500", ByteRange(0, 100, 100)),
        ("bytes=95-500", ByteRange(95, 100, 100)),
        ("bytes=99-99", ByteRange(99, 100, 100)),
        ("BYTES = 5 - 6", ByteRange(5, 7, 100)),
    ],
)
def test_single_ranges_are_served(header: str, expected: ByteRange) -> None:
    assert requested_range(header, None, ETAG, 100) == expected


@pytest.mark.parametrize(
    "header", ["items=0-9", "bytes=0-1,5-6", "bytes=9-5", "bytes=x-y", "bytes=-", "bytes", ""]
)
def test_other_range_requests_are_ignored_and_the_whole_file_sent(header: str) -> None:
    assert requested_range(header, None, ETAG, 100) is None


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0"])
def test_ranges_starting_past_the_end_are_unsatisfiable(header: str) -> None:
    with pytest.raises(ApiError) as raised:
        requested_range(header, None, ETAG, 100)
    assert raised.value.status == 416
    assert raised.value.headers["Content-Range"] == "bytes */100"


def test_if_range_with_another_etag_means_the_whole_file() -> None:
    assert requested_range("bytes=0-9", '"other"', ETAG, 100) is None
    assert requested_range("bytes=0-9", ETAG, ETAG, 100) == ByteRange(0, 10, 100)


def test_if_none_match_compares_weakly_and_accepts_lists_and_star() -> None:
    assert etag_matches(ETAG, ETAG)
    assert etag_matches(f'"x", W/{ETAG}', ETAG)
    assert etag_matches("*", ETAG)
    assert not etag_matches('"x"', ETAG)
    assert not etag_matches(None, ETAG)


def test_download_names_keep_only_safe_characters() -> None:
    assert download_name("Song", "Artist", "mp3") == "Artist - Song.mp3"
    assert download_name("Song", None, "flac") == "Song.flac"
    assert download_name('../../etc/pass<wd>:"|?*', "A/B\\C", "mp3") == (
        "A_B_C - .._.._etc_pass_wd.mp3"
    )
    assert download_name("\x00\x1f", None, "ogg") == "track.ogg"


def test_content_disposition_has_an_ascii_fallback_and_a_utf8_name() -> None:
    header = content_disposition("attachment", "Björk - Jóga.mp3")
    assert header == (
        "attachment; filename=\"Bjork - Joga.mp3\"; filename*=UTF-8''Bj%C3%B6rk%20-%20J%C3%B3ga.mp3"
    )
    assert 'filename="track.mp3"' in content_disposition("attachment", "日本.mp3")

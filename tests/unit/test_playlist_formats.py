"""M3U8 and XSPF rendering: labels that would break the formats are made safe."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree import ElementTree

from interfaces.http.queries.playlist_formats import (
    XSPF_NAMESPACE,
    ExportPlaylist,
    ExportTrack,
    m3u8,
    xspf,
)

NS = f"{{{XSPF_NAMESPACE}}}"
PLAYLIST = ExportPlaylist(
    name="Mix\nwith a break & <tags>",
    creator="alice",
    description="line one\nline two",
    location="http://host/api/v1/playlists/1/export.xspf",
    updated_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
)
TRACK = ExportTrack(
    url="http://host/api/v1/tracks/1/stream?a=1&b=2",
    identifier="urn:uuid:00000000-0000-0000-0000-000000000001",
    title="Title\r\n#EXTINF:1,injected",
    artist="Artist \x00& Co",
    album=None,
    duration_ms=61_499,
)


def test_m3u8_keeps_every_label_on_its_own_line() -> None:
    lines = m3u8(PLAYLIST, [TRACK]).splitlines()
    assert lines == [
        "#EXTM3U",
        "#PLAYLIST:Mix with a break & <tags>",
        "#EXTINF:61,Artist & Co - Title #EXTINF:1,injected",
        TRACK.url,
    ]


def test_an_empty_playlist_is_still_valid_in_both_formats() -> None:
    assert m3u8(PLAYLIST, []).splitlines()[0] == "#EXTM3U"
    root = ElementTree.fromstring(xspf(PLAYLIST, []))
    assert root.find(f"{NS}trackList") is not None


def test_xspf_escapes_text_drops_characters_xml_cannot_carry_and_orders_elements() -> None:
    body = xspf(PLAYLIST, [TRACK])
    assert body.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ElementTree.fromstring(body)
    assert root.tag == f"{NS}playlist" and root.attrib == {"version": "1"}
    assert [child.tag.removeprefix(NS) for child in root] == [
        "title",
        "creator",
        "annotation",
        "location",
        "date",
        "trackList",
    ]
    assert root.findtext(f"{NS}title") == PLAYLIST.name
    track = root.find(f"{NS}trackList/{NS}track")
    assert track is not None
    assert track.findtext(f"{NS}location") == TRACK.url
    assert track.findtext(f"{NS}creator") == "Artist & Co"
    assert track.find(f"{NS}album") is None
    assert track.findtext(f"{NS}duration") == "61499"

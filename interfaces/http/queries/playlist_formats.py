"""Playlists as files other players read: M3U8 (extended M3U, UTF-8) and XSPF version 1.

Pure functions of what they are given, so they are easy to test; the routes
decide which entries are playable and what their absolute stream URLs are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from xml.etree.ElementTree import Element, SubElement, tostring

XSPF_NAMESPACE = "http://xspf.org/ns/0/"
M3U_MEDIA_TYPE = "audio/x-mpegurl; charset=utf-8"
XSPF_MEDIA_TYPE = "application/xspf+xml; charset=utf-8"

_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x85]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class ExportTrack:
    """One playable entry: where to stream it and how to label it."""

    url: str
    identifier: str
    title: str
    artist: str | None
    album: str | None
    duration_ms: int


@dataclass(frozen=True)
class ExportPlaylist:
    """The playlist's own labels."""

    name: str
    creator: str | None
    description: str
    location: str
    updated_at: datetime


def _one_line(text: str) -> str:
    # A line break in a label would start a line of its own (a forged directive or URL).
    return _CONTROL.sub("", _LINE_BREAKS.sub(" ", text)).strip()


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


def m3u8(playlist: ExportPlaylist, tracks: list[ExportTrack]) -> str:
    """Extended M3U: ``#EXTINF:<seconds>,<artist> - <title>`` then the stream URL."""
    lines = ["#EXTM3U", f"#PLAYLIST:{_one_line(playlist.name)}"]
    for track in tracks:
        seconds = (track.duration_ms + 500) // 1000
        label = f"{track.artist} - {track.title}" if track.artist else track.title
        lines.append(f"#EXTINF:{seconds},{_one_line(label)}")
        lines.append(track.url)
    return "\n".join(lines) + "\n"


def _child(parent: Element, tag: str, text: str | None) -> None:
    if text:
        SubElement(parent, tag).text = _xml_text(text)


def xspf(playlist: ExportPlaylist, tracks: list[ExportTrack]) -> bytes:
    """XSPF version 1, its elements in the order the specification's schema requires."""
    root = Element("playlist", {"version": "1", "xmlns": XSPF_NAMESPACE})
    _child(root, "title", playlist.name)
    _child(root, "creator", playlist.creator)
    _child(root, "annotation", playlist.description)
    _child(root, "location", playlist.location)
    _child(root, "date", playlist.updated_at.isoformat())
    track_list = SubElement(root, "trackList")
    for track in tracks:
        element = SubElement(track_list, "track")
        _child(element, "location", track.url)
        _child(element, "identifier", track.identifier)
        _child(element, "title", track.title)
        _child(element, "creator", track.artist)
        _child(element, "album", track.album)
        _child(element, "duration", str(track.duration_ms))
    body: bytes = tostring(root, encoding="utf-8", xml_declaration=True)
    return body

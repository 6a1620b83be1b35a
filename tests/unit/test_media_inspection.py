"""Uploads are judged by their content: libmagic for the type, mutagen for the audio."""

from __future__ import annotations

from pathlib import Path

import pytest

from application.errors import CorruptMedia, UnsupportedMedia
from infrastructure.media import SUPPORTED_TYPES, LibmagicMutagenInspector, check_allowed_types
from tests.support.audio import HOSTILE, REAL_AUDIO, audio

INSPECTOR = LibmagicMutagenInspector(SUPPORTED_TYPES)


def _file(tmp_path: Path, data: bytes, name: str = "upload.mp3") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("name", "mime_type"), sorted(REAL_AUDIO.items()))
def test_every_accepted_format_parses_with_its_facts(
    tmp_path: Path, name: str, mime_type: str
) -> None:
    parsed = INSPECTOR.inspect(_file(tmp_path, audio(name), "no-extension"))
    assert parsed.mime_type == mime_type
    assert parsed.extension == name.rsplit(".", 1)[1]
    assert 2900 <= parsed.duration_ms <= 3100
    assert parsed.sample_rate and parsed.channels and parsed.bitrate


def test_tags_are_read_from_the_file(tmp_path: Path) -> None:
    tags = INSPECTOR.inspect(_file(tmp_path, audio("tone.mp3"))).tags
    assert (tags.title, tags.artist, tags.album, tags.genre, tags.year) == (
        "Fixture Tone",
        "ThePlaylist Test",
        "Fixtures",
        "Test",
        2026,
    )


def test_a_flac_named_mp3_is_judged_flac(tmp_path: Path) -> None:
    assert INSPECTOR.inspect(_file(tmp_path, audio("tone.flac"), "song.mp3")).mime_type == (
        "audio/flac"
    )


def test_an_id3_tag_in_front_of_flac_does_not_hide_the_flac(tmp_path: Path) -> None:
    id3 = audio("tone.mp3")[:149]
    assert id3.startswith(b"ID3")
    assert INSPECTOR.inspect(_file(tmp_path, id3 + audio("tone.flac"))).mime_type == "audio/flac"


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_are_refused_with_the_right_error(tmp_path: Path, case: str) -> None:
    data, code = HOSTILE[case]
    expected = UnsupportedMedia if code == "unsupported_media_type" else CorruptMedia
    with pytest.raises(expected):
        INSPECTOR.inspect(_file(tmp_path, data))


@pytest.mark.parametrize("name", sorted(REAL_AUDIO))
@pytest.mark.parametrize("kept", [0.1, 0.5, 0.95])
def test_a_truncated_file_of_any_format_is_corrupt(tmp_path: Path, name: str, kept: float) -> None:
    data = audio(name)
    with pytest.raises(CorruptMedia):
        INSPECTOR.inspect(_file(tmp_path, data[: int(len(data) * kept)]))


def test_types_outside_the_allowed_set_are_unsupported_even_when_they_parse(
    tmp_path: Path,
) -> None:
    only_vorbis = LibmagicMutagenInspector(["audio/ogg", "audio/mpeg"])
    assert only_vorbis.inspect(_file(tmp_path, audio("tone.ogg"))).mime_type == "audio/ogg"
    with pytest.raises(UnsupportedMedia):
        only_vorbis.inspect(_file(tmp_path, audio("tone.opus")))
    with pytest.raises(UnsupportedMedia):
        only_vorbis.inspect(_file(tmp_path, audio("tone.flac")))


def test_a_type_that_cannot_be_parsed_cannot_be_allowed() -> None:
    with pytest.raises(ValueError, match="image/png"):
        check_allowed_types(["audio/mpeg", "image/png"])
    with pytest.raises(ValueError, match="at least one"):
        check_allowed_types([])

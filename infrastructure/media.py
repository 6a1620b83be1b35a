"""Judging uploads by their content: libmagic names the type, mutagen parses the audio.

The file name and the client's Content-Type are never consulted. libmagic
looks at the leading bytes; an ID3v2 tag in front is only metadata, so the
bytes after it are judged. The type must be one of the accepted ones
(``THEPLAYLIST_ALLOWED_AUDIO_TYPES``), else the upload is unsupported. Then
mutagen must parse the file as that format with a positive duration, and a
few structural checks make sure the file is whole: a truncated MP3 is still
``audio/mpeg`` to libmagic and mutagen happily reports the duration its
header promises, so the frames themselves are walked.
"""

from __future__ import annotations

import mmap
import re
import struct
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import magic
from mutagen import flac, mp3, mp4, ogg, oggopus, oggvorbis, wave

from application.errors import CorruptMedia, UnsupportedMedia
from application.ports import AudioTags, ParsedAudio

SNIFF_BYTES = 256 * 1024

# mutagen's classes carry no type hints; they are used through Any.
FLAC: Any = flac.FLAC
MP3: Any = mp3.MP3
MP4: Any = mp4.MP4
OggPage: Any = ogg.OggPage
OggOpus: Any = oggopus.OggOpus
OggVorbis: Any = oggvorbis.OggVorbis
WAVE: Any = wave.WAVE

# The canonical types ThePlaylist knows how to parse, and their file extensions.
SUPPORTED_TYPES: dict[str, str] = {
    "audio/mpeg": "mp3",
    "audio/flac": "flac",
    "audio/ogg": "ogg",  # Ogg Vorbis
    "audio/opus": "opus",  # Ogg Opus
    "audio/mp4": "m4a",  # AAC (or ALAC) in an MPEG-4 container
    "audio/wav": "wav",
}

# What libmagic may call each container (names vary between libmagic versions).
_CONTAINERS: dict[str, str] = {
    "audio/mpeg": "mpeg",
    "audio/mp3": "mpeg",
    "audio/x-mp3": "mpeg",
    "audio/mpeg3": "mpeg",
    "audio/x-mpeg": "mpeg",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/ogg": "ogg",
    "application/ogg": "ogg",
    "audio/x-ogg": "ogg",
    "audio/vorbis": "ogg",
    "audio/x-vorbis+ogg": "ogg",
    "audio/opus": "ogg",
    "audio/x-opus+ogg": "ogg",
    "audio/mp4": "mp4",
    "audio/x-m4a": "mp4",
    "audio/m4a": "mp4",
    "audio/x-mp4a": "mp4",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
}

_CONTAINER_NAMES = {"mpeg": "MP3", "flac": "FLAC", "ogg": "Ogg", "mp4": "MPEG-4", "wav": "WAVE"}

# The canonical types each container can turn out to hold.
_CONTAINER_TYPES: dict[str, tuple[str, ...]] = {
    "mpeg": ("audio/mpeg",),
    "flac": ("audio/flac",),
    "ogg": ("audio/ogg", "audio/opus"),
    "mp4": ("audio/mp4",),
    "wav": ("audio/wav",),
}


def check_allowed_types(types: Iterable[str]) -> frozenset[str]:
    """The allowed set, after checking every type is one this inspector can parse."""
    allowed = frozenset(t.strip().lower() for t in types if t.strip())
    unknown = sorted(allowed - set(SUPPORTED_TYPES))
    if unknown:
        raise ValueError(
            f"unsupported audio type(s) {', '.join(unknown)}; "
            f"choose among {', '.join(sorted(SUPPORTED_TYPES))}"
        )
    if not allowed:
        raise ValueError("at least one audio type must be allowed")
    return allowed


class LibmagicMutagenInspector:
    """The :class:`application.ports.MediaInspector` of ThePlaylist."""

    def __init__(self, allowed_types: Iterable[str]) -> None:
        self._allowed = check_allowed_types(allowed_types)
        self._parsers: dict[str, Callable[[Path], ParsedAudio]] = {
            "mpeg": _parse_mp3,
            "flac": _parse_flac,
            "ogg": _parse_ogg,
            "mp4": _parse_mp4,
            "wav": _parse_wav,
        }

    @property
    def allowed_types(self) -> frozenset[str]:
        """The canonical MIME types accepted."""
        return self._allowed

    def sniff(self, path: Path) -> str:
        """libmagic's MIME type for the file's leading bytes (past any ID3v2 tag)."""
        with path.open("rb") as file:
            head = file.read(SNIFF_BYTES)
            skip = _id3v2_size(head)
            if skip:
                file.seek(skip)
                after = file.read(SNIFF_BYTES)
                judged = _magic(after) if after else "application/x-empty"
                # An ID3v2 tag announces MP3 audio; what follows decides, else it is MP3.
                return judged if judged in _CONTAINERS else "audio/mpeg"
        return _magic(head) if head else "application/x-empty"

    def inspect(self, path: Path) -> ParsedAudio:
        """See :meth:`application.ports.MediaInspector.inspect`."""
        sniffed = self.sniff(path)
        container = _CONTAINERS.get(sniffed)
        if container is None or not self._allowed.intersection(_CONTAINER_TYPES[container]):
            raise UnsupportedMedia(_unsupported_message(sniffed), sniffed)
        try:
            parsed = self._parsers[container](path)
        except (CorruptMedia, UnsupportedMedia):
            raise
        except Exception as error:  # hostile input can break a parser anywhere
            raise CorruptMedia(
                f"the file looks like {_CONTAINER_NAMES[container]} audio "
                f"but does not parse: {_reason(error)}"
            ) from error
        if parsed.mime_type not in self._allowed:
            raise UnsupportedMedia(_unsupported_message(parsed.mime_type), parsed.mime_type)
        if parsed.duration_ms <= 0:
            raise CorruptMedia("the audio has no duration")
        return parsed


def _magic(data: bytes) -> str:
    return str(magic.from_buffer(data, mime=True)).lower()


def _unsupported_message(mime_type: str) -> str:
    if mime_type == "application/x-empty":
        return "the file is empty"
    return f"files of type {mime_type} are not accepted; upload audio"


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text[:200]


def _id3v2_size(head: bytes) -> int:
    """The size of the ID3v2 tag(s) at the start, 0 when there is none."""
    offset = 0
    while len(head) >= offset + 10 and head[offset : offset + 3] == b"ID3":
        flags = head[offset + 5]
        size_bytes = head[offset + 6 : offset + 10]
        if any(b & 0x80 for b in size_bytes):
            break
        size = (size_bytes[0] << 21) | (size_bytes[1] << 14) | (size_bytes[2] << 7) | size_bytes[3]
        offset += 10 + size + (10 if flags & 0x10 else 0)
    return offset


def _ms(seconds: float) -> int:
    return round(seconds * 1000) if seconds > 0 else 0


def _positive(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and value > 0 else None


# --- tags -----------------------------------------------------------------------------------

_YEAR = re.compile(r"^\s*(\d{4})")


def _first(values: Any) -> str | None:
    if values is None:
        return None
    if isinstance(values, str | bytes):
        values = [values]
    for value in values:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        text = unicodedata.normalize("NFC", text).strip()
        if text:
            return text
    return None


def _year(value: str | None) -> int | None:
    if value is None:
        return None
    match = _YEAR.match(value)
    return int(match.group(1)) if match else None


def _tags_from_id3(tags: Any) -> AudioTags:
    if tags is None:
        return AudioTags()

    def text(frame_id: str) -> str | None:
        frame = tags.get(frame_id)
        return None if frame is None else _first(getattr(frame, "text", None))

    genre_frame = tags.get("TCON")
    genres = getattr(genre_frame, "genres", None) if genre_frame is not None else None
    return AudioTags(
        title=text("TIT2"),
        artist=text("TPE1"),
        album=text("TALB"),
        genre=_first(genres),
        year=_year(text("TDRC") or text("TYER") or text("TDOR")),
    )


def _tags_from_vorbis_comments(tags: Any) -> AudioTags:
    if tags is None:
        return AudioTags()

    def text(*keys: str) -> str | None:
        for key in keys:
            found = _first(tags.get(key))
            if found:
                return found
        return None

    return AudioTags(
        title=text("title"),
        artist=text("artist", "albumartist"),
        album=text("album"),
        genre=text("genre"),
        year=_year(text("date", "year", "originaldate")),
    )


def _tags_from_mp4(tags: Any) -> AudioTags:
    if tags is None:
        return AudioTags()

    def text(key: str) -> str | None:
        return _first(tags.get(key))

    return AudioTags(
        title=text("\xa9nam"),
        artist=text("\xa9ART") or text("aART"),
        album=text("\xa9alb"),
        genre=text("\xa9gen"),
        year=_year(text("\xa9day")),
    )


# --- MPEG audio (MP3) -----------------------------------------------------------------------

_MPEG_BITRATES = {
    # (MPEG-1?, layer) -> kbit/s by index 0..14 (0 = free format, refused)
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
# Walking every frame of a long file costs time; past this many the VBR header's
# byte count is the truncation check.
_MAX_WALKED_FRAMES = 60_000
_MAX_JUNK_BEFORE_AUDIO = 64 * 1024
_TRAILING_TAGS = (b"TAG", b"APETAGEX", b"LYRICSBEGIN", b"ID3")


def _mpeg_frame_length(data: Any, pos: int) -> int:
    """The length of the MPEG audio frame whose header starts at ``pos``; 0 if none does."""
    if data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return 0
    b1: int = data[pos + 1]
    b2: int = data[pos + 2]
    version = (b1 >> 3) & 0x03
    layer_bits = (b1 >> 1) & 0x03
    bitrate_index = b2 >> 4
    rate_index = (b2 >> 2) & 0x03
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return 0
    layer = 4 - layer_bits
    mpeg1 = version == 3
    bitrate = _MPEG_BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    rate = _MPEG_RATES[version][rate_index]
    padding = (b2 >> 1) & 0x01
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    if layer == 3 and not mpeg1:
        return 72 * bitrate // rate + padding
    return 144 * bitrate // rate + padding


@dataclass(frozen=True)
class _VbrHeader:
    frames: int | None
    bytes: int | None


def _vbr_header(data: Any, start: int, length: int) -> _VbrHeader | None:
    frame = bytes(data[start : start + min(length, 200)])
    for marker in (b"Xing", b"Info"):
        at = frame.find(marker)
        if at != -1 and at + 8 <= len(frame):
            (flags,) = struct.unpack(">I", frame[at + 4 : at + 8])
            cursor = at + 8
            frames = count = None
            if flags & 0x1 and cursor + 4 <= len(frame):
                (frames,) = struct.unpack(">I", frame[cursor : cursor + 4])
                cursor += 4
            if flags & 0x2 and cursor + 4 <= len(frame):
                (count,) = struct.unpack(">I", frame[cursor : cursor + 4])
            return _VbrHeader(frames, count)
    if frame[36:40] == b"VBRI" and len(frame) >= 54:
        count, frames = struct.unpack(">II", frame[46:54])
        return _VbrHeader(frames, count)
    return None


def _check_mpeg_frames(path: Path) -> None:
    """The audio must start with a run of valid frames and end where its frames end."""
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        size = len(data)
        start = _id3v2_size(bytes(data[: min(size, SNIFF_BYTES)]))
        first = -1
        limit = min(size - 4, start + _MAX_JUNK_BEFORE_AUDIO)
        pos = start
        while pos < limit:
            pos = data.find(b"\xff", pos, limit + 1)
            if pos == -1:
                break
            length = _mpeg_frame_length(data, pos)
            follower = pos + length
            if length and (
                follower == size or (follower + 4 <= size and _mpeg_frame_length(data, follower))
            ):
                first = pos
                break
            pos += 1
        if first == -1:
            raise CorruptMedia("no MPEG audio frames found")
        vbr = _vbr_header(data, first, _mpeg_frame_length(data, first))
        walked = 0
        pos = first
        capped = False
        while pos + 4 <= size:
            length = _mpeg_frame_length(data, pos)
            if not length:
                break
            pos += length
            walked += 1
            if walked >= _MAX_WALKED_FRAMES:
                capped = True
                break
        audio_frames = walked - (1 if vbr is not None else 0)
        if pos > size and not (vbr is not None and vbr.frames and audio_frames >= vbr.frames):
            # Only a cut-off final frame of an otherwise complete stream is tolerated.
            raise CorruptMedia("the file is truncated: its last audio frame is cut short")
        if not capped and pos < size:
            rest = bytes(data[pos : pos + 11])
            if len(rest) >= 3 and not rest.startswith(_TRAILING_TAGS) and walked < 2:
                raise CorruptMedia("the audio frames are not consistent")
        if vbr is not None and vbr.frames and not capped and audio_frames < vbr.frames - 1:
            raise CorruptMedia(
                f"the file is truncated: {audio_frames} of {vbr.frames} audio frames present"
            )
        if vbr is not None and vbr.bytes and size - first < vbr.bytes - 4096:
            raise CorruptMedia("the file is truncated: the audio is shorter than announced")


def _parse_mp3(path: Path) -> ParsedAudio:
    audio = MP3(path)
    info = audio.info
    if getattr(info, "sketchy", False):
        raise CorruptMedia("the MPEG audio frames are not consistent")
    _check_mpeg_frames(path)
    return ParsedAudio(
        mime_type="audio/mpeg",
        extension="mp3",
        duration_ms=_ms(info.length),
        bitrate=_positive(info.bitrate),
        sample_rate=_positive(info.sample_rate),
        channels=_positive(info.channels),
        tags=_tags_from_id3(audio.tags),
    )


# --- FLAC -----------------------------------------------------------------------------------

_FLAC_TAIL_MIN = 256 * 1024


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _flac_frame_span(header: bytes, fixed_block: int) -> tuple[int, int] | None:
    """(first sample, block size) of the FLAC frame header at the start of ``header``."""
    if len(header) < 6 or header[0] != 0xFF or header[1] & 0xFE != 0xF8:
        return None
    variable = header[1] & 0x01
    size_code, rate_code = header[2] >> 4, header[2] & 0x0F
    if size_code == 0 or rate_code == 15 or header[3] & 0x01:
        return None
    # The frame/sample number, UTF-8 coded (up to 7 bytes).
    lead = header[4]
    if lead & 0xC0 == 0x80:
        return None
    extra, mask = 0, 0x40
    if lead & 0x80:
        while lead & mask:
            extra, mask = extra + 1, mask >> 1
        if extra > 6:
            return None
    number = lead & (mask - 1) if extra else lead
    for i in range(extra):
        continuation = header[5 + i] if 5 + i < len(header) else 0
        if continuation & 0xC0 != 0x80:
            return None
        number = (number << 6) | (continuation & 0x3F)
    cursor = 5 + extra
    if size_code == 1:
        block = 192
    elif size_code <= 5:
        block = 576 << (size_code - 2)
    elif size_code == 6:
        block = header[cursor] + 1 if cursor < len(header) else 0
        cursor += 1
    elif size_code == 7:
        block = int.from_bytes(header[cursor : cursor + 2], "big") + 1
        cursor += 2
    else:
        block = 256 << (size_code - 8)
    cursor += {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if cursor >= len(header) or _crc8(header[:cursor]) != header[cursor]:
        return None
    first = number if variable else number * fixed_block
    return first, block


def _check_flac_end(path: Path, info: Any) -> None:
    """The file must hold its last audio frame: the one ending at the announced sample count."""
    total = int(info.total_samples)
    if total <= 0:
        raise CorruptMedia("the FLAC stream announces no samples")
    fixed_block = int(info.max_blocksize)
    tail_size = max(_FLAC_TAIL_MIN, 2 * int(getattr(info, "max_framesize", 0) or 0))
    with path.open("rb") as file:
        file.seek(0, 2)
        size = file.tell()
        file.seek(max(0, size - tail_size))
        tail = file.read()
    pos = len(tail)
    while True:
        pos = tail.rfind(b"\xff", 0, pos)
        if pos == -1:
            break
        span = _flac_frame_span(tail[pos : pos + 16], fixed_block)
        if span is not None and span[0] + span[1] >= total and span[0] < total:
            return
    raise CorruptMedia("the file is truncated: its last FLAC frame is missing")


def _parse_flac(path: Path) -> ParsedAudio:
    audio = FLAC(path)
    info = audio.info
    _check_flac_end(path, info)
    return ParsedAudio(
        mime_type="audio/flac",
        extension="flac",
        duration_ms=_ms(info.length),
        bitrate=_positive(info.bitrate),
        sample_rate=_positive(info.sample_rate),
        channels=_positive(info.channels),
        tags=_tags_from_vorbis_comments(audio.tags),
    )


# --- Ogg Vorbis and Ogg Opus ----------------------------------------------------------------


def _check_ogg_end(path: Path, serial: int) -> None:
    """A whole Ogg stream ends with a page flagged end-of-stream."""
    with path.open("rb") as file:
        last = OggPage.find_last(file, serial)
    if last is None or not last.last:
        raise CorruptMedia("the file is truncated: the Ogg stream has no final page")


def _parse_ogg(path: Path) -> ParsedAudio:
    with path.open("rb") as file:
        first = OggPage(file)
    packet = first.packets[0] if first.packets else b""
    audio: Any
    if packet.startswith(b"\x01vorbis"):
        audio, mime_type, extension = OggVorbis(path), "audio/ogg", "ogg"
        sample_rate = _positive(audio.info.sample_rate)
    elif packet.startswith(b"OpusHead"):
        audio, mime_type, extension = OggOpus(path), "audio/opus", "opus"
        # Opus always decodes at 48 kHz, whatever rate the source had.
        sample_rate = 48000
    else:
        raise UnsupportedMedia(
            "this Ogg file holds neither Vorbis nor Opus audio", "application/ogg"
        )
    _check_ogg_end(path, first.serial)
    info = audio.info
    return ParsedAudio(
        mime_type=mime_type,
        extension=extension,
        duration_ms=_ms(info.length),
        bitrate=_positive(getattr(info, "bitrate", None)),
        sample_rate=sample_rate,
        channels=_positive(info.channels),
        tags=_tags_from_vorbis_comments(audio.tags),
    )


# --- MPEG-4 audio (M4A) ---------------------------------------------------------------------


def _check_mp4_atoms(file: BinaryIO, size: int) -> None:
    """The top-level boxes must tile the file: a cut-off ``mdat`` shows up here."""
    pos = 0
    seen: set[bytes] = set()
    while pos + 8 <= size:
        file.seek(pos)
        header = file.read(16)
        box_size, kind = struct.unpack(">I4s", header[:8])
        if box_size == 1:
            if len(header) < 16:
                break
            (box_size,) = struct.unpack(">Q", header[8:16])
        elif box_size == 0:
            box_size = size - pos
        if box_size < 8:
            raise CorruptMedia("the MPEG-4 container is damaged")
        seen.add(kind)
        pos += box_size
    if pos > size:
        raise CorruptMedia("the file is truncated: an MPEG-4 box runs past its end")
    if b"moov" not in seen or b"mdat" not in seen:
        raise CorruptMedia("the MPEG-4 container lacks its movie or media data")


def _parse_mp4(path: Path) -> ParsedAudio:
    audio = MP4(path)
    info = audio.info
    codec = str(getattr(info, "codec", ""))
    if not (codec.startswith("mp4a") or codec == "alac"):
        raise UnsupportedMedia(
            f"this MPEG-4 file holds {codec or 'no'} audio, not AAC or ALAC", "audio/mp4"
        )
    with path.open("rb") as file:
        _check_mp4_atoms(file, path.stat().st_size)
    return ParsedAudio(
        mime_type="audio/mp4",
        extension="m4a",
        duration_ms=_ms(info.length),
        bitrate=_positive(info.bitrate),
        sample_rate=_positive(info.sample_rate),
        channels=_positive(info.channels),
        tags=_tags_from_mp4(audio.tags),
    )


# --- WAV ------------------------------------------------------------------------------------


def _check_wav_chunks(file: BinaryIO, size: int) -> None:
    """The ``data`` chunk must be as long as its header says."""
    header = file.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise CorruptMedia("not a RIFF WAVE file")
    pos = 12
    while pos + 8 <= size:
        file.seek(pos)
        chunk_id, chunk_size = struct.unpack("<4sI", file.read(8))
        if chunk_id == b"data":
            # 0xFFFFFFFF: size unknown (a stream written live); the rest is the data.
            if chunk_size != 0xFFFFFFFF and pos + 8 + chunk_size > size:
                raise CorruptMedia("the file is truncated: its audio data is cut short")
            if chunk_size == 0 or pos + 8 >= size:
                raise CorruptMedia("the WAVE file holds no audio data")
            return
        pos += 8 + chunk_size + (chunk_size & 1)
    raise CorruptMedia("the WAVE file has no audio data chunk")


def _parse_wav(path: Path) -> ParsedAudio:
    audio = WAVE(path)
    info = audio.info
    with path.open("rb") as file:
        _check_wav_chunks(file, path.stat().st_size)
    return ParsedAudio(
        mime_type="audio/wav",
        extension="wav",
        duration_ms=_ms(info.length),
        bitrate=_positive(info.bitrate),
        sample_rate=_positive(info.sample_rate),
        channels=_positive(info.channels),
        tags=_tags_from_id3(audio.tags),
    )

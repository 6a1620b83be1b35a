"""Audio fixtures (real files in every accepted format) and a hostile set of non-audio."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import wave
import zipfile
import zlib
from pathlib import Path

from application.tracks import UploadedFile

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "audio"

# file name -> the type it must be stored as
REAL_AUDIO = {
    "tone.mp3": "audio/mpeg",
    "tone.flac": "audio/flac",
    "tone.ogg": "audio/ogg",
    "tone.opus": "audio/opus",
    "tone.m4a": "audio/mp4",
    "tone.wav": "audio/wav",
}


def audio(name: str) -> bytes:
    """The bytes of a committed fixture."""
    return (FIXTURES / name).read_bytes()


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\xff\x00\x00" * 2 + b"\x00" + b"\x00\xff\x00" * 2)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _elf() -> bytes:
    """A minimal x86-64 Linux executable (it would call exit(0))."""
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\x00" * 8
    header += struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x400078, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 0x80, 0x80, 0x1000)
    return header + program + b"\xb8\x3c\x00\x00\x00\x31\xff\x0f\x05"


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("song.mp3", b"not really a song " * 200)
    return buffer.getvalue()


def _pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
        b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )


def _id3_then_garbage() -> bytes:
    tag_size = 64
    size = bytes(
        [(tag_size >> 21) & 0x7F, (tag_size >> 14) & 0x7F, (tag_size >> 7) & 0x7F, tag_size & 0x7F]
    )
    garbage = random.Random(3).randbytes(20_000).replace(b"\xff", b"\x00")
    return b"ID3\x04\x00\x00" + size + b"\x00" * tag_size + garbage


def _truncated_mp3() -> bytes:
    data = audio("tone.mp3")
    return data[: len(data) // 2]


# name -> (bytes, the error code they must get)
HOSTILE = {
    "random bytes": (random.Random(7).randbytes(50_000), "unsupported_media_type"),
    "an executable": (_elf(), "unsupported_media_type"),
    "a PNG image": (_png(), "unsupported_media_type"),
    "a PDF document": (_pdf(), "unsupported_media_type"),
    "a ZIP archive": (_zip(), "unsupported_media_type"),
    "an HTML page": (
        b"<!DOCTYPE html><html><head><title>song</title></head><body>la la</body></html>",
        "unsupported_media_type",
    ),
    "an empty file": (b"", "unsupported_media_type"),
    "an ID3 header and garbage": (_id3_then_garbage(), "corrupt_media"),
    "a truncated MP3": (_truncated_mp3(), "corrupt_media"),
}


def unique_wav(seed: int, milliseconds: int = 50) -> bytes:
    """A short, valid WAV file whose bytes differ for every seed (8 kHz mono noise)."""
    frames = random.Random(seed).randbytes(8 * milliseconds * 2)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)
    return buffer.getvalue()


def spool(directory: Path, data: bytes, filename: str = "upload.mp3") -> UploadedFile:
    """The data as an upload spooled to a file, as the HTTP interface hands it over."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"spool-{hashlib.sha256(data).hexdigest()[:16]}-{random.random()}"
    path.write_bytes(data)
    return UploadedFile(path, hashlib.sha256(data).hexdigest(), len(data), filename)

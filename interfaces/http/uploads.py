"""Receiving a multipart upload as a stream: never the whole file in memory.

The request body is fed, as it arrives, to python-multipart's streaming
parser. The file part goes straight to a temporary file in the data
directory (the disk blob store can then hard-link it instead of copying) and
through SHA-256 on the way; the size limit is checked on every chunk, so an
oversized upload ends with 413 as soon as it passes the limit, and its
temporary file is removed. Parsing, hashing and writing run in a worker
thread, a megabyte at a time, so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from application.tracks import UploadedFile
from interfaces.http.errors import ApiError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# Bytes handed to the parser thread at once: fewer thread hops, and with one
# batch in flight and one being received, ~16 MB of a process's memory at most.
_FEED_BYTES = 4 * 1024 * 1024
_MAX_FIELD_BYTES = 16 * 1024
_MAX_PARTS = 32


def spool_directory(data_dir: Path) -> Path:
    """Where uploads are spooled: under the data dir, on the blob store's file system."""
    return data_dir / "tmp" / "uploads"


def _invalid(field_name: str, message: str) -> ApiError:
    return ApiError(
        422,
        "validation_error",
        f"{field_name}: {message}",
        fields=[{"field": field_name, "message": message}],
    )


@dataclass
class ReceivedUpload:
    """The spooled file part (if any) and the small text fields of a multipart body."""

    file: UploadedFile | None
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        """Remove the temporary file."""
        if self.file is not None:
            self.file.path.unlink(missing_ok=True)


class _Receiver:
    """The parser's callbacks: where each part's bytes go."""

    def __init__(
        self,
        spool: Path,
        max_file_bytes: int,
        file_field: str,
        text_fields: frozenset[str],
    ) -> None:
        self._spool = spool
        self._max_file_bytes = max_file_bytes
        self._file_field = file_field
        self._text_fields = text_fields
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._parts = 0
        self._target: Callable[[Any, int, int], None] = self._ignore
        self._field_name = ""
        self._field_value = bytearray()
        self.fields: dict[str, str] = {}
        self.path: Path | None = None
        self._file: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self.size = 0
        self.filename: str | None = None
        self.ended = False

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self._target(data, start, end),
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > _MAX_PARTS:
            raise _invalid("body", f"at most {_MAX_PARTS} parts are accepted")
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).strip().lower()] = bytes(self._header_value).strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise _invalid("body", "every part needs a Content-Disposition: form-data name")
        name = options[b"name"].decode("latin-1")
        if name == self._file_field:
            if self.path is not None:
                raise _invalid(self._file_field, "send exactly one file")
            raw_name = options.get(b"filename")
            if raw_name is not None:
                # Clients send UTF-8 file names (raw, as RFC 7578 says).
                self.filename = raw_name.decode("utf-8", "replace")
            self._spool.mkdir(parents=True, exist_ok=True)
            fd, name_on_disk = tempfile.mkstemp(prefix="upload-", dir=self._spool)
            self.path = Path(name_on_disk)
            self._file = os.fdopen(fd, "wb")
            self._target = self._file_data
        elif name in self._text_fields:
            if name in self.fields:
                raise _invalid(name, "is given twice")
            self._field_name = name
            self._field_value.clear()
            self._target = self._field_data
        else:
            self._target = self._ignore

    def _file_data(self, data: Any, start: int, end: int) -> None:
        self.size += end - start
        if self.size > self._max_file_bytes:
            raise ApiError(
                413,
                "payload_too_large",
                f"the file is larger than {self._max_file_bytes} bytes",
                headers={"Connection": "close"},
            )
        chunk = memoryview(data)[start:end]
        self._hash.update(chunk)
        assert self._file is not None
        self._file.write(chunk)

    def _field_data(self, data: Any, start: int, end: int) -> None:
        self._field_value.extend(data[start:end])
        if len(self._field_value) > _MAX_FIELD_BYTES:
            raise _invalid(self._field_name, f"must be at most {_MAX_FIELD_BYTES} bytes")

    def _ignore(self, data: Any, start: int, end: int) -> None:
        """Unknown parts are skipped (their size is bounded by the body limit)."""

    def _part_end(self) -> None:
        if self._target == self._file_data:
            self._close_file()
        elif self._target == self._field_data:
            try:
                self.fields[self._field_name] = self._field_value.decode("utf-8")
            except UnicodeDecodeError:
                raise _invalid(self._field_name, "must be UTF-8 text") from None
        self._target = self._ignore

    def _end(self) -> None:
        self.ended = True

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def upload(self) -> UploadedFile | None:
        if self.path is None:
            return None
        return UploadedFile(self.path, self._hash.hexdigest(), self.size, self.filename)

    def discard(self) -> None:
        self._close_file()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


async def receive_upload(
    request: Request,
    *,
    spool: Path,
    max_file_bytes: int,
    file_field: str,
    text_fields: frozenset[str],
) -> ReceivedUpload:
    """Read a multipart/form-data body: the file part spooled and hashed, text fields kept.

    Raises :class:`ApiError`: 415 when the body is not multipart, 413 when the
    file passes ``max_file_bytes``, 422 when the body is malformed. Whatever
    goes wrong, no temporary file is left behind.
    """
    media_type, options = parse_options_header(request.headers.get("content-type"))
    if media_type != b"multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the upload as multipart/form-data")
    boundary = options.get(b"boundary")
    if not boundary:
        raise _invalid("body", "the multipart/form-data body has no boundary")
    receiver = _Receiver(spool, max_file_bytes, file_field, text_fields)
    try:
        parser = MultipartParser(boundary, cast("MultipartCallbacks", receiver.callbacks()))
    except ValueError:  # a boundary python-multipart refuses (too long...)
        raise _invalid("body", "the multipart boundary is not valid") from None

    def feed(data: bytes) -> None:
        try:
            parser.write(data)
        except MultipartParseError:
            raise _invalid("body", "the multipart/form-data body is malformed") from None

    # The next batch is received while a thread parses, hashes and writes
    # the previous one (SHA-256 and write release the GIL): one in flight at a
    # time keeps the order and bounds the memory.
    in_flight: asyncio.Future[None] | None = None

    async def hand_over(data: bytes) -> None:
        nonlocal in_flight
        if in_flight is not None:
            await in_flight
        in_flight = asyncio.ensure_future(anyio.to_thread.run_sync(feed, data))

    try:
        pending: list[bytes] = []
        pending_size = 0
        async for chunk in request.stream():
            if not chunk:
                continue
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= _FEED_BYTES:
                await hand_over(b"".join(pending))
                pending, pending_size = [], 0
        if pending:
            await hand_over(b"".join(pending))
        if in_flight is not None:
            await in_flight
        with contextlib.suppress(MultipartParseError):
            parser.finalize()
        if not receiver.ended:
            raise _invalid("body", "the multipart/form-data body ended too early")
        receiver._close_file()
    except ClientDisconnect:
        await _settled(in_flight)
        receiver.discard()
        raise ApiError(400, "bad_request", "the client went away before the upload ended") from None
    except BaseException:
        await _settled(in_flight)
        receiver.discard()
        raise
    return ReceivedUpload(receiver.upload(), receiver.fields)


async def _settled(work: asyncio.Future[None] | None) -> None:
    """Wait for a feed still running in its thread, whatever its outcome (it writes the file)."""
    if work is not None:
        with contextlib.suppress(BaseException):
            await asyncio.shield(work)


def sweep_spool(spool: Path, older_than: datetime) -> int:
    """Remove spooled uploads left by a crashed process; return how many."""
    removed = 0
    if not spool.is_dir():
        return 0
    cutoff = older_than.timestamp()
    for path in spool.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if path.name.startswith("upload-") and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed

"""Blobs as files under the data directory, content-addressed: ``ab/cd/<sha256>``.

A blob is written to a temporary file in the same file system, fsynced, and
renamed into place atomically, then its directory is fsynced: a reader never
sees half a blob, and a crash leaves at most a temporary file, which
``theplaylist storage gc`` removes. When the source file is on the same file
system (the upload spool lives under the data directory too), it is
hard-linked instead of copied: storing a large upload costs no second write.
Blob files are made readable by the owner and its group (0640), whatever the
source's mode, so a web server in the service's group can send them itself
(nginx ``X-Accel-Redirect``, docs/streaming.md) and nobody else can read them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from application.errors import BlobNotFound
from application.ports import BlobInfo

log = logging.getLogger(__name__)

KEY = re.compile(r"^[0-9a-f]{64}$")
INCOMING = ".incoming"
BLOB_MODE = 0o640
# preadv2's flag "fail rather than wait for the device" (Linux 4.14+); absent elsewhere.
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


def check_key(key: str) -> str:
    """The key, if it is a lower-case hex SHA-256 (anything else could escape the root)."""
    if not KEY.fullmatch(key):
        raise ValueError("a blob key is a lower-case hex SHA-256")
    return key


def relative_path(key: str) -> str:
    """The blob's place under the root: ``ab/cd/<sha256>``."""
    check_key(key)
    return f"{key[:2]}/{key[2:4]}/{key}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskBlobStore:
    """The default :class:`application.ports.BlobStore`: files under ``root``."""

    name = "disk"

    def __init__(self, root: Path, chunk_size: int = 1024 * 1024) -> None:
        self.root = root
        self._chunk_size = chunk_size
        self._incoming = root / INCOMING
        self._incoming.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """Where the blob of ``key`` lives."""
        return self.root / relative_path(key)

    def put(self, key: str, source: Path, size: int) -> None:
        """Store ``source`` under ``key`` (kept as is when already stored whole)."""
        final = self.path(key)
        with contextlib.suppress(FileNotFoundError):
            if final.stat().st_size == size:
                # Fresh again: garbage collection leaves recently written blobs alone.
                os.utime(final)
                return
        self._make_dirs(final.parent)
        temporary = self._incoming / f"{key}.{secrets.token_hex(8)}"
        try:
            try:
                os.link(source, temporary)
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                # Another file system: copy (in the kernel where the OS allows).
                shutil.copyfile(source, temporary)
            with temporary.open("rb") as written:
                os.fchmod(written.fileno(), BLOB_MODE)
                os.fsync(written.fileno())
                if os.fstat(written.fileno()).st_size != size:
                    raise OSError(f"blob {key}: {size} bytes expected")
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)

    def _make_dirs(self, directory: Path) -> None:
        missing = []
        while not directory.exists() and directory != self.root:
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):
                new.mkdir()
            # The new directory's entry must be durable too, or the blob could vanish.
            _fsync_dir(new.parent)

    def exists(self, key: str) -> bool:
        """True when the blob is stored."""
        return self.path(key).is_file()

    def stat(self, key: str) -> BlobInfo:
        """Size and last write time."""
        try:
            result = self.path(key).stat()
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {key}") from None
        return BlobInfo(key, result.st_size, datetime.fromtimestamp(result.st_mtime, UTC))

    def read(self, key: str, start: int, end: int) -> bytes:
        """A small range, into memory."""
        try:
            with self.path(key).open("rb") as file:
                file.seek(start)
                return file.read(end - start)
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {key}") from None

    def read_cached(self, key: str, start: int, end: int) -> memoryview | None:
        """A range already in the page cache, read without blocking (``RWF_NOWAIT``).

        The kernel refuses (EAGAIN) rather than wait for the device, or reads only
        the part it has at hand; either way the answer is None and :meth:`read`
        is left to do it off the event loop. So is a missing blob or a bad key
        (read says which) and a system without ``preadv2`` flags. Opening the
        file is a path lookup the kernel answers from its caches for a blob in
        use: only a cold one waits for the disk, once.
        """
        if _NOWAIT is None:
            return None
        try:
            fd = os.open(self.path(key), os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, ValueError):
            return None
        buffer = bytearray(end - start)
        try:
            done = os.preadv(fd, [buffer], start, _NOWAIT)
        except OSError:
            return None
        finally:
            os.close(fd)
        return memoryview(buffer) if done == len(buffer) else None

    def open(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """A range as chunks; the file is opened now, so it survives a concurrent delete."""
        try:
            file = self.path(key).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {key}") from None
        return self._chunks(file, start, end)

    def _chunks(self, file: IO[bytes], start: int, end: int) -> Iterator[bytes]:
        with file:
            file.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = file.read(min(self._chunk_size, remaining))
                if not chunk:
                    raise OSError("the blob is shorter than expected")
                remaining -= len(chunk)
                yield chunk

    def local_path(self, key: str) -> Path | None:
        """The blob's file."""
        path = self.path(key)
        if not path.is_file():
            raise BlobNotFound(f"no blob {key}")
        return path

    def delivery_path(self, key: str) -> str | None:
        """``ab/cd/<sha256>``: the file's path relative to the root."""
        return relative_path(key)

    def presigned_url(
        self, key: str, ttl_seconds: int, content_type: str, disposition: str
    ) -> str | None:
        """Files have no signed URLs."""
        return None

    def delete(self, key: str) -> None:
        """Remove the file (and its directory entry, durably)."""
        path = self.path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def list(self) -> Iterator[BlobInfo]:
        """Every blob file under the root."""
        for first in sorted(self.root.glob("[0-9a-f][0-9a-f]")):
            for second in sorted(first.glob("[0-9a-f][0-9a-f]")):
                for path in sorted(second.iterdir()):
                    if KEY.fullmatch(path.name) and path.name.startswith(first.name + second.name):
                        with contextlib.suppress(FileNotFoundError):
                            result = path.stat()
                            yield BlobInfo(
                                path.name,
                                result.st_size,
                                datetime.fromtimestamp(result.st_mtime, UTC),
                            )

    def sweep_incomplete(self, older_than: datetime) -> int:
        """Remove temporary files of writes that never finished."""
        removed = 0
        cutoff = older_than.timestamp()
        for path in self._incoming.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def health(self) -> None:
        """The root must exist and be writable."""
        if not self.root.is_dir():
            raise OSError(f"{self.root} is not a directory")
        if not os.access(self._incoming, os.W_OK | os.X_OK):
            raise PermissionError(f"{self._incoming} is not writable")

    def close(self) -> None:
        """Nothing to release."""

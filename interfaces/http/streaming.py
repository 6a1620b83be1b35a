"""Serving audio blobs over HTTP: single byte ranges, ETags, conditional GET.

Ranges follow RFC 9110: ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` are
served as 206 with ``Content-Range``; a range starting past the end is 416;
anything else (other units, several ranges, malformed specs, an ``If-Range``
that does not match) is ignored and the whole file is sent. The ETag is the
content's SHA-256, so ``If-None-Match`` answers 304 without touching storage.

Small answers are read into memory in one call (on the event loop itself when
the page cache holds them, else in a worker thread); larger ones stream in
chunks of bounded size: from a local file through Starlette's ``FileResponse``
(which hands the file to the server for zero-copy sending when the server
supports the ASGI path-send extension), or from S3 as a ranged GET streamed
as it arrives.

Behind nginx or in front of S3 the bytes can be handed off instead
(``THEPLAYLIST_STREAM_DELIVERY``, docs/streaming.md): once the track is found
and ``If-None-Match`` answered, a GET is answered with an empty 200 whose
``X-Accel-Redirect`` names the blob's file, which nginx then serves (ranges
included), or with a 307 to a presigned URL of the object, to which the
client sends its ``Range``. HEAD is always answered here (it reads nothing).
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from anyio.to_thread import run_sync
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from application.errors import BlobNotFound
from application.ports import BlobStore
from interfaces.http.errors import ApiError

_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')
_NOT_ASCII_SAFE = re.compile(r"[^A-Za-z0-9 ._()'&,+-]+")
_NAME_MAX = 150

# What browsers expect for each stored type (Ogg Opus is served as Ogg).
SERVING_TYPES = {"audio/opus": "audio/ogg; codecs=opus"}


DeliveryMode = Literal["direct", "x-accel-redirect", "s3-presigned"]


@dataclass(frozen=True)
class Delivery:
    """Who sends a blob's bytes: this service, nginx or S3 (see the module's docstring)."""

    mode: DeliveryMode = "direct"
    accel_prefix: str = "/_protected_blobs/"
    presign_ttl_seconds: int = 300


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` (exclusive) of a file of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` header value."""
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


def requested_range(
    range_header: str | None, if_range: str | None, etag: str, size: int
) -> ByteRange | None:
    """The single range to serve, or None for the whole file; 416 when unsatisfiable."""
    if range_header is None or (if_range is not None and if_range.strip() != etag):
        return None
    unit, _, spec = range_header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE.match(spec)
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
        if last and int(last) < start:
            return None
    else:
        suffix = int(last)
        start, end = max(0, size - suffix), size
        if suffix == 0:
            start = size
    if start >= size:
        raise ApiError(
            416,
            "range_not_satisfiable",
            f"the range starts past the end of the file ({size} bytes)",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return ByteRange(start, end, size)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """True when ``If-None-Match`` names this ETag (weak comparison) or is ``*``."""
    if if_none_match is None:
        return False
    candidates = [c.strip() for c in if_none_match.split(",")]
    return "*" in candidates or any(c.removeprefix("W/") == etag for c in candidates)


def _safe_name(name: str) -> str:
    name = unicodedata.normalize("NFC", name)
    name = _UNSAFE.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip(" ._")
    return name[:_NAME_MAX].strip(" ._")


def download_name(title: str, artist: str | None, extension: str) -> str:
    """``<artist> - <title>.<ext>`` (or ``<title>.<ext>``), with safe characters only."""
    stem = _safe_name(f"{artist} - {title}" if artist else title) or "track"
    return f"{stem}.{extension}"


def content_disposition(kind: str, filename: str) -> str:
    """An RFC 6266 header: an ASCII ``filename`` for old clients, UTF-8 ``filename*``."""
    stem, dot, extension = filename.rpartition(".")
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    ascii_stem = _NOT_ASCII_SAFE.sub("_", ascii_stem).strip(" ._") or "track"
    fallback = f"{ascii_stem}{dot}{extension}"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class _BlobFileResponse(FileResponse):
    """A ``FileResponse`` serving exactly the range this module decided on.

    Starlette reads the Range header itself; the request's range headers are
    replaced by the one canonical range (or none), so both agree.
    """

    def __init__(
        self,
        path: Path,
        byte_range: ByteRange | None,
        *,
        headers: dict[str, str],
        media_type: str,
        chunk_size: int,
    ) -> None:
        super().__init__(path, headers=headers, media_type=media_type, stat_result=os.stat(path))
        self.chunk_size = chunk_size
        self._byte_range = byte_range

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"range", b"if-range")]
        if self._byte_range is not None:
            spec = f"bytes={self._byte_range.start}-{self._byte_range.end - 1}"
            headers.append((b"range", spec.encode("latin-1")))
        await super().__call__({**scope, "headers": headers}, receive, send)


def _handed_off(
    blobs: BlobStore,
    delivery: Delivery,
    *,
    sha256: str,
    media_type: str,
    headers: dict[str, str],
    disposition: str | None,
) -> Response | None:
    """The answer that lets nginx or S3 send the bytes; None to send them here."""
    if delivery.mode == "x-accel-redirect":
        path = blobs.delivery_path(sha256)
        if path is None:
            return None
        # An empty body (Content-Length: 0, not the file's): nginx replaces it with the
        # file, keeps Content-Type, Content-Disposition, Accept-Ranges and Cache-Control,
        # and answers Range itself. ETag and nosniff are re-added by its config.
        accel = {**headers, "X-Accel-Redirect": f"{delivery.accel_prefix}{path}"}
        return Response(status_code=200, headers=accel, media_type=media_type)
    if delivery.mode == "s3-presigned":
        ttl = delivery.presign_ttl_seconds
        url = blobs.presigned_url(sha256, ttl, media_type, disposition or "inline")
        if url is None:
            return None
        # The redirect may be kept by the client's own cache (never a shared one: the URL
        # is a credential, if a short-lived one) for half the URL's lifetime, so a cached
        # Location still has at least the other half left for the fetch and later seeks.
        # No ETag on it: a revalidation answered 304 would revive a stored Location whose
        # signature may have expired.
        redirect = {
            "Location": url,
            "Cache-Control": f"private, max-age={ttl // 2}",
            "X-Content-Type-Options": "nosniff",
        }
        return Response(status_code=307, headers=redirect)
    return None


async def audio_response(
    request: Request,
    blobs: BlobStore,
    *,
    sha256: str,
    size: int,
    mime_type: str,
    memory_threshold: int,
    chunk_size: int,
    disposition: str | None = None,
    delivery: Delivery | None = None,
) -> Response:
    """The blob (or the asked range of it) as an HTTP response, or a hand-off of it.

    Decided on the event loop; whatever may wait on storage or the network runs in
    a worker thread, but a small range the page cache holds is read in place: the
    thread hop would cost more than the read.
    """
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Accept-Ranges": "bytes"}
    if disposition is not None:
        headers["Content-Disposition"] = disposition
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    media_type = SERVING_TYPES.get(mime_type, mime_type)
    headers["X-Content-Type-Options"] = "nosniff"
    if delivery is not None and delivery.mode != "direct" and request.method != "HEAD":
        # Signing may fetch credentials over the network: off the loop, like storage.
        handed_off = await run_sync(
            partial(
                _handed_off,
                blobs,
                delivery,
                sha256=sha256,
                media_type=media_type,
                headers=headers,
                disposition=disposition,
            )
        )
        if handed_off is not None:
            return handed_off
    byte_range = requested_range(
        request.headers.get("range"), request.headers.get("if-range"), etag, size
    )
    start, end = (byte_range.start, byte_range.end) if byte_range else (0, size)
    status = 206 if byte_range else 200
    if byte_range is not None:
        headers["Content-Range"] = byte_range.content_range
    if request.method == "HEAD":
        headers["Content-Length"] = str(end - start)
        return Response(status_code=status, headers=headers, media_type=media_type)
    if end - start <= memory_threshold:
        data: bytes | memoryview | None = blobs.read_cached(sha256, start, end)
        if data is None:
            data = await run_sync(blobs.read, sha256, start, end)
        return Response(data, status_code=status, headers=headers, media_type=media_type)
    return await run_sync(
        partial(
            _chunked,
            blobs,
            sha256,
            byte_range,
            start,
            end,
            status=status,
            headers=headers,
            media_type=media_type,
            chunk_size=chunk_size,
        )
    )


def _chunked(
    blobs: BlobStore,
    sha256: str,
    byte_range: ByteRange | None,
    start: int,
    end: int,
    *,
    status: int,
    headers: dict[str, str],
    media_type: str,
    chunk_size: int,
) -> Response:
    """A response sending the blob in chunks: from its local file, or as fetched."""
    path = blobs.local_path(sha256)
    if path is not None:
        try:
            return _BlobFileResponse(
                path, byte_range, headers=headers, media_type=media_type, chunk_size=chunk_size
            )
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {sha256}") from None
    chunks = blobs.open(sha256, start, end)
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(chunks, status_code=status, headers=headers, media_type=media_type)

"""Every failure becomes ``{"error": {"code", "message", ...}}``, mapped here and only here."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from application.errors import (
    BlobNotFound,
    Conflict,
    Contention,
    CorruptMedia,
    DuplicateTrack,
    Forbidden,
    NotFound,
    PreconditionFailed,
    StorageUnavailable,
    Unauthenticated,
    UnsupportedMedia,
)
from domain.errors import (
    AlreadyClaimed,
    Gone,
    InvalidValue,
    LimitReached,
    NoSuchPart,
    NotPermitted,
    RefreshTokenReused,
    SessionRevoked,
    StateConflict,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP failure decided by the interface itself (lag, size limits, bad headers)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The JSON envelope of API.md."""
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}},
        status_code=status,
        headers=headers,
    )


def unparseable_body(reason: str) -> ApiError:
    """The 422 for a request body that cannot be parsed at all (``reason`` says why)."""
    return ApiError(
        422,
        "validation_error",
        "the request body cannot be parsed",
        fields=[{"field": "body", "message": reason, "type": "body_invalid"}],
    )


_BY_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "validation_error",
    429: "rate_limited",
    503: "service_unavailable",
}


def _to_response(error: Exception) -> JSONResponse:
    match error:
        case ApiError():
            return error_response(
                error.status, error.code, error.message, error.headers, **error.extra
            )
        case DuplicateTrack():
            return error_response(
                409, "duplicate_track", str(error), existing_track_id=str(error.existing_track_id)
            )
        case UnsupportedMedia():
            return error_response(
                415, "unsupported_media_type", str(error), mime_type=error.mime_type
            )
        case CorruptMedia():
            return error_response(422, "corrupt_media", str(error))
        case StorageUnavailable():
            return error_response(
                503, "storage_unavailable", str(error), {"Retry-After": str(error.retry_after)}
            )
        case BlobNotFound():
            # A live track whose blob is gone: the storage lost it (or an operator did).
            log.error("a track's blob is missing from storage: %s", error)
            return error_response(404, "not_found", "the audio of this track is missing")
        case InvalidValue():
            return error_response(
                422,
                "validation_error",
                f"{error.field} {error}",
                fields=[{"field": error.field, "message": str(error)}],
            )
        case AlreadyClaimed():
            return error_response(409, "conflict", str(error), field=error.kind)
        case NotFound() | Gone():
            return error_response(404, "not_found", str(error))
        case Unauthenticated() | SessionRevoked() | RefreshTokenReused():
            return error_response(
                401, "unauthenticated", str(error), {"WWW-Authenticate": "Bearer"}
            )
        case Forbidden() | NotPermitted():
            return error_response(403, "forbidden", str(error))
        case PreconditionFailed():
            return error_response(
                412, "precondition_failed", str(error), current_version=error.current_version
            )
        case NoSuchPart():
            return error_response(404, "not_found", str(error))
        case LimitReached():
            return error_response(409, "conflict", str(error), limit=error.limit)
        case StateConflict():
            return error_response(409, "conflict", str(error))
        case Conflict():
            return error_response(409, "conflict", str(error))
        case Contention():
            return error_response(503, "contention", str(error), {"Retry-After": "1"})
        case DBAPIError(connection_invalidated=True):
            # Read-model connections are not pinged before use: the first query on
            # a connection the database dropped fails here, and the pool then
            # replaces every connection older than the failure.
            log.warning("a read-model connection was lost: %s", type(error.orig).__name__)
            return error_response(
                503,
                "database_unavailable",
                "the database connection was lost; retry",
                {"Retry-After": "1"},
            )
    log.exception("unhandled error", exc_info=error)
    return error_response(500, "internal_error", "an unexpected error occurred")


def _validation_response(error: RequestValidationError) -> JSONResponse:
    fields = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            fields.append({"field": "body", "message": "is not valid JSON", "type": "json_invalid"})
            continue
        location = [str(part) for part in item.get("loc", ()) if part != "body"]
        fields.append(
            {
                "field": ".".join(location) or "body",
                "message": str(item.get("msg", "is invalid")),
                "type": str(item.get("type", "invalid")),
            }
        )
    if any(f["type"] == "json_invalid" for f in fields):
        message = "the request body is not valid JSON"
    else:
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "invalid request"
    return error_response(422, "validation_error", message, fields=fields)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception an app can raise to the JSON envelope; never leak a trace."""

    async def on_error(_request: Request, error: Exception) -> JSONResponse:
        return _to_response(error)

    async def on_validation(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return _validation_response(error)

    async def on_http(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        if error.status_code == 400:
            # Starlette and FastAPI raise 400 for a body they cannot parse (not UTF-8,
            # nested too deep, a broken multipart): invalid input like any other, so
            # the same 422 as a body that is not JSON.
            detail = error.detail if isinstance(error.detail, str) else "cannot be parsed"
            return _to_response(unparseable_body(detail))
        code = _BY_STATUS.get(error.status_code, "error")
        message = error.detail if isinstance(error.detail, str) else code.replace("_", " ")
        if error.status_code == 404 and message == "Not Found":
            message = "no such resource"
        elif error.status_code == 405:
            message = "this method is not allowed on this resource"
        return error_response(error.status_code, code, message, dict(error.headers or {}))

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for kind in (
        ApiError,
        InvalidValue,
        AlreadyClaimed,
        NotFound,
        Gone,
        Unauthenticated,
        SessionRevoked,
        RefreshTokenReused,
        Forbidden,
        NotPermitted,
        Conflict,
        Contention,
        PreconditionFailed,
        NoSuchPart,
        StateConflict,
        DuplicateTrack,
        UnsupportedMedia,
        CorruptMedia,
        StorageUnavailable,
        BlobNotFound,
        DBAPIError,
        Exception,
    ):
        app.add_exception_handler(kind, on_error)

"""Keyset pagination: opaque cursors over (sort value, id), and the page they cut.

A cursor names the last row of a page by its sort value and id, so the next
page starts right after it whatever was inserted meanwhile, and costs an index
range scan however deep the client pages (no OFFSET).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from sqlalchemy import ColumnElement, and_, or_

from domain.errors import InvalidValue

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, and the cursor of the next one (None on the last page)."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(value: Any, row_id: UUID) -> str:
    """An opaque cursor for the row with this sort value and id."""
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([value, str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, value_type: type) -> tuple[Any, UUID]:
    """The sort value and id a cursor names; :class:`InvalidValue` for a forged or stale one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(row_id, str):
            raise TypeError(row_id)
        return _sort_value(value, value_type), UUID(row_id)
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise InvalidValue("cursor", "is not a cursor of this list") from None


_BIGINT = 2**63


def _sort_value(value: Any, value_type: type) -> Any:
    """``value`` if it is one this list's sort column could hold, else ValueError or TypeError.

    A cursor comes back from the client, so it is checked as input: a value the
    database cannot bind (an integer past 64 bits, text with NUL or a lone
    surrogate, a time that overflows on conversion to UTC) would otherwise be
    a 500 rather than a 422.
    """
    if value_type is datetime:
        moment = datetime.fromisoformat(value["t"])
        if moment.tzinfo is None or not 1 < moment.year < 9999:
            raise ValueError(value)
        return moment
    if not isinstance(value, value_type) or isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, int) and not -_BIGINT <= value < _BIGINT:
        raise ValueError(value)
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(value)
    if isinstance(value, str):
        value.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate
    return value


def after(
    column: ColumnElement[Any],
    id_column: ColumnElement[Any],
    value: Any,
    row_id: Any,
    *,
    desc: bool,
) -> ColumnElement[bool]:
    """Rows after (value, row_id) in the order ``column, id`` (both descending when ``desc``).

    ``value`` and ``row_id`` are values, or bound parameters of a statement built once.
    """
    if desc:
        return or_(column < value, and_(column == value, id_column < row_id))
    return or_(column > value, and_(column == value, id_column > row_id))

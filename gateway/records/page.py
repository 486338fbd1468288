"""Pages of a listing, newest first, and the opaque cursors that continue them. Pure: no I/O.

A cursor is the (time, id) of the last item shown, base64url-encoded: the next page starts after it, so a page
never repeats or skips an item however much is written meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.errors import Invalid

T = TypeVar("T")
PAGE_MAX = 500  # the most items one page may ask for
MAX_CURSOR = 512  # characters: ours are under 100


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing, newest first; ``next`` is the cursor of the following page (None: the last)."""

    items: list[T]
    next: str | None


def encode_cursor(at: float, item_id: str) -> str:
    raw = json.dumps([at, item_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_NOT_OURS = "cursor: not a cursor this gateway handed out (pass the previous page's `next` as it is)"


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raises Invalid for anything this gateway did not hand out (a cursor is input like any other)."""
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError
        at, item_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(at, bool) or not isinstance(at, int | float) or not isinstance(item_id, str):
            raise ValueError
        at = float(at)  # OverflowError for an integer past a float's range ([10**400, "x"])
        if not math.isfinite(at) or len(item_id) > MAX_CURSOR:
            raise ValueError
    except (ValueError, TypeError, OverflowError, binascii.Error, RecursionError):
        raise Invalid(_NOT_OURS) from None
    return at, item_id


def decode_rejection_cursor(cursor: str) -> int:
    """The rejection id a rejections page continues before: ids are whole numbers the database can hold."""
    _, raw_id = decode_cursor(cursor)
    if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 18:  # "²" is a digit to isdigit()
        raise Invalid("cursor: not a cursor of the rejections listing")
    return int(raw_id)


def limited(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_MAX:
        raise Invalid(f"limit: expected a whole number from 1 to {PAGE_MAX}, got {limit!r}")
    return limit


def paged(items: list[T], limit: int, key: Callable[[T], tuple[float, str]]) -> Page[T]:
    """``items`` were read with limit + 1: the extra one only says whether another page exists."""
    if len(items) <= limit:
        return Page(items, None)
    kept = items[:limit]
    return Page(kept, encode_cursor(*key(kept[-1])))

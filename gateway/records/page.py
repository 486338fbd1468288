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


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing, newest first; ``next`` is the cursor of the following page (None: the last)."""

    items: list[T]
    next: str | None


def encode_cursor(at: float, item_id: str) -> str:
    raw = json.dumps([at, item_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raises Invalid for anything this gateway did not hand out."""
    try:
        at, item_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(at, bool) or not isinstance(at, int | float) or not isinstance(item_id, str):
            raise ValueError
        if not math.isfinite(at):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise Invalid(
            "cursor: not a cursor this gateway handed out (pass the previous page's `next` as it is)"
        ) from None
    return float(at), item_id


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

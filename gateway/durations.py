"""Durations as people write them (``30s``, ``15m``, ``1.5h``, ``7d``, ``2w``): one grammar for the CLI's
``--since``, routes.yaml's ``retention:`` and admin token lifetimes. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_FORM = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def split(value: object) -> tuple[float | None, str]:
    """``'1.5d'`` → (1.5, 'd'); a plain number → (n, ''); anything else → (None, ''). The unit is not checked:
    callers say what is wrong with ``'30x'`` in their own words."""
    if isinstance(value, bool):
        return None, ""
    if isinstance(value, int | float):
        return (float(value), "") if math.isfinite(value) else (None, "")
    m = _FORM.match(value) if isinstance(value, str) else None
    if m is None:
        return None, ""
    number = float(m.group(1))
    return (number, m.group(2)) if math.isfinite(number) else (None, "")


def seconds(text: str) -> float | None:
    """Seconds in ``30m``, ``1.5h``, ``7d``: a number of at least 0 and one of the units; None otherwise."""
    number, unit = split(text)
    if number is None or number < 0 or unit not in UNITS:
        return None
    value = number * UNITS[unit]
    return value if math.isfinite(value) else None


def since(text: str, now: float) -> float:
    """A moment as people give it: ``30m``, ``24h``, ``7d`` ago, or an ISO-8601 time (UTC unless it says) →
    unix seconds. Raises ValueError (OverflowError, OSError for a year far out of range)."""
    ago = seconds(text)
    if ago is not None:
        return now - ago
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"expected a duration like 30m, 24h, 7d or an ISO time, got {text!r}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def format_duration(value: float) -> str:
    """``2592000`` → ``'30d'``, ``43200`` → ``'12h'``, ``5400`` → ``'90m'``, ``45`` → ``'45s'``: the largest
    of d, h, m that divides evenly (weeks show as days: ``2w`` → ``14d``)."""
    for unit in ("d", "h", "m"):
        size = UNITS[unit]
        if value and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{int(value)}s" if value == int(value) else f"{value:g}s"

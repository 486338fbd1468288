"""What a source keeps beyond its events, and for how long: ``rejections:`` (how many bytes of refused
requests are kept whole, to verify again once a secret is fixed) and ``dedupe_window:`` (how long a dedupe key
holds) in routes.yaml, read into plain values.

Pure: no I/O, no clock. The store enforces both (gateway/store/ops/rejections.py and intake.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.durations import UNITS, format_duration, split
from gateway.errors import Problem, unknown_key
from gateway.model import RejectionKeep
from gateway.routes.sizes import parse_size

# 32 MiB a source: thousands of typical deliveries (1-50 KiB), or three of the largest a default max_body
# takes; a few sources can never fill a disk with it.
DEFAULT_REJECTIONS = RejectionKeep(32 * 1024 * 1024)
REJECTION_KEYS = ("keep",)
MIN_DEDUPE_WINDOW = (
    60.0  # shorter is almost surely a mistake, and a provider's quick retry must stay a duplicate
)
_WINDOW_FORMS = "expected a duration like 7d, 12h or 90m (units s, m, h, d, w), or forever (as long as kept)"


def parse_rejections(raw: Mapping[str, Any], where: str, problems: list[Problem]) -> RejectionKeep:
    """A source's ``rejections: {keep: 64MiB}`` (``keep: 0`` keeps no request), else the default; a bad
    value appends a Problem under ``where`` (the source's path) and gives the default."""
    if "rejections" not in raw:
        return DEFAULT_REJECTIONS
    value, where = raw["rejections"], f"{where}.rejections"
    if not isinstance(value, dict):
        problems.append(Problem(where, f"expected a mapping like {{keep: 32MiB}}, got {value!r}"))
        return DEFAULT_REJECTIONS
    problems += [
        unknown_key(key, REJECTION_KEYS, f"{where}.{key}") for key in value if key not in REJECTION_KEYS
    ]
    if "keep" not in value:
        problems.append(
            Problem(f"{where}.keep", "missing: how many bytes of rejected requests to keep (32MiB)")
        )
        return DEFAULT_REJECTIONS
    keep = value["keep"]
    if keep in (0, "0") and not isinstance(keep, bool):
        return RejectionKeep(0)
    return RejectionKeep(parse_size(keep, f"{where}.keep", problems, DEFAULT_REJECTIONS.keep))


def parse_dedupe_window(
    raw: Mapping[str, Any], where: str, problems: list[Problem], *, has_key: bool
) -> float | None:
    """A source's ``dedupe_window:`` in seconds: a key older than that may be stored again. None (the default,
    ``forever`` or null): a key holds as long as the event that has it is kept. ``has_key``: the source has a
    dedupe key path (a window means nothing without one)."""
    value = raw.get("dedupe_window")
    where = f"{where}.dedupe_window"
    if value is None or value == "forever":
        return None
    if not has_key:
        problems.append(Problem(where, "this source has no dedupe key (dedupe:); set one, or remove it"))
        return None
    number, unit = split(value)
    if number is None or unit not in UNITS or number * UNITS[unit] < MIN_DEDUPE_WINDOW:
        if number is not None and not unit:
            problem = f"a duration needs a unit (s, m, h, d or w): write {str(value).strip()}d, not {value!r}"
        elif number is not None and unit in UNITS:
            problem = f"dedupe_window must be at least {format_duration(MIN_DEDUPE_WINDOW)}, got {value!r}"
        else:
            problem = f"{_WINDOW_FORMS}, got {value!r}"
        problems.append(Problem(where, problem))
        return None
    return float(round(number * UNITS[unit]))

"""The admin API's parameters, read from query strings and JSON bodies: paging, times, filters. Pure: no I/O.

Every bad value is an Invalid that names the parameter, what was expected, and what came (never quoting more
than a few characters of it).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from gateway import durations
from gateway.errors import Invalid, NotFound, unknown_key
from gateway.model import EVENT_STATUSES, REPLAY, RERUN, RUN_STATUSES, EventFilter, RunFilter
from gateway.records.page import PAGE_MAX

CHOICES: dict[tuple[type[Any], str], tuple[str, ...]] = {
    (EventFilter, "status"): EVENT_STATUSES,
    (EventFilter, "run_status"): RUN_STATUSES,
    (RunFilter, "status"): RUN_STATUSES,
}
# Query parameter → EventFilter field (``type`` reads better in a URL than ``event_type``).
EVENT_PARAMS = {"type": "event_type", "q": "text"} | {
    n: n for n in ("source", "status", "since", "until", "task", "run_status")
}
RUN_PARAMS = {n: n for n in ("status", "task", "source", "event_id", "since", "until")}
PAGING = ("limit", "cursor")

F = TypeVar("F", EventFilter, RunFilter)


def paging(params: Mapping[str, str]) -> dict[str, Any]:
    """``cursor`` and ``limit`` for a listing; the limit's range is the service's to check."""
    value = params.get("limit", "50")
    if not (value.isascii() and value.isdigit()) or len(value) > 6:
        raise Invalid(f"limit: expected a whole number from 1 to {PAGE_MAX}, got {value[:20]!r}")
    return {"cursor": params.get("cursor"), "limit": int(value)}


def rejection_id(value: str) -> int:
    """A rejection's id from a path: a whole number (NotFound otherwise, as for any id that names nothing)."""
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    raise NotFound(f"no rejection with id {value[:40]!r}")


def time(name: str, value: object, now: float) -> float:
    """A time from ISO-8601 (``2026-11-24T10:00:00Z``), a duration ago (``30m``, ``24h``, ``7d``) or, in a
    JSON body, a number of unix seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            return durations.since(value, now)
        except (ValueError, OverflowError, OSError):
            pass
    shown = repr(value[:40]) if isinstance(value, str) else f"a JSON {kind(value)}"
    raise Invalid(
        f"{name}: expected an ISO-8601 time like 2026-11-24T10:00:00Z or a duration ago like 30m, 24h, 7d; "
        f"got {shown}"
    )


def kind(value: object) -> str:
    """The JSON name of a parsed value's type, to say what was sent without quoting it."""
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def choice(name: str, value: str, choices: tuple[str, ...] | None) -> str:
    if choices is None or value in choices:
        return value
    hint = difflib.get_close_matches(value, choices, n=1)
    why = f"did you mean {hint[0]!r}?" if hint else f"expected one of {', '.join(choices)}"
    raise Invalid(f"{name}: unknown value {value[:40]!r} ({why})")


def filter(cls: type[F], values: Mapping[str, object], now: float) -> F:
    """A filter from field values (None: not given), each checked; Invalid names the first bad one."""
    fields: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name in ("since", "until"):
            fields[name] = time(name, value, now)
            continue
        if name == "include_replays":
            if not isinstance(value, bool):
                raise Invalid(f"{name}: expected true or false, got a JSON {kind(value)}")
            fields[name] = value
            continue
        if not isinstance(value, str) or not value:
            raise Invalid(
                f"{name}: expected a non-empty string, got {repr(value) if value == '' else kind(value)}"
            )
        fields[name] = choice(name, value, CHOICES.get((cls, name)))
    if fields.get("since", -math.inf) > fields.get("until", math.inf):
        raise Invalid("since: is after until; nothing can match")
    return cls(**fields)


def from_query(cls: type[F], params: Mapping[str, str], names: Mapping[str, str], now: float) -> F:
    return filter(cls, {field: params.get(param) for param, field in names.items()}, now)


def bulk_filter(kind: object, raw: object, now: float) -> tuple[str, EventFilter | RunFilter]:
    """The filter of a bulk job request: EventFilter fields for a replay, RunFilter fields for a rerun. A
    replay takes original deliveries only unless ``include_replays`` is true."""
    if kind not in (REPLAY, RERUN):
        raise Invalid(f"kind: expected {REPLAY!r} (route events again) or {RERUN!r} (run runs again)")
    if not isinstance(raw, dict):
        raise Invalid('filter: expected a JSON object of filter fields, e.g. {"source": "github"}')
    cls = EventFilter if kind == REPLAY else RunFilter
    fields = tuple(f.name for f in dataclasses.fields(cls))
    for name in raw:
        if name not in fields:
            raise Invalid(str(unknown_key(name[:40], fields, "filter")))
    if kind == REPLAY:
        return REPLAY, filter(EventFilter, {"include_replays": False, **raw}, now)
    return RERUN, filter(RunFilter, raw, now)

"""How long stored records are kept: ``retention:`` values from routes.yaml and the cutoff times a prune uses.

Pure: no I/O, no clock (``now`` comes in). The prune itself (SQL and loop) lives elsewhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.errors import Problem

if TYPE_CHECKING:  # config.py imports this module; the type is only needed for annotations
    from gateway.routes.load import Config

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MINIMUM = 3600.0  # shorter is almost surely a mistake (5m written for 5 months?)
FOREVER = "forever"
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_FORMS = "expected a duration like 30d, 12h or 1.5d (units s, m, h, d, w), or forever (never prune)"


def parse_retention(value: object, where: str, problems: list[Problem]) -> float | None:
    """Seconds to keep records, or None for ``forever`` / null; a bad value appends a Problem at ``where``
    (and gives None, so one typo never prunes anything)."""
    if value is None or value == FOREVER:
        return None
    number, unit = _split(value)
    if number is None:
        problems.append(Problem(where, f"{_FORMS}, got {value!r}"))
        return None
    if not unit:
        if number > 0:
            problems.append(
                Problem(
                    where,
                    f"a duration needs a unit (s, m, h, d or w): write {str(value).strip()}d, not {value!r}",
                )
            )
        else:
            problems.append(Problem(where, f"retention must be at least 1h, got {value!r}"))
        return None
    if unit not in UNITS:
        problems.append(Problem(where, f"unknown unit {unit!r} in {value!r} (use s, m, h, d or w, e.g. 30d)"))
        return None
    seconds = number * UNITS[unit]
    if not math.isfinite(seconds):
        problems.append(Problem(where, f"{_FORMS}, got {value!r}"))
        return None
    seconds = float(round(seconds))  # whole seconds: 1.1h is 3960 s, not 3960.0000000000005
    if seconds < MINIMUM:
        problems.append(Problem(where, f"retention must be at least 1h, got {value!r}"))
        return None
    return seconds


def _split(value: object) -> tuple[float | None, str]:
    """``'1.5d'`` → (1.5, 'd'); a plain number → (n, ''); anything else → (None, '')."""
    if isinstance(value, bool):
        return None, ""
    if isinstance(value, int | float):
        return (float(value), "") if math.isfinite(value) else (None, "")
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        return None, ""
    number = float(m.group(1))
    return (number, m.group(2)) if math.isfinite(number) else (None, "")


def format_duration(seconds: float | None) -> str:
    """``2592000`` → ``'30d'``, ``43200`` → ``'12h'``, ``5400`` → ``'90m'``, ``45`` → ``'45s'``.

    The largest of d, h, m that divides evenly; weeks show as days (``2w`` → ``14d``); None is ``forever``."""
    if seconds is None:
        return FOREVER
    for unit in ("d", "h", "m"):
        size = UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Unix times before which records go, computed once per prune.

    A record whose time (an event's ``received_at``, a rejection's …) is strictly before its source's cutoff
    is pruned; None means keep. ``per_source`` holds only the sources whose retention differs from the
    default; every other source name, including ones no longer in routes.yaml, uses ``default``.
    """

    default: float | None
    per_source: Mapping[str, float | None]

    def for_source(self, source: str) -> float | None:
        if source in self.per_source:
            return self.per_source[source]
        return self.default


def _effective(config: Config) -> dict[str, float | None]:
    """Each configured source's retention after inheriting the top-level default."""
    return {name: s.retention if s.retention_set else config.retention for name, s in config.sources.items()}


def cutoffs(config: Config, now: float) -> Cutoffs:
    """The cutoff for every source at ``now``."""

    def at(seconds: float | None) -> float | None:
        return None if seconds is None else now - seconds

    per_source = {name: at(kept) for name, kept in _effective(config).items() if kept != config.retention}
    return Cutoffs(at(config.retention), per_source)


def describe(config: Config) -> list[str]:
    """One line per configured source and one for the rest, for ``gateway prune --dry-run``:
    ``github: 7d``, ``acme: 30d (default)``, ``stripe: forever``, ``(other sources): 30d``."""
    lines = [
        f"{name}: {format_duration(kept)}" + ("" if config.sources[name].retention_set else " (default)")
        for name, kept in _effective(config).items()
    ]
    lines.append(f"(other sources): {format_duration(config.retention)}")
    return lines


def prunes(config: Config) -> bool:
    """Whether routes.yaml sets any retention, so that a prune can remove anything."""
    return config.retention is not None or any(s.retention is not None for s in config.sources.values())

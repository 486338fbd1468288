"""How long stored records are kept: ``retention:`` values in routes.yaml, read into a frozen Retention.

Pure: no I/O, no clock. What a prune does with it (cutoff times, the dry-run description) is
gateway/records/prune.py's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.durations import UNITS, split
from gateway.errors import Problem

MINIMUM = 3600.0  # shorter is almost surely a mistake (5m written for 5 months?)
FOREVER = "forever"
_FORMS = "expected a duration like 30d, 12h or 1.5d (units s, m, h, d, w), or forever (never prune)"


@dataclass(frozen=True, slots=True)
class Retention:
    """Seconds to keep records (None: forever): ``default`` for every source that sets none (and for sources
    no longer in routes.yaml), ``per_source`` for each source that sets its own ``retention:``. ``sources``
    names every configured source, in file order."""

    default: float | None = None
    per_source: Mapping[str, float | None] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def of(self, source: str) -> float | None:
        """How long ``source``'s records are kept."""
        return self.per_source.get(source, self.default)

    @property
    def prunes(self) -> bool:
        """Whether anything is ever removed: some retention is not forever."""
        return self.default is not None or any(kept is not None for kept in self.per_source.values())


def parse_retention(value: object, where: str, problems: list[Problem]) -> float | None:
    """Seconds to keep records, or None for ``forever`` / null; a bad value appends a Problem at ``where``
    (and gives None, so one typo never prunes anything)."""
    if value is None or value == FOREVER:
        return None
    number, unit = split(value)
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

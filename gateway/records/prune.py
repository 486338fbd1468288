"""Prune policy over a routes file's Retention: the cutoff times one prune uses, and the lines
`gateway prune --dry-run` prints. Pure: no I/O, no clock (``now`` comes in). The prune itself is the store's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.durations import format_duration
from gateway.routes.retention import FOREVER, Retention


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


def cutoffs(retention: Retention, now: float) -> Cutoffs:
    """The cutoff for every source at ``now``."""

    def at(seconds: float | None) -> float | None:
        return None if seconds is None else now - seconds

    per_source = {name: at(kept) for name, kept in retention.per_source.items() if kept != retention.default}
    return Cutoffs(at(retention.default), per_source)


def kept(seconds: float | None) -> str:
    """``30d``, ``12h``, … or ``forever``."""
    return FOREVER if seconds is None else format_duration(seconds)


def describe(retention: Retention) -> list[str]:
    """One line per configured source and one for the rest, for ``gateway prune --dry-run``:
    ``github: 7d``, ``acme: 30d (default)``, ``stripe: forever``, ``(other sources): 30d``."""
    lines = [
        f"{name}: {kept(retention.of(name))}" + ("" if name in retention.per_source else " (default)")
        for name in retention.sources
    ]
    lines.append(f"(other sources): {kept(retention.default)}")
    return lines

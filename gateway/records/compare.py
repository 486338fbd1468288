"""Stored events against the current routes.yaml: which routes they matched on arrival, which they would match
now, and the text and JSON that `gateway routes test` shows before a deploy. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from gateway.model import Event, Run
from gateway.records.view import iso, render_table
from gateway.routes.ingest import current_type, plan_runs, stored_view
from gateway.routes.load import Config
from gateway.routes.match import Route

NEW_ROUTE = "new route"
REMOVED = "removed from routes.yaml"


@dataclass(frozen=True, slots=True)
class EventChange:
    """One stored event whose routes differ between its arrival and the current routes.yaml."""

    event_id: str
    source: str
    event_type: str | None  # as stored
    received_at: float
    gained: tuple[str, ...]  # route ids it would match now but did not then
    lost: tuple[str, ...]  # route ids it matched then but would not now
    input_changed: tuple[str, ...]  # route ids matched both times whose mapped input differs


@dataclass(frozen=True, slots=True)
class RouteLine:
    """One route's counts over the compared events (``then``: routed on arrival, ``now``: would be)."""

    route_id: str
    task_id: str  # the current task; for a removed route, the task(s) it ran then
    then: int
    now: int
    gained: int
    lost: int
    input_changed: int
    note: str  # "" | "new route" | "removed from routes.yaml" | "task changed: a → b"


@dataclass(frozen=True, slots=True)
class Comparison:
    """The outcome of a :class:`Tally`. ``changes`` holds the first ``keep`` changed events; ``changed``
    counts all of them. ``sources_missing`` is (source, events) for sources no longer configured."""

    events: int
    changed: int
    lines: tuple[RouteLine, ...]
    changes: tuple[EventChange, ...]
    sources_missing: tuple[tuple[str, int], ...]


def _arrivals(runs: Sequence[Run]) -> dict[str, Run]:
    """route id → the run it made when the event arrived (runs not made by a route, and reruns, skipped)."""
    found: dict[str, Run] = {}
    for run in runs:
        if run.route_id is not None and run.rerun_of is None:
            found.setdefault(run.route_id, run)
    return found


def _planned(config: Config, event: Event) -> dict[str, Run]:
    """route id → the run the event would get now (none when its source is no longer configured)."""
    if event.source not in config.sources:
        return {}
    view = stored_view(event, current_type(config, event))
    return {r.route_id: r for r in plan_runs(config, view, view, 0.0) if r.route_id is not None}


def _same_input(a: Any, b: Any) -> bool:
    """Equal as JSON: key order does not count, but ``true`` differs from ``1`` and ``1`` from ``1.0``."""
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (TypeError, ValueError):
        return bool(a == b)


def _change(event: Event, then: Mapping[str, Run], now: Mapping[str, Run]) -> EventChange | None:
    gained = tuple(r for r in now if r not in then)
    lost = tuple(r for r in then if r not in now)
    moved = tuple(r for r in now if r in then and not _same_input(then[r].input, now[r].input))
    if not (gained or lost or moved):
        return None
    return EventChange(event.id, event.source, event.event_type, event.received_at, gained, lost, moved)


def compare_event(config: Config, event: Event, arrival_runs: Sequence[Run]) -> EventChange | None:
    """How routing ``event`` under ``config`` differs from its ``arrival_runs``; None when nothing does."""
    return _change(event, _arrivals(arrival_runs), _planned(config, event))


class Tally:
    """Counts per route over a stream of stored events; keeps the first ``keep`` changed events."""

    __slots__ = ("_changed", "_changes", "_counts", "_events", "_keep", "_missing", "_routes", "_tasks")

    def __init__(self, keep: int = 20) -> None:
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        self._keep = keep
        self._events = 0
        self._changed = 0
        self._changes: list[EventChange] = []
        self._routes: tuple[Route, ...] = ()
        self._missing: Counter[str] = Counter()
        # One counter per RouteLine column: "then", "now", "gained", "lost", "input_changed".
        self._counts: dict[str, Counter[str]] = {
            k: Counter() for k in ("then", "now", "gained", "lost", "input_changed")
        }
        self._tasks: dict[str, dict[str, None]] = {}  # route id → the tasks it ran then (an ordered set)

    def add(self, config: Config, event: Event, arrival_runs: Sequence[Run]) -> None:
        self._routes = config.routes
        self._events += 1
        if event.source not in config.sources:
            self._missing[event.source] += 1
        then, now = _arrivals(arrival_runs), _planned(config, event)
        self._counts["then"].update(then.keys())
        self._counts["now"].update(now.keys())
        for route_id, run in then.items():
            self._tasks.setdefault(route_id, {})[run.task_id] = None
        change = _change(event, then, now)
        if change is None:
            return
        self._changed += 1
        self._counts["gained"].update(change.gained)
        self._counts["lost"].update(change.lost)
        self._counts["input_changed"].update(change.input_changed)
        if len(self._changes) < self._keep:
            self._changes.append(change)

    def _line(self, route_id: str, task_id: str, note: str) -> RouteLine:
        c = self._counts
        return RouteLine(
            route_id,
            task_id,
            c["then"][route_id],
            c["now"][route_id],
            c["gained"][route_id],
            c["lost"][route_id],
            c["input_changed"][route_id],
            note,
        )

    def report(self) -> Comparison:
        lines = []
        for route in self._routes:
            old = [t for t in self._tasks.get(route.id, ()) if t != route.task]
            if old:
                note = f"task changed: {', '.join(old)} → {route.task}"
            elif not self._counts["then"][route.id] and self._counts["now"][route.id]:
                note = NEW_ROUTE  # no compared event was routed to it then, some would be now
            else:
                note = ""
            lines.append(self._line(route.id, route.task, note))
        current = {route.id for route in self._routes}
        for route_id in sorted(set(self._tasks) - current):
            lines.append(self._line(route_id, ", ".join(self._tasks[route_id]), REMOVED))
        return Comparison(
            self._events,
            self._changed,
            tuple(lines),
            tuple(self._changes),
            tuple(sorted(self._missing.items())),
        )


def _n(count: int, noun: str | None = None) -> str:
    """``1,234`` or, with a noun, ``1 event`` / ``1,234 events``."""
    text = f"{count:,}"
    return text if noun is None else f"{text} {noun}{'' if count == 1 else 's'}"


def _routes_table(lines: Sequence[RouteLine]) -> str:
    columns = ("route", "task", "then", "now", "gained", "lost", "input changed", "note")
    rows = [
        {
            "route": line.route_id,
            "task": line.task_id,
            "then": _n(line.then),
            "now": _n(line.now),
            "gained": f"+{line.gained:,}" if line.gained else "",
            "lost": f"-{line.lost:,}" if line.lost else "",
            "input changed": _n(line.input_changed) if line.input_changed else "",
            "note": line.note,
        }
        for line in lines
    ]
    # render_table left-justifies; numbers read better right-aligned, so pad them to the column width first.
    for column in ("then", "now", "gained", "lost", "input changed"):
        width = max(len(column), *(len(row[column]) for row in rows))
        for row in rows:
            row[column] = row[column].rjust(width)
    return render_table(rows, columns)


def _changes_table(changes: Sequence[EventChange]) -> str:
    rows = [
        {
            "event": c.event_id,
            "source": c.source,
            "type": c.event_type,
            "received": iso(c.received_at),
            "gained": ", ".join(c.gained),
            "lost": ", ".join(c.lost),
            "input changed": ", ".join(c.input_changed),
        }
        for c in changes
    ]
    return render_table(rows, ("event", "source", "type", "received", "gained", "lost", "input changed"))


def _gone(source: str, events: int) -> str:
    return f"source {source!r} is not in routes.yaml any more: its {_n(events, 'event')} would match nothing"


def _verdict(report: Comparison) -> str:
    if not report.events:
        return "no stored events to compare"
    swapped = sum(1 for line in report.lines if line.note.startswith("task changed"))
    runs = "route runs" if swapped == 1 else "routes run"
    tail = f"; {swapped} {runs} another task now (see NOTE)" if swapped else ""
    if report.changed:
        total = _n(report.events, "event")
        return f"{_n(report.changed)} of {total} would be routed differently{tail}"
    if swapped:
        return f"no event would match other routes{tail}"
    if report.events == 1:
        return "no changes: the current routes.yaml routes this 1 event exactly as it was routed"
    n = _n(report.events)
    return f"no changes: the current routes.yaml routes these {n} events exactly as they were routed"


def render(report: Comparison, *, header: str) -> str:
    """What `gateway routes test` prints: ``header``, the per-route table, the changed events (the first
    ``keep``), sources no longer configured, and a one-line verdict."""
    blocks = [header] if header else []
    if report.lines:
        blocks.append(_routes_table(report.lines))
    if report.changes:
        shown = len(report.changes)
        more = f" (the first {_n(shown)} of {_n(report.changed)})" if report.changed > shown else ""
        blocks.append(f"events routed differently{more}:\n{_changes_table(report.changes)}")
    if report.sources_missing:
        blocks.append("\n".join(_gone(name, count) for name, count in report.sources_missing))
    blocks.append(_verdict(report))
    return "\n\n".join(blocks)


def as_json(report: Comparison) -> dict[str, Any]:
    """The report as JSON-compatible data, for ``--json`` and the admin API."""
    return {
        "events": report.events,
        "changed": report.changed,
        "routes": [asdict(line) for line in report.lines],
        "changes": [
            {
                "event_id": c.event_id,
                "source": c.source,
                "event_type": c.event_type,
                "received_at": iso(c.received_at),
                "gained": list(c.gained),
                "lost": list(c.lost),
                "input_changed": list(c.input_changed),
            }
            for c in report.changes
        ],
        "sources_missing": dict(report.sources_missing),
    }

"""What people do with stored records — find, inspect, replay, rerun, trigger, bulk jobs, routes test, prune —
in one place that the CLI and the admin API both call. Does I/O through the store; the clock is injected.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import Conflict, Invalid, NotFound
from gateway.model import (
    ROUTED,
    Attempt,
    Event,
    EventFilter,
    Headers,
    Pruned,
    Rejection,
    Run,
    RunFilter,
    new_id,
)
from gateway.records.bulk import Bulk
from gateway.records.compare import Comparison, Tally
from gateway.records.page import Page, decode_cursor, decode_rejection_cursor, limited, paged
from gateway.records.prune import cutoffs
from gateway.records.recovery import Recoverer
from gateway.records.replays import Replayer
from gateway.records.stats import Stats
from gateway.routes.ingest import new_run, readmit, redact
from gateway.routes.load import Config
from gateway.routes.payload import parse_payload
from gateway.signatures.schemes import PRESETS
from gateway.store.interface import Store
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.traceparent import stamp

API_SOURCE = "@api"  # the source of events made by POST /api/tasks/{id}/trigger (not a valid source name)
PRESET_SIGNATURES = frozenset(h.lower() for scheme in PRESETS.values() for h in scheme.signature_headers)


@dataclass(frozen=True, slots=True)
class EventDetail:
    event: Event
    runs: list[Run]
    replays: list[tuple[str, float, str]]  # (event id, received_at, status) of the events replaying it


@dataclass(frozen=True, slots=True)
class RunDetail:
    run: Run
    attempts: list[Attempt]
    reruns: list[tuple[str, float, str]]  # (run id, created_at, status) of the runs rerunning it


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a replay, a rerun or a trigger recorded."""

    event_id: str
    runs: tuple[Run, ...]
    duplicate: bool = False  # a trigger whose Idempotency-Key was used before: the original's runs


class Service:
    """The operations on stored records; bulk jobs are its ``bulk`` (gateway/records/bulk.py), rejected
    deliveries tried again its ``recovery`` (gateway/records/recovery.py), the dashboard's summaries its
    ``stats`` (gateway/records/stats.py). ``config`` is
    needed only by what routes or runs tasks (replay, rerun, trigger, bulk jobs, routes test, prune); reads
    work without it."""

    def __init__(
        self,
        store: Store,
        config: Config | None = None,
        *,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry | None = None,
    ):
        self.store = store
        self.clock = clock
        self.telemetry = telemetry or Telemetry.off()
        self._replayer = Replayer(config, self.telemetry)
        self.bulk = Bulk(store, self._replayer, clock)
        self.recovery = Recoverer(store, self._replayer, clock)
        self.stats = Stats(store)

    @property
    def config(self) -> Config:
        """routes.yaml; Invalid when the caller loaded none."""
        return self._replayer.config

    def signature_headers(self) -> frozenset[str]:
        """The headers (lowercased) that carry a signature, of every preset and configured source: an
        event's are shown without their value to API and dashboard viewers. One over the body alone
        (GitHub's signs no timestamp) lets whoever copies it post that body again, as new and authentic,
        under a fresh delivery id: a way around the read scope. The event was verified when it came."""
        try:
            sources = self.config.sources.values()
        except Invalid:
            return PRESET_SIGNATURES
        return PRESET_SIGNATURES.union(h.lower() for s in sources for h in s.scheme.signature_headers)

    # -- finding and inspecting -----------------------------------------------------------------------

    async def events(self, f: EventFilter, *, cursor: str | None = None, limit: int = 50) -> Page[Event]:
        before = decode_cursor(cursor) if cursor else None
        items = await self.store.reads.events_page(f, before=before, limit=limited(limit) + 1)
        return paged(items, limit, lambda e: (e.received_at, e.id))

    async def event(self, event_id: str) -> EventDetail:
        event = await self.store.reads.get_event(event_id)
        if event is None:
            raise NotFound(f"no event with id {event_id!r}")
        runs = await self.store.reads.runs_for_event(event_id)
        return EventDetail(event, runs, await self.store.reads.replays_of(event_id))

    async def runs_of(self, event_ids: list[str]) -> dict[str, list[Run]]:
        """The runs each of ``event_ids`` created (an events listing's run column), by event id."""
        return await self.store.reads.runs_for_events(event_ids)

    async def runs(self, f: RunFilter, *, cursor: str | None = None, limit: int = 50) -> Page[Run]:
        before = decode_cursor(cursor) if cursor else None
        items = await self.store.reads.runs_page(f, before=before, limit=limited(limit) + 1)
        return paged(items, limit, lambda r: (r.created_at, r.id))

    async def run(self, run_id: str) -> RunDetail:
        run = await self.store.reads.get_run(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        attempts = await self.store.reads.attempts_for_run(run_id)
        return RunDetail(run, attempts, await self.store.reads.reruns_of(run_id))

    async def rejections(
        self,
        *,
        source: str | None = None,
        reason: str | None = None,
        since: float | None = None,
        until: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Rejection]:
        before = decode_rejection_cursor(cursor) if cursor else None
        items = await self.store.reads.list_rejections(
            source=source, reason=reason, since=since, until=until, before=before, limit=limited(limit) + 1
        )
        return paged(items, limit, lambda r: (r.received_at, str(r.id)))

    async def counts(self, *, since: float | None = None) -> dict[str, Any]:
        return await self.store.reads.counts(since=since)

    # -- replaying, rerunning, triggering -------------------------------------------------------------

    async def replay(self, event_id: str) -> Outcome:
        """Route a stored event again through the current routes.yaml: a new event (``replay_of`` the
        original) with a new run per route that matches it now. Unrouted events can be replayed too."""
        event = await self.store.reads.get_event(event_id)
        if event is None:
            raise NotFound(f"no event with id {event_id!r}")
        replay, runs = self._replayer.replay(event, self.clock())
        await self.store.jobs.add([replay], runs)
        return Outcome(replay.id, runs)

    async def replay_preview(self, event_id: str) -> tuple[Run, ...]:
        """The runs :meth:`replay` would create now (one per route of the current routes.yaml that matches
        the stored event), recording nothing: what a confirmation shows before the replay."""
        event = await self.store.reads.get_event(event_id)
        if event is None:
            raise NotFound(f"no event with id {event_id!r}")
        return readmit(self.config, event, self.clock()).runs

    async def rerun(self, run_id: str, *, payload: Any = None, edited: bool = False) -> Run:
        """Run a stored run's task again, with the original input or (``edited``) with ``payload``: a new
        run on the same event, ``rerun_of`` the original, with the task's current options. A rerun with
        the original input keeps the original's idempotency key; an edited one gets its own."""
        run = await self.store.reads.get_run(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        rerun = self._replayer.rerun(run, payload if edited else run.input, edited=edited, now=self.clock())
        await self.store.jobs.add([], [rerun])
        return rerun

    async def cancel(self, run_id: str) -> Run:
        """Cancel a queued or retrying run. Raises NotFound, or Conflict for a run in another status."""
        canceled = await self.store.runs.cancel(run_id, now=self.clock())
        if canceled is None:
            current = await self.store.reads.get_run(run_id)
            status = current.status if current else "gone"
            raise Conflict(f"run {run_id} is {status}: only queued or retrying runs can be canceled")
        self.telemetry.run_ended(canceled, canceled.status, self.clock(), canceled.attempts)
        return canceled

    async def trigger(
        self,
        task_id: str,
        body: bytes,
        headers: Headers,
        *,
        idempotency_key: str | None,
        requested_by: str,
        remote_addr: str | None = None,
    ) -> Outcome:
        """Start ``task_id`` without a webhook. ``body`` is ``{"payload": ...}``; it is stored as an event of
        source ``@api`` so the request shows up in history like any delivery. The same Idempotency-Key for
        the same task answers the original event and runs (while that event is retained)."""
        config = self.config
        if task_id not in config.tasks:
            raise NotFound(f"no task {task_id!r} (tasks: {', '.join(sorted(config.tasks)) or 'none'})")
        payload = _trigger_payload(body)
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 256:
            raise Invalid("Idempotency-Key: expected 1 to 256 characters")
        now = self.clock()
        event_id = new_id("evt", now)
        run = new_run(config, task_id, payload, event_id, now, idempotency_key=idempotency_key)
        event = Event(
            id=event_id,
            source=API_SOURCE,
            event_type=f"trigger:{task_id}",
            dedupe_key=None if idempotency_key is None else f"{task_id}:{idempotency_key}",
            status=ROUTED,
            received_at=now,
            method="POST",
            url=f"/api/tasks/{task_id}/trigger",
            headers=redact(headers),
            query=(),
            body=body,
            payload=parse_payload("application/json", body),
            verification=f"token:{requested_by}",
            remote_addr=remote_addr,
        )
        attributes = {"gateway.task": task_id, "gateway.event.id": event_id, "gateway.run.id": run.id}
        caller = headers.get("traceparent")  # an application's trigger joins its own trace
        with self.telemetry.tracing.linked(f"trigger {task_id}", None, attributes, parent=caller) as span:
            event, runs = stamp(event, [run], span.get_span_context())
            recorded = await self.store.record(event, runs)
        if not recorded.duplicate:
            return Outcome(event.id, runs)
        original = await self.store.reads.runs_for_event(recorded.event_id)
        return Outcome(recorded.event_id, tuple(original), duplicate=True)

    # -- routes test and retention --------------------------------------------------------------------

    async def routes_test(self, *, since: float | None, keep: int = 20, page: int = 500) -> Comparison:
        """Stored events (since ``since``) compared with how the current routes.yaml would route them."""
        tally = Tally(keep=keep)
        f = EventFilter(since=since)
        upto = self.clock()
        after: tuple[float, str] | None = None
        while True:
            events = await self.store.reads.events_after(f, after=after, upto=upto, limit=page)
            if not events:
                break
            runs = await self.store.reads.runs_for_events([e.id for e in events])
            for event in events:
                if event.source != API_SOURCE:
                    tally.add(self.config, event, runs.get(event.id, []))
            after = (events[-1].received_at, events[-1].id)
        return tally.report()

    async def prune(self, *, dry_run: bool = False, batch: int = 500, pause: float = 0.01) -> Pruned:
        """Remove what is older than its retention, ``batch`` events per transaction, ``pause`` seconds
        apart so ingest's own commits go between them; with ``dry_run``, count what would go."""
        cut = cutoffs(self.config.retention, self.clock())
        per_source = dict(cut.per_source)
        if dry_run:
            return await self.store.jobs.prunable(cut.default, per_source)
        total = Pruned()
        while True:
            pruned = await self.store.jobs.prune(cut.default, per_source, limit=batch)
            total = total + pruned
            if pruned.events < batch and pruned.rejections < batch:
                return total
            await asyncio.sleep(pause)


def _trigger_payload(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise Invalid('body: expected JSON like {"payload": {...}}') from None
    if not isinstance(data, dict) or set(data) - {"payload"}:
        raise Invalid('body: expected a JSON object with one key, "payload" (the task\'s input)')
    return data.get("payload")

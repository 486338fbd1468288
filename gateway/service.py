"""What people do with stored records — find, inspect, replay, rerun, trigger, bulk jobs, routes test, prune —
in one place that the CLI and the admin API both call. Does I/O through the store; the clock is injected.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import SpanContext

from gateway.compare import Report, Tally
from gateway.config import Config
from gateway.errors import Invalid, NotFound
from gateway.ingest import new_run, parse_payload, readmit, redact
from gateway.model import (
    REPLAY,
    RERUN,
    Attempt,
    Event,
    EventFilter,
    Headers,
    Job,
    Pruned,
    Rejection,
    Run,
    RunFilter,
    new_id,
)
from gateway.page import Page, decode_cursor, limited, paged
from gateway.retention import cutoffs
from gateway.store import Store
from gateway.telemetry import Telemetry
from gateway.tracing import run_traceparent, stamp, stamp_run

API_SOURCE = "@api"  # the source of events made by POST /api/tasks/{id}/trigger (not a valid source name)
SAMPLE = 5  # ids a dry run shows


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


@dataclass(frozen=True, slots=True)
class Preview:
    """What a bulk job would take: how many items, and the first few ids (oldest first)."""

    kind: str
    count: int
    sample: list[str]


class Service:
    """The operations on stored records. ``config`` is needed only by what routes or runs tasks (replay,
    rerun, trigger, bulk jobs, routes test, prune); reads work without it."""

    def __init__(
        self,
        store: Store,
        config: Config | None = None,
        *,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry | None = None,
    ):
        self.store = store
        self._config = config
        self.clock = clock
        self.telemetry = telemetry or Telemetry.off()

    @property
    def config(self) -> Config:
        if self._config is None:
            raise Invalid("this needs routes.yaml: pass --routes (or set GATEWAY_ROUTES)")
        return self._config

    # -- finding and inspecting -----------------------------------------------------------------------

    async def events(self, f: EventFilter, *, cursor: str | None = None, limit: int = 50) -> Page[Event]:
        before = decode_cursor(cursor) if cursor else None
        items = await self.store.events_page(f, before=before, limit=limited(limit) + 1)
        return paged(items, limit, lambda e: (e.received_at, e.id))

    async def event(self, event_id: str) -> EventDetail:
        event = await self.store.get_event(event_id)
        if event is None:
            raise NotFound(f"no event with id {event_id!r}")
        runs = await self.store.runs_for_event(event_id)
        return EventDetail(event, runs, await self.store.replays_of(event_id))

    async def runs(self, f: RunFilter, *, cursor: str | None = None, limit: int = 50) -> Page[Run]:
        before = decode_cursor(cursor) if cursor else None
        items = await self.store.runs_page(f, before=before, limit=limited(limit) + 1)
        return paged(items, limit, lambda r: (r.created_at, r.id))

    async def run(self, run_id: str) -> RunDetail:
        run = await self.store.get_run(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        attempts = await self.store.attempts_for_run(run_id)
        return RunDetail(run, attempts, await self.store.reruns_of(run_id))

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
        before = None
        if cursor:
            _, raw_id = decode_cursor(cursor)
            if not raw_id.isdigit():
                raise Invalid("cursor: not a cursor of the rejections listing")
            before = int(raw_id)
        items = await self.store.list_rejections(
            source=source, reason=reason, since=since, until=until, before=before, limit=limited(limit) + 1
        )
        return paged(items, limit, lambda r: (r.received_at, str(r.id)))

    async def counts(self, *, since: float | None = None) -> dict[str, Any]:
        return await self.store.counts(since=since)

    async def jobs(
        self, *, status: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page[Job]:
        before = decode_cursor(cursor) if cursor else None
        items = await self.store.list_jobs(status=status, before=before, limit=limited(limit) + 1)
        return paged(items, limit, lambda j: (j.created_at, j.id))

    async def job(self, job_id: str) -> Job:
        job = await self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        return job

    # -- replaying, rerunning, triggering -------------------------------------------------------------

    async def replay(self, event_id: str) -> Outcome:
        """Route a stored event again through the current routes.yaml: a new event (``replay_of`` the
        original) with a new run per route that matches it now. Unrouted events can be replayed too."""
        event = await self.store.get_event(event_id)
        if event is None:
            raise NotFound(f"no event with id {event_id!r}")
        replay, runs = self._readmit(event, self.clock())
        await self.store.add([replay], runs)
        return Outcome(replay.id, runs)

    def _readmit(self, event: Event, now: float) -> tuple[Event, tuple[Run, ...]]:
        """``readmit`` in a span of its own: a new trace, linked to the original event's."""
        attributes = {"gateway.replay_of": event.id, "gateway.source": event.source}
        with self.telemetry.tracing.linked("replay", event.traceparent, attributes) as span:
            admission = readmit(self.config, event, now)
            span.set_attributes({"gateway.event.id": admission.event.id, "gateway.runs": len(admission.runs)})
            return stamp(admission.event, admission.runs, span.get_span_context())

    async def rerun(self, run_id: str, *, payload: Any = None, edited: bool = False) -> Run:
        """Run a stored run's task again, with the original input or (``edited``) with ``payload``: a new
        run on the same event, ``rerun_of`` the original, with the task's current options. A rerun with
        the original input keeps the original's idempotency key; an edited one gets its own."""
        run = await self.store.get_run(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        rerun = self._rerun(run, payload if edited else run.input, edited=edited, now=self.clock())
        await self.store.add([], [rerun])
        return rerun

    def _rerun(self, run: Run, payload: Any, *, edited: bool, now: float) -> Run:
        config = self.config
        route = next((r for r in config.routes if r.id == run.route_id and r.task == run.task_id), None)
        key = None if edited else (run.idempotency_key or run.id)
        attributes = {"gateway.rerun_of": run.id, "gateway.task": run.task_id, "gateway.edited": edited}
        with self.telemetry.tracing.linked("rerun", run_traceparent(run), attributes) as span:
            rerun = new_run(
                config,
                run.task_id,
                payload,
                run.event_id,
                now,
                route=route,
                rerun_of=run.id,
                idempotency_key=key,
            )
            span.set_attribute("gateway.run.id", rerun.id)
            return stamp_run(rerun, span.get_span_context())

    async def cancel(self, run_id: str) -> Run:
        """Cancel a queued or retrying run. Raises NotFound, or Invalid for a run in another status."""
        canceled = await self.store.cancel(run_id, now=self.clock())
        if canceled is None:
            current = await self.store.get_run(run_id)
            status = current.status if current else "gone"
            raise Invalid(f"run {run_id} is {status}: only queued or retrying runs can be canceled")
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
        attributes = {"gateway.task": task_id, "gateway.event.id": event_id, "gateway.run.id": run.id}
        with self.telemetry.tracing.linked(
            f"trigger {task_id}", None, attributes, parent=headers.get("traceparent")
        ) as span:
            return await self._record_trigger(
                self._trigger_event(
                    event_id, task_id, body, headers, idempotency_key, now, requested_by, remote_addr
                ),
                run,
                span.get_span_context(),
            )

    def _trigger_event(
        self,
        event_id: str,
        task_id: str,
        body: bytes,
        headers: Headers,
        idempotency_key: str | None,
        now: float,
        requested_by: str,
        remote_addr: str | None,
    ) -> Event:
        return Event(
            id=event_id,
            source=API_SOURCE,
            event_type=f"trigger:{task_id}",
            dedupe_key=None if idempotency_key is None else f"{task_id}:{idempotency_key}",
            status="routed",
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

    async def _record_trigger(self, event: Event, run: Run, context: SpanContext) -> Outcome:
        event, runs = stamp(event, [run], context)
        recorded = await self.store.record(event, runs)
        if not recorded.duplicate:
            return Outcome(event.id, runs)
        original = await self.store.runs_for_event(recorded.event_id)
        return Outcome(recorded.event_id, tuple(original), duplicate=True)

    # -- bulk jobs ------------------------------------------------------------------------------------

    async def preview(self, kind: str, f: EventFilter | RunFilter) -> Preview:
        """How many items a bulk job of ``kind`` over ``f`` would take now, and the first few."""
        return await self._preview(kind, f, self.clock())

    async def _preview(self, kind: str, f: EventFilter | RunFilter, now: float) -> Preview:
        if kind == REPLAY and isinstance(f, EventFilter):
            count = await self.store.count_events(f, upto=now)
            events = await self.store.events_after(f, after=None, upto=now, limit=SAMPLE)
            return Preview(kind, count, [e.id for e in events])
        if kind == RERUN and isinstance(f, RunFilter):
            count = await self.store.count_runs(f, upto=now)
            runs = await self.store.runs_after(f, after=None, upto=now, limit=SAMPLE)
            return Preview(kind, count, [r.id for r in runs])
        raise Invalid(
            f"kind: expected replay (with an event filter) or rerun (with a run filter), got {kind!r}"
        )

    async def start_job(
        self,
        kind: str,
        f: EventFilter | RunFilter,
        *,
        requested_by: str,
        owner: str | None = None,
        lease: float = 30.0,
    ) -> Job:
        """Record a bulk job over what ``f`` selects now. With ``owner`` the caller works it at once (the
        CLI); without, the gateway's bulk worker takes it."""
        self.config  # noqa: B018  # fail now, not in the worker, when there is no config
        now = self.clock()  # one instant: the job takes exactly what its total counts
        preview = await self._preview(kind, f, now)
        job = Job(
            id=new_id("job", now),
            kind=kind,
            filter=f,
            status="running",
            total=preview.count,
            done=0,
            created=0,
            upto=now,
            created_at=now,
            updated_at=now,
            requested_by=requested_by,
        )
        await self.store.create_job(job, owner=owner, lease_until=None if owner is None else now + lease)
        return job

    async def cancel_job(self, job_id: str) -> Job:
        if not await self.store.end_job(job_id, status="canceled", now=self.clock()):
            job = await self.job(job_id)  # read after: the status that kept it from being canceled
            raise Invalid(f"job {job_id} is {job.status}: only running jobs can be canceled")
        return await self.job(job_id)

    async def work_chunk(self, job: Job, owner: str, *, size: int = 100, lease: float = 30.0) -> Job:
        """Process the next ``size`` items of a job this ``owner`` holds, committing them with the job's
        progress in one transaction. Returns the job as it is afterwards (``completed`` after the last)."""
        # The chunk's records are stamped after ``upto`` even when the clock has not moved (or went back):
        # a job must never select its own output.
        at = max(self.clock(), math.nextafter(job.upto, math.inf))
        if job.kind == REPLAY and isinstance(job.filter, EventFilter):
            events = await self.store.events_after(job.filter, after=job.cursor, upto=job.upto, limit=size)
            new_events, new_runs, last = self._replays(events, at)
        elif job.kind == RERUN and isinstance(job.filter, RunFilter):
            runs = await self.store.runs_after(job.filter, after=job.cursor, upto=job.upto, limit=size)
            new_events, new_runs, last = [], self._reruns(runs, at), [(r.created_at, r.id) for r in runs]
        else:
            raise Invalid(f"job {job.id} has an unknown kind {job.kind!r}")
        finished = len(last) < size
        cursor = last[-1] if last else (job.cursor or (job.upto, ""))
        await self.store.write_chunk(
            job,
            owner,
            new_events,
            new_runs,
            items=len(last),
            cursor=cursor,
            finished=finished,
            now=self.clock(),
            lease=lease,
        )
        return await self.job(job.id)

    def _replays(
        self, events: Sequence[Event], now: float
    ) -> tuple[list[Event], list[Run], list[tuple[float, str]]]:
        new_events: list[Event] = []
        new_runs: list[Run] = []
        for event in events:
            if event.source not in self.config.sources:  # a source removed since: nothing can match it
                continue
            replay, runs = self._readmit(event, now)
            new_events.append(replay)
            new_runs.extend(runs)
        return new_events, new_runs, [(e.received_at, e.id) for e in events]

    def _reruns(self, runs: Sequence[Run], now: float) -> list[Run]:
        return [
            self._rerun(run, run.input, edited=False, now=now)
            for run in runs
            if run.task_id in self.config.tasks  # a task removed since cannot run
        ]

    # -- routes test and retention --------------------------------------------------------------------

    async def routes_test(self, *, since: float | None, keep: int = 20, page: int = 500) -> Report:
        """Stored events (since ``since``) compared with how the current routes.yaml would route them."""
        tally = Tally(keep=keep)
        f = EventFilter(since=since)
        upto = self.clock()
        after: tuple[float, str] | None = None
        while True:
            events = await self.store.events_after(f, after=after, upto=upto, limit=page)
            if not events:
                break
            runs = await self.store.runs_for_events([e.id for e in events])
            for event in events:
                if event.source != API_SOURCE:
                    tally.add(self.config, event, runs.get(event.id, []))
            after = (events[-1].received_at, events[-1].id)
        return tally.report()

    async def prune(self, *, dry_run: bool = False, batch: int = 500, pause: float = 0.01) -> Pruned:
        """Remove what is older than its retention, ``batch`` events per transaction, ``pause`` seconds
        apart so ingest's own commits go between them; with ``dry_run``, count what would go."""
        cut = cutoffs(self.config, self.clock())
        per_source = dict(cut.per_source)
        if dry_run:
            return await self.store.prunable(cut.default, per_source)
        total = Pruned()
        while True:
            pruned = await self.store.prune(cut.default, per_source, limit=batch)
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

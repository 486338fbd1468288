"""Bulk jobs: replay or rerun everything a filter selects, chunk by chunk, each chunk committed with the job's
progress. ``Service.bulk``; gateway/records/worker.py works the jobs. Does I/O through the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from gateway.errors import Conflict, Invalid, NotFound
from gateway.model import (
    CANCELED,
    JOB_RUNNING,
    REPLAY,
    RERUN,
    Event,
    EventFilter,
    Job,
    Run,
    RunFilter,
    new_id,
)
from gateway.records.page import Page, decode_cursor, limited, paged
from gateway.records.replays import Replayer
from gateway.store.interface import Store

SAMPLE = 5  # ids a dry run shows


@dataclass(frozen=True, slots=True)
class Preview:
    """What a bulk job would take: how many items, and the first few ids (oldest first). ``left_out``: the
    replays a replay filter without ``include_replays`` leaves out (0 otherwise)."""

    kind: str
    count: int
    sample: list[str]
    left_out: int = 0


class Bulk:
    """Jobs over what a filter selects: preview, start, work a chunk, cancel; and the jobs as they stand."""

    def __init__(self, store: Store, replayer: Replayer, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self._replayer = replayer

    async def jobs(
        self, *, status: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page[Job]:
        """Jobs, newest first, a page at a time."""
        before = decode_cursor(cursor) if cursor else None
        items = await self.store.reads.list_jobs(status=status, before=before, limit=limited(limit) + 1)
        return paged(items, limit, lambda j: (j.created_at, j.id))

    async def job(self, job_id: str) -> Job:
        """One job as it is now; NotFound if there is none."""
        job = await self.store.reads.get_job(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        return job

    async def take(
        self, job_id: str, owner: str, *, from_dead: str | None = None, lease: float = 30.0
    ) -> Job:
        """Hold running job ``job_id`` for ``owner``, to work it (``gateway jobs JOB_ID --resume``); from a
        holder whose process is gone (``from_dead``) at once. Invalid, naming who holds it, when it cannot."""
        now = self.clock()
        taken = await self.store.jobs.take_job(
            owner=owner, now=now, lease=lease, job_id=job_id, from_dead=from_dead
        )
        if taken is None:
            current = await self.job(job_id)
            held = f", held by {current.owner} until its lease lapses" if current.owner else ""
            raise Invalid(f"job {job_id} is {current.status}{held}")
        return taken

    async def preview(self, kind: str, f: EventFilter | RunFilter) -> Preview:
        """How many items a bulk job of ``kind`` over ``f`` would take now, the first few, and how many
        replays it leaves out."""
        now = self.clock()
        preview = await self._preview(kind, f, now)
        if isinstance(f, EventFilter) and not f.include_replays:
            left_out = await self._left_out(f, now, preview.count)
            return replace(preview, left_out=left_out)
        return preview

    async def replays_left_out(self, job: Job) -> int:
        """How many replays a replay job's filter left out when it started (0 for one that takes them)."""
        if not isinstance(job.filter, EventFilter) or job.filter.include_replays:
            return 0
        return await self._left_out(job.filter, job.upto, job.total)

    async def _left_out(self, f: EventFilter, upto: float, taken: int) -> int:
        everything = await self.store.reads.count_events(replace(f, include_replays=True), upto=upto)
        return max(0, everything - taken)

    async def _preview(self, kind: str, f: EventFilter | RunFilter, now: float) -> Preview:
        if kind == REPLAY and isinstance(f, EventFilter):
            count = await self.store.reads.count_events(f, upto=now)
            events = await self.store.reads.events_after(f, after=None, upto=now, limit=SAMPLE)
            return Preview(kind, count, [e.id for e in events])
        if kind == RERUN and isinstance(f, RunFilter):
            count = await self.store.reads.count_runs(f, upto=now)
            runs = await self.store.reads.runs_after(f, after=None, upto=now, limit=SAMPLE)
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
        self._replayer.config  # noqa: B018  # fail now, not in the worker, when there is no config
        now = self.clock()  # one instant: the job takes exactly what its total counts
        preview = await self._preview(kind, f, now)
        job = Job(
            id=new_id("job", now),
            kind=kind,
            filter=f,
            status=JOB_RUNNING,
            total=preview.count,
            done=0,
            created=0,
            upto=now,
            created_at=now,
            updated_at=now,
            requested_by=requested_by,
        )
        await self.store.jobs.create_job(job, owner=owner, lease_until=None if owner is None else now + lease)
        return job

    async def cancel_job(self, job_id: str) -> Job:
        if not await self.store.jobs.end_job(job_id, status=CANCELED, now=self.clock()):
            job = await self.job(job_id)  # read after: the status that kept it from being canceled
            raise Conflict(f"job {job_id} is {job.status}: only running jobs can be canceled")
        return await self.job(job_id)

    async def work_chunk(self, job: Job, owner: str, *, size: int = 100, lease: float = 30.0) -> Job:
        """Process the next ``size`` items of a job this ``owner`` holds, committing them with the job's
        progress in one transaction. Returns the job as it is afterwards (``completed`` after the last)."""
        # The chunk's records are stamped after ``upto`` even when the clock has not moved (or went back):
        # a job must never select its own output.
        at = max(self.clock(), math.nextafter(job.upto, math.inf))
        if job.kind == REPLAY and isinstance(job.filter, EventFilter):
            events = await self.store.reads.events_after(
                job.filter, after=job.cursor, upto=job.upto, limit=size
            )
            new_events, new_runs, last = self._replays(events, at)
        elif job.kind == RERUN and isinstance(job.filter, RunFilter):
            runs = await self.store.reads.runs_after(job.filter, after=job.cursor, upto=job.upto, limit=size)
            new_events, new_runs, last = [], self._reruns(runs, at), [(r.created_at, r.id) for r in runs]
        else:
            raise Invalid(f"job {job.id} has an unknown kind {job.kind!r}")
        finished = len(last) < size
        cursor = last[-1] if last else (job.cursor or (job.upto, ""))
        await self.store.jobs.write_chunk(
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
            if event.source not in self._replayer.config.sources:  # a source removed since: nothing matches
                continue
            replay, runs = self._replayer.replay(event, now)
            new_events.append(replay)
            new_runs.extend(runs)
        return new_events, new_runs, [(e.received_at, e.id) for e in events]

    def _reruns(self, runs: Sequence[Run], now: float) -> list[Run]:
        tasks = self._replayer.config.tasks
        return [
            self._replayer.rerun(run, run.input, edited=False, now=now)
            for run in runs
            if run.task_id in tasks  # a task removed since cannot run
        ]

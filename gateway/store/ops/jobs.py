"""A store's replays, reruns, bulk jobs and retention (interface.JobQueue): ops on the writer's
batches.

Does I/O. A bulk job's chunk (its new events and runs) and the job's progress are one op, so they commit
in one transaction: a crash loses or keeps both, never one of them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import Invalid
from gateway.model import Event, Job, Pruned, Run
from gateway.store.interface import Cursor
from gateway.store.ops.db import Db
from gateway.store.ops.reads import read
from gateway.store.ops.runs import insert_runs
from gateway.store.ops.writer import Writer
from gateway.store.rows import event_to_row, filter_to_json, job_from_row, run_to_row


@dataclass(slots=True)
class AddOp:
    """New events (never deduplicated: replays, API triggers go through ``record``) and runs."""

    event_rows: list[dict[str, Any]]
    run_rows: list[dict[str, Any]]
    runs: tuple[Run, ...]
    done: asyncio.Future[None]
    job: dict[str, Any] | None = None  # advance_job parameters: the add is a chunk of this job
    result: None = None
    error: Exception | None = None

    @property
    def created(self) -> tuple[Run, ...]:
        """The runs this write put on disk, once its batch committed (none if the job was taken away)."""
        return self.runs if self.error is None else ()


@dataclass(slots=True)
class TakeJobOp:
    params: dict[str, Any]
    done: asyncio.Future[Job | None]
    result: Job | None = None
    error: Exception | None = None


@dataclass(slots=True)
class JobUpdateOp:
    query: str  # release_job | end_job
    params: dict[str, Any]
    done: asyncio.Future[bool]
    result: bool = False
    error: Exception | None = None


@dataclass(slots=True)
class PruneOp:
    classes: list[dict[str, Any]]  # {cutoff, sources (JSON), inside}: one per retention class
    jobs_cutoff: float | None
    limit: int
    done: asyncio.Future[Pruned]
    result: Pruned = field(default_factory=Pruned)
    error: Exception | None = None


JobOp = AddOp | TakeJobOp | JobUpdateOp | PruneOp
JOB_OPS = (AddOp, TakeJobOp, JobUpdateOp, PruneOp)


async def apply_jobs(conn: Db, ops: Sequence[JobOp]) -> None:
    """Run a batch's job ops inside its transaction, leaving each op's answer (or error) on it."""
    for op in ops:
        op.error = None
        if isinstance(op, AddOp):
            await _add(conn, op)
        elif isinstance(op, TakeJobOp):
            rows = list(await conn.fetchall("take_job", op.params))
            op.result = job_from_row(rows[0]) if rows else None
        elif isinstance(op, JobUpdateOp):
            op.result = await conn.execute(op.query, op.params) > 0
        else:
            op.result = await _prune(conn, op)


async def _add(conn: Db, op: AddOp) -> None:
    # A job canceled, or taken over by another process: write nothing.
    if op.job is not None and await conn.execute("advance_job", op.job) == 0:
        op.error = Invalid(f"job {op.job['id']} is no longer running here; this chunk was not written")
        return
    if op.event_rows:
        await conn.executemany("insert_event", op.event_rows)
    if op.run_rows:
        await insert_runs(conn, op.run_rows)


async def _prune(conn: Db, op: PruneOp) -> Pruned:
    pruned = Pruned()
    for cls in op.classes:
        room = op.limit - pruned.events
        if room <= 0:
            break
        rows = await conn.fetchall("prune_candidates", {**cls, "limit": room})
        ids = json.dumps([row[0] for row in rows])
        attempts = await conn.execute("prune_attempts", {"ids": ids})
        runs = await conn.execute("prune_runs", {"ids": ids})
        events = await conn.execute("prune_events", {"ids": ids})
        rejections = await conn.execute("prune_rejections", {**cls, "limit": op.limit})
        pruned = pruned + Pruned(events, runs, attempts, rejections)
    if op.jobs_cutoff is not None:
        jobs = await conn.execute("prune_jobs", {"cutoff": op.jobs_cutoff})
        pruned = pruned + Pruned(jobs=jobs)
    return pruned


def add_op(
    loop: asyncio.AbstractEventLoop,
    events: Sequence[Event],
    runs: Sequence[Run],
    job: dict[str, Any] | None = None,
) -> AddOp:
    """Encode here, in the caller's task, so a bad value fails only its caller."""
    known = {e.id for e in events}
    for run in runs:
        if events and run.event_id not in known:
            raise ValueError(f"run {run.id} belongs to event {run.event_id}, which is not in this write")
    return AddOp(
        [event_to_row(e) for e in events],
        [run_to_row(r) for r in runs],
        tuple(runs),
        loop.create_future(),
        job,
    )


def prune_classes(default: float | None, per_source: Mapping[str, float | None]) -> list[dict[str, Any]]:
    """The prune's retention classes: each source with its own cutoff, then every other source at the
    default. A class with no cutoff (kept forever) is left out."""
    named = json.dumps(sorted(per_source))
    classes = [
        {"cutoff": cutoff, "sources": json.dumps([source]), "inside": 1}
        for source, cutoff in sorted(per_source.items())
        if cutoff is not None
    ]
    if default is not None:
        classes.append({"cutoff": default, "sources": named, "inside": 0})
    return classes


class Jobs:
    """interface.JobQueue on the store's writer (ops) and read connection (dry-run counts)."""

    def __init__(self, writer: Writer, reads: Db) -> None:
        self._writer = writer
        self._reads = reads
        self._loop = asyncio.get_running_loop()

    async def _submit(self, op: JobOp) -> Any:
        self._writer.submit(op)
        return await op.done

    async def add(self, events: Sequence[Event], runs: Sequence[Run]) -> None:
        """Store new events and runs in one durable transaction, with no dedupe (replays, reruns)."""
        await self._submit(add_op(self._loop, events, runs))

    async def create_job(self, job: Job, *, owner: str | None, lease_until: float | None) -> None:
        """Store a new running job, held by ``owner`` until ``lease_until`` (None: for anyone to take)."""
        params = {
            "id": job.id,
            "kind": job.kind,
            "filter": filter_to_json(job.filter),
            "total": job.total,
            "upto": job.upto,
            "owner": owner,
            "lease_until": lease_until,
            "created_at": job.created_at,
            "requested_by": job.requested_by,
        }
        await self._submit(JobUpdateOp("insert_job", params, self._loop.create_future()))

    async def take_job(
        self,
        *,
        owner: str,
        now: float,
        lease: float,
        job_id: str | None = None,
        from_dead: str | None = None,
    ) -> Job | None:
        """Hold a running job nobody holds (the oldest, or ``job_id``) until now + lease; None if none.
        ``from_dead`` takes ``job_id`` from that holder even within its lease (its process is gone)."""
        params = {"owner": owner, "now": now, "lease_until": now + lease, "id": job_id, "holder": from_dead}
        result: Job | None = await self._submit(TakeJobOp(params, self._loop.create_future()))
        return result

    async def write_chunk(
        self,
        job: Job,
        owner: str,
        events: Sequence[Event],
        runs: Sequence[Run],
        *,
        items: int,
        cursor: Cursor,
        finished: bool,
        now: float,
        lease: float,
    ) -> None:
        """Commit a chunk's records with the job's progress; raises Invalid, writing nothing, if ``owner``
        no longer holds the job (it was canceled, or its lease lapsed and another process took it)."""
        progress = {
            "id": job.id,
            "owner": owner,
            "items": items,
            "runs": len(runs),
            "cursor_time": cursor[0],
            "cursor_id": cursor[1],
            "finished": int(finished),
            "now": now,
            "lease_until": now + lease,
        }
        await self._submit(add_op(self._loop, events, runs, progress))

    async def release_job(self, job_id: str, *, owner: str, now: float) -> bool:
        """Let go of a job without finishing it (shutdown): anyone may take it at once."""
        params = {"id": job_id, "owner": owner, "now": now}
        released: bool = await self._submit(JobUpdateOp("release_job", params, self._loop.create_future()))
        return released

    async def end_job(
        self, job_id: str, *, status: str, now: float, error: str | None = None, owner: str | None = None
    ) -> bool:
        """Cancel (any caller) or fail (its owner) a running job; False if it was not running."""
        params = {"id": job_id, "status": status, "error": error, "now": now, "owner": owner}
        ended: bool = await self._submit(JobUpdateOp("end_job", params, self._loop.create_future()))
        return ended

    async def prune(
        self,
        default: float | None,
        per_source: Mapping[str, float | None],
        *,
        limit: int,
    ) -> Pruned:
        """Remove up to ``limit`` events received before their source's cutoff, with their runs and
        attempts, and old rejections and finished jobs, in one transaction. Events with a run still to
        finish are kept."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        op = PruneOp(prune_classes(default, per_source), default, limit, self._loop.create_future())
        result: Pruned = await self._submit(op)
        return result

    async def prunable(self, default: float | None, per_source: Mapping[str, float | None]) -> Pruned:
        """What :meth:`prune` would remove, all batches together (for a dry run)."""
        total = Pruned()
        for cls in prune_classes(default, per_source):
            [row] = await read(self._reads, "count_prunable", cls)
            total = total + Pruned(row["events"], row["runs"], row["attempts"], row["rejections"])
        if default is not None:  # finished jobs go by the default retention, as in prune()
            [row] = await read(self._reads, "count_prunable_jobs", {"cutoff": default})
            total = total + Pruned(jobs=row[0])
        return total

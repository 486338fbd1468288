"""The executor's side of a store (interface.RunQueue): run inserts, claims, attempt ends, recovery, cancels,
leases. Writes are ops on the writer's group-committed batches; the heartbeat has its own connection (Beats).

Does I/O. The only calls up into the executor go through the Claimant it attaches (interface.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

from gateway.errors import NotFound
from gateway.model import (
    CANCELED,
    CRASHED,
    FINAL_STATUSES,
    QUEUED,
    RETRYING,
    AttemptEnd,
    Claim,
    Run,
    TaskWorker,
)
from gateway.store.interface import AttemptLog, Claimant, ClaimRequest
from gateway.store.ops.db import Db, Row
from gateway.store.ops.reads import read, read_workers
from gateway.store.ops.writer import Writer
from gateway.store.rows import (
    attempt_end_to_row,
    claim_from_row,
    key_of,
    logs_to_json,
    run_from_row,
    with_blocked,
    worker_to_row,
)

log = logging.getLogger("gateway.store")

CRASH_MESSAGE = "the gateway process stopped while this attempt was executing"
FORGET_AFTER = 7 * 86400.0  # seconds a stopped or lost worker stays listed by `gateway workers`


@dataclass(slots=True)
class ClaimOp:
    request: ClaimRequest
    claimant: Claimant
    done: asyncio.Future[list[Claim]]
    result: list[Claim] = field(default_factory=list)
    error: Exception | None = None


@dataclass(slots=True)
class FinishOp:
    row: dict[str, Any]  # rows.attempt_end_to_row
    done: asyncio.Future[None]
    result: None = None
    error: Exception | None = None


@dataclass(slots=True)
class RecoverOp:
    now: float
    max_crashes: int
    only_expired: bool
    keep: str  # JSON list of run ids
    dead: str  # JSON list of worker ids
    done: asyncio.Future[list[Run]]
    result: list[Run] = field(default_factory=list)
    error: Exception | None = None


@dataclass(slots=True)
class CancelOp:
    run_id: str
    now: float
    done: asyncio.Future[Run | None]
    result: Run | None = None
    error: Exception | None = None


@dataclass(slots=True)
class WorkerOp:
    """A worker's own row: registered, forgotten or stopped (``query``, a name in QUERIES)."""

    query: str
    row: dict[str, Any]
    done: asyncio.Future[None]
    result: None = None
    error: Exception | None = None


RunOp = ClaimOp | FinishOp | RecoverOp | CancelOp | WorkerOp
RUN_OPS = (ClaimOp, FinishOp, RecoverOp, CancelOp, WorkerOp)


async def insert_runs(conn: Db, run_rows: Sequence[dict[str, Any]]) -> None:
    """Insert one batch's run rows, each blocked behind an earlier unfinished run of its (task, key).

    A constant number of statements whatever the batch holds: the keys noted in a scratch table (bound as
    stored, so a key with U+0000 is compared whole), one lookup of those already busy, one insert. Where
    other processes write at once (PostgreSQL), each key is locked first, so a run ending elsewhere cannot
    miss a run inserted here behind it (and leave it blocked for good).
    """
    keys = list(dict.fromkeys(key for key in map(key_of, run_rows) if key is not None))
    busy: list[tuple[str, str]] = []
    if keys:
        await conn.lock(key_locks(keys))
        await conn.execute("clear_concurrency_keys")
        noted = [{"task_id": task_id, "concurrency_key": key} for task_id, key in keys]
        await conn.executemany("note_concurrency_key", noted)
        rows = await conn.fetchall("busy_keys")
        busy = [(row["task_id"], row["concurrency_key"]) for row in rows]
    await conn.executemany("insert_run", with_blocked(run_rows, busy))


async def apply_runs(conn: Db, ops: Sequence[RunOp]) -> None:
    """Run a batch's ops inside its transaction, leaving each op's answer on it.

    Ends and cancels go first, so the claims (last) see the slots and keys they free: a run that reaches
    a final status hands its key on to the next blocked run in the same transaction. Claims also go
    after every other write of the batch: a write the database refuses fails before any accept() runs,
    so retrying the batch write by write never reserves an executor slot twice. Where other processes write
    at once, the batch holds the keys of the runs it ends already (batch.take_locks).
    """
    for op in ops:
        op.error = None
    for op in ops:
        if isinstance(op, WorkerOp):
            await conn.execute(op.query, op.row)
    ended: list[str] = []  # runs that reached a final status in this batch
    finishes = [op for op in ops if isinstance(op, FinishOp)]
    if finishes:
        ended += await _finish(conn, finishes)
    cancels = [op for op in ops if isinstance(op, CancelOp)]
    if cancels:
        ended += await _cancel(conn, cancels)
    crashed: list[str] = []  # runs a recovery ended for good: the one case batch.take_locks cannot foresee
    for op in ops:
        if isinstance(op, RecoverOp):
            crashed += await _recover(conn, op)
    if crashed and conn.shared:  # see insert_runs: the next run of each key is chosen under the key's lock
        rows = await conn.fetchall("keys_of_runs", {"ids": json.dumps(crashed)})
        await conn.lock(key_locks([(row["task_id"], row["concurrency_key"]) for row in rows]))
    ended += crashed
    if ended:
        await conn.execute("unblock_next", {"ids": json.dumps(ended)})
    for op in ops:
        if isinstance(op, ClaimOp):
            await _claim(conn, op)


def key_locks(keys: Collection[tuple[str, str]]) -> list[str]:
    """The lock names of (task, concurrency key) pairs, sorted: every writer takes them in one order."""
    return sorted(json.dumps(["key", task_id, key]) for task_id, key in keys)


CLAIM_LOCK = '["claims"]'  # held by each claim while it counts the limits and takes runs


def _ids(names: Collection[str] | None) -> str | None:
    return None if names is None else json.dumps(sorted(names))


async def _claim(conn: Db, op: ClaimOp) -> None:
    """The queue and task limits are counted here, in the claim's transaction, over what every process runs:
    one claim at a time counts and takes (SQLite: BEGIN IMMEDIATE; PostgreSQL: the claims lock, held to the
    commit), so no two processes both take the last slot."""
    await conn.lock([CLAIM_LOCK])
    request = op.request
    by_queue: Counter[str] = Counter()
    by_task: Counter[str] = Counter()
    for row in await conn.fetchall("executing_counts"):
        by_queue[row["queue"]] += row["n"]
        by_task[row["task_id"]] += row["n"]
    full_queues = {q for q, limit in request.queue_limits.items() if by_queue[q] >= limit}
    full_tasks = {t for t, limit in request.task_limits.items() if by_task[t] >= limit}
    params = {
        "now": request.now,
        "limit": max(4 * request.limit, 64),
        "skip_queues": json.dumps(sorted(request.skip_queues | full_queues)),
        "skip_tasks": json.dumps(sorted(request.skip_tasks | full_tasks)),
        "tasks": _ids(request.tasks),
        "queues": _ids(request.queues),
    }
    chosen: list[Claim] = []
    for row in await conn.fetchall("claim_candidates", params):
        if len(chosen) >= request.limit:
            break
        run = run_from_row(row)
        queue_limit = request.queue_limits.get(run.queue)
        task_limit = run.options.get("concurrency", request.task_limits.get(run.task_id))
        if (queue_limit is not None and by_queue[run.queue] >= queue_limit) or (
            task_limit is not None and by_task[run.task_id] >= task_limit
        ):
            continue
        try:
            accepted = op.claimant.accept(run)  # on the writer, between awaits: it must not await
        except Exception:
            log.exception("store: accept() failed during a claim; claiming only what it accepted before")
            break
        if accepted:
            by_queue[run.queue] += 1
            by_task[run.task_id] += 1
            chosen.append(claim_from_row(row, now=request.now, run=replace(run, worker_id=request.worker)))
    if chosen:
        lease_until = request.now + request.lease
        worker = request.worker
        starts = [
            {"id": c.run.id, "now": request.now, "lease_until": lease_until, "worker": worker} for c in chosen
        ]
        await conn.executemany("start_run", starts)
        attempts = [
            {"run_id": c.run.id, "number": c.attempt, "now": request.now, "worker": worker} for c in chosen
        ]
        await conn.executemany("insert_attempt", attempts)
    op.result = chosen


async def _finish(conn: Db, ops: list[FinishOp]) -> list[str]:
    """Returns the ids of the runs it moved to a final status."""
    keys = json.dumps([[op.row["run_id"], op.row["attempt"]] for op in ops])
    rows = await conn.fetchall("open_attempts", {"keys": keys})
    open_since = {(row["run_id"], row["number"]): row["started_at"] for row in rows}
    ends: list[dict[str, Any]] = []
    for op in ops:
        started_at = open_since.pop((op.row["run_id"], op.row["attempt"]), None)
        if started_at is None:
            log.warning(
                "store: run %s attempt %d ended (%s) after the run stopped executing it "
                "(canceled or recovered meanwhile); the end was not recorded",
                op.row["run_id"],
                op.row["attempt"],
                op.row["outcome"],
            )
            continue
        ends.append({**op.row, "spent": max(0.0, op.row["finished_at"] - started_at)})
    if ends:
        await conn.executemany("end_attempt", ends)
        await conn.executemany("end_run_attempt", ends)
    return [end["run_id"] for end in ends if end["status"] in FINAL_STATUSES]


def crash_message(row: Row) -> str:
    """Whose process stopped: the worker named on the run, where it ran, or (a run claimed before workers
    were recorded) the gateway process."""
    worker = row["worker_id"]
    if worker is None:
        return CRASH_MESSAGE
    if row["worker_kind"] is None:
        return f"worker {worker} stopped while this attempt was executing"
    what = "gateway serve" if row["worker_kind"] == "serve" else "gateway worker"
    return (
        f"worker {worker} ({what}, pid {row['worker_pid']} on {row['worker_host']}) stopped while this "
        "attempt was executing"
    )


async def _recover(conn: Db, op: RecoverOp) -> list[str]:
    """Returns the ids of the runs it crashed for good."""
    params = {"now": op.now, "only_expired": int(op.only_expired), "keep": op.keep, "dead": op.dead}
    recovered: list[Run] = []
    updates: list[dict[str, Any]] = []
    for row in await conn.fetchall("executing_runs", params):
        run = run_from_row(row)
        crashes = run.crashes + 1  # a crash is not the task's failure: attempts stays as it was
        update: dict[str, Any] = {
            "id": run.id,
            "crashes": crashes,
            "now": op.now,
            "message": crash_message(row),
        }
        if crashes > op.max_crashes:
            error = {
                "type": "Crashed",
                "message": f"the process died during {crashes} attempts; "
                f"giving up after {op.max_crashes} recoveries",
            }
            run = replace(run, status=CRASHED, crashes=crashes, finished_at=op.now, error=error)
            update.update(status=CRASHED, available_at=None, finished_at=op.now, error=json.dumps(error))
        else:
            run = replace(run, status=QUEUED, crashes=crashes)
            update.update(status=QUEUED, available_at=op.now, finished_at=None, error=None)
        recovered.append(run)
        updates.append(update)
    if updates:
        await conn.executemany("crash_attempt", updates)
        await conn.executemany("recover_run", updates)
    op.result = recovered
    return [run.id for run in recovered if run.status == CRASHED]


async def _cancel(conn: Db, ops: list[CancelOp]) -> list[str]:
    """Returns the ids of the runs it canceled."""
    ids = json.dumps([op.run_id for op in ops])
    rows = await conn.fetchall("run_statuses", {"ids": ids})
    statuses = {row["id"]: row["status"] for row in rows}
    cancels: list[CancelOp] = []
    for op in ops:
        op.result = None
        status = statuses.get(op.run_id)
        if status is None:
            op.error = NotFound(f"no run with id {op.run_id!r}")
        elif status in (QUEUED, RETRYING):
            cancels.append(op)
            statuses[op.run_id] = CANCELED  # the same run twice in a batch: only the first cancels it
    if cancels:
        await conn.executemany("cancel_run", [{"id": op.run_id, "now": op.now} for op in cancels])
        rows = await conn.fetchall("runs_by_ids", {"ids": ids})
        runs = {row["id"]: run_from_row(row) for row in rows}
        for op in cancels:
            op.result = runs[op.run_id]
    return [op.run_id for op in cancels]


class Beats(Protocol):
    """Lease renewals and running attempts' logs from a plain thread, on a connection of their own (each
    database package has one: gateway/store/sqlite/heartbeat.py). Thread-safe; neither call raises."""

    def beat(
        self, run_ids: Collection[str], lease_until: float, *, worker: str | None = None, now: float = 0.0
    ) -> int: ...

    def keep_logs(self, rows: Sequence[dict[str, Any]]) -> int: ...

    def close(self) -> None: ...


class Runs:
    """interface.RunQueue on the store's writer (ops), read connection, heartbeat thread and clock."""

    def __init__(self, writer: Writer, reads: Db, beats: Beats, clock: Callable[[], float]) -> None:
        self._writer = writer
        self._reads = reads
        self._beats = beats
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._claimant: Claimant | None = None

    def attach(self, claimant: Claimant) -> None:
        """Register the claimant (the executor): it accepts the candidates of every claim, is asked for a
        claim to ride each batch that creates runs, and hears of new runs once they are committed."""
        self._claimant = claimant

    # -- what the store's batches ask of the claimant -----------------------------------------------------

    def ride(self) -> ClaimOp | None:
        """The claimant's claim for a batch that creates runs (claims run last in the transaction: they see
        the runs just inserted), or None when it passes."""
        claimant = self._claimant
        if claimant is None:
            return None
        try:
            request = claimant.ride()
        except Exception:
            log.exception("store: the claimant failed to ride a batch; its runs start on its next own claim")
            return None
        if request is None:
            return None
        op = ClaimOp(request, claimant, self._loop.create_future())
        op.done.add_done_callback(partial(_rode, claimant))
        return op

    def committed(self, runs: Sequence[Run], *, elsewhere: bool = False) -> None:
        """Tell the claimant of new runs: these, or (``elsewhere``) ones another process committed."""
        if self._claimant is not None and (runs or elsewhere):
            try:
                self._claimant.committed(runs)
            except Exception:
                log.exception("store: the claimant failed to hear of %d committed run(s)", len(runs))

    # -- writes, through the writer's batches -------------------------------------------------------------

    async def claim(self, request: ClaimRequest) -> list[Claim]:
        """Mark up to ``request.limit`` ready runs executing, in claim order, each with a new attempt row.

        The attached claimant's ``accept(run)`` is asked about each candidate in order (on the writer; it must
        not await); a run it refuses stays queued. A run whose (task, concurrency key) has an earlier
        unfinished run is blocked: not a candidate. Never returns a run twice: only queued or retrying runs
        are candidates."""
        if self._claimant is None:
            raise RuntimeError("no claimant is attached: attach() the executor before it claims")
        op = ClaimOp(request, self._claimant, self._loop.create_future())
        self._writer.submit(op)
        return await op.done

    async def finish_attempt(self, end: AttemptEnd) -> None:
        """Record how an attempt ended and move its run on, unless the run stopped executing it meanwhile."""
        op = FinishOp(attempt_end_to_row(end), self._loop.create_future())  # bad values fail here, alone
        self._writer.submit(op)
        await op.done

    async def recover(
        self,
        *,
        now: float,
        max_crashes: int = 3,
        only_expired: bool = True,
        keep: Collection[str] = (),
        dead: Collection[str] = (),
    ) -> list[Run]:
        """Requeue executing runs whose process died (lease expired, or held by a worker in ``dead``), or
        crash them after ``max_crashes``."""
        if max_crashes < 0:
            raise ValueError(f"max_crashes must be at least 0, not {max_crashes}")
        op = RecoverOp(
            now,
            max_crashes,
            only_expired,
            json.dumps(list(keep)),
            json.dumps(list(dead)),
            self._loop.create_future(),
        )
        self._writer.submit(op)
        return await op.done

    def clock(self) -> float:
        """The store's clock (each database package says whose: SQLite's is the host's, PostgreSQL's the
        database server's)."""
        return self._clock()

    async def register(self, worker: TaskWorker) -> None:
        """Record a process that runs tasks; workers gone for FORGET_AFTER and holding no run are dropped."""
        row = worker_to_row(worker)
        forget = {"before": worker.started_at - FORGET_AFTER}
        ops = [
            WorkerOp("forget_workers", forget, self._loop.create_future()),
            WorkerOp("register_worker", row, self._loop.create_future()),
        ]
        for op in ops:
            self._writer.submit(op)
        await asyncio.gather(*(op.done for op in ops))

    async def unregister(self, worker_id: str, *, now: float) -> None:
        op = WorkerOp("stop_worker", {"id": worker_id, "now": now}, self._loop.create_future())
        self._writer.submit(op)
        await op.done

    async def workers(self, *, live_since: float) -> list[TaskWorker]:
        return await read_workers(self._reads, live_since=live_since)

    async def cancel(self, run_id: str, *, now: float) -> Run | None:
        """Cancel a queued or retrying run; None if it is in another status. Raises NotFound."""
        op = CancelOp(run_id, now, self._loop.create_future())
        self._writer.submit(op)
        return await op.done

    def heartbeat_blocking(
        self, run_ids: Collection[str], lease_until: float, *, worker: str | None = None, now: float = 0.0
    ) -> int:
        """Extend the leases of these executing runs and note the worker's heartbeat; from a plain thread.
        Never raises: 0 on error."""
        return self._beats.beat(run_ids, lease_until, worker=worker, now=now)

    def keep_logs_blocking(self, logs: Sequence[AttemptLog]) -> int:
        """Save what running attempts have logged so far (from the heartbeat thread). Never raises."""
        try:
            rows = [{"run_id": a.run_id, "attempt": a.attempt, "logs": logs_to_json(a.lines)} for a in logs]
        except (TypeError, ValueError) as exc:  # a line JSON cannot hold: its attempt's end will say
            log.warning("store: could not encode the logs of a running attempt: %s", exc)
            return 0
        return self._beats.keep_logs(rows)

    async def next_available_at(self, *, after: float) -> float | None:
        """When the next waiting run becomes ready, if one becomes ready after ``after``."""
        rows = await read(self._reads, "next_available_at", {"after": after})
        when: float | None = rows[0][0]
        return when


def _rode(claimant: Claimant, done: asyncio.Future[list[Claim]]) -> None:
    """Tell the claimant how the claim that rode a batch ended (a done callback: after the commit)."""
    try:
        if done.cancelled() or done.exception() is not None:
            claimant.ride_failed()
        else:
            claimant.rode(done.result())
    except Exception:
        log.exception("store: the claimant failed to take the claims of a batch it rode")

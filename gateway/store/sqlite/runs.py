"""The executor's side of the store: run inserts, claims, attempt ends, recovery, cancels, leases, reads.

Does I/O. Writes are ops that ride the store's group-committed batches; the heartbeat has its own connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiosqlite

from gateway.errors import NotFound
from gateway.model import CANCELED, CRASHED, FINAL_STATUSES, QUEUED, RETRYING, AttemptEnd, Claim, Run
from gateway.store.rows import attempt_end_row, claim_from_row, key_of, run_from_row, with_blocked

log = logging.getLogger("gateway.store")

CRASH_MESSAGE = "the gateway process stopped while this attempt was executing"


@dataclass(slots=True)
class ClaimOp:
    now: float
    limit: int
    lease: float
    accept: Callable[[Run], bool]
    skip: dict[str, str]  # skip_queues / skip_tasks as JSON lists
    done: asyncio.Future[list[Claim]]
    result: list[Claim] = field(default_factory=list)
    error: Exception | None = None


@dataclass(slots=True)
class FinishOp:
    row: dict[str, Any]  # rows.attempt_end_row
    done: asyncio.Future[None]
    result: None = None
    error: Exception | None = None


@dataclass(slots=True)
class RecoverOp:
    now: float
    max_crashes: int
    only_expired: bool
    keep: str  # JSON list of run ids
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


RunOp = ClaimOp | FinishOp | RecoverOp | CancelOp
RUN_OPS = (ClaimOp, FinishOp, RecoverOp, CancelOp)


async def insert_runs(
    conn: aiosqlite.Connection, run_rows: Sequence[dict[str, Any]], sql: Mapping[str, str]
) -> None:
    """Insert one batch's run rows, each blocked behind an earlier unfinished run of its (task, key).

    Two statements whatever the batch holds: one lookup of the keys already busy, one insert.
    """
    keys = list(dict.fromkeys(key for key in map(key_of, run_rows) if key is not None))
    busy: list[tuple[str, str]] = []
    if keys:
        rows = await conn.execute_fetchall(sql["busy_keys"], {"keys": json.dumps(keys)})
        busy = [(row["task_id"], row["concurrency_key"]) for row in rows]
    await conn.executemany(sql["insert_run"], with_blocked(run_rows, busy))


async def apply(conn: aiosqlite.Connection, ops: Sequence[RunOp], sql: Mapping[str, str]) -> None:
    """Run a batch's ops inside its transaction, leaving each op's answer on it.

    Ends and cancels go first, so the claims (last) see the slots and keys they free: a run that reaches
    a final status hands its key on to the next blocked run in the same transaction. Claims also go
    after every other write of the batch: a write the database refuses fails before any accept() runs,
    so retrying the batch write by write never reserves an executor slot twice.
    """
    for op in ops:
        op.error = None
    ended: list[str] = []  # runs that reached a final status in this batch
    finishes = [op for op in ops if isinstance(op, FinishOp)]
    if finishes:
        ended += await _finish(conn, finishes, sql)
    cancels = [op for op in ops if isinstance(op, CancelOp)]
    if cancels:
        ended += await _cancel(conn, cancels, sql)
    for op in ops:
        if isinstance(op, RecoverOp):
            ended += await _recover(conn, op, sql)
    if ended:
        await conn.execute(sql["unblock_next"], {"ids": json.dumps(ended)})
    for op in ops:
        if isinstance(op, ClaimOp):
            await _claim(conn, op, sql)


def settle(op: Any) -> None:
    """Answer the caller of an op (``done``, ``result``, ``error``) once its batch is committed."""
    if op.done.done():  # the caller gave up waiting
        return
    if op.error is not None:
        op.done.set_exception(op.error)
    else:
        op.done.set_result(op.result)


async def _claim(conn: aiosqlite.Connection, op: ClaimOp, sql: Mapping[str, str]) -> None:
    params = {"now": op.now, "limit": max(4 * op.limit, 64), **op.skip}
    chosen: list[Claim] = []
    for row in await conn.execute_fetchall(sql["claim_candidates"], params):
        if len(chosen) >= op.limit:
            break
        run = run_from_row(row)
        try:
            accepted = op.accept(run)  # runs in the writer task, between awaits: it must not await
        except Exception:
            log.exception("store: accept() failed during a claim; claiming only what it accepted before")
            break
        if accepted:
            chosen.append(claim_from_row(row, now=op.now, run=run))
    if chosen:
        lease_until = op.now + op.lease
        starts = [{"id": c.run.id, "now": op.now, "lease_until": lease_until} for c in chosen]
        await conn.executemany(sql["start_run"], starts)
        attempts = [{"run_id": c.run.id, "number": c.attempt, "now": op.now} for c in chosen]
        await conn.executemany(sql["insert_attempt"], attempts)
    op.result = chosen


async def _finish(conn: aiosqlite.Connection, ops: list[FinishOp], sql: Mapping[str, str]) -> list[str]:
    """Returns the ids of the runs it moved to a final status."""
    keys = json.dumps([[op.row["run_id"], op.row["attempt"]] for op in ops])
    rows = await conn.execute_fetchall(sql["open_attempts"], {"keys": keys})
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
        await conn.executemany(sql["end_attempt"], ends)
        await conn.executemany(sql["end_run_attempt"], ends)
    return [end["run_id"] for end in ends if end["status"] in FINAL_STATUSES]


async def _recover(conn: aiosqlite.Connection, op: RecoverOp, sql: Mapping[str, str]) -> list[str]:
    """Returns the ids of the runs it crashed for good."""
    params = {"now": op.now, "only_expired": int(op.only_expired), "keep": op.keep}
    recovered: list[Run] = []
    updates: list[dict[str, Any]] = []
    for row in await conn.execute_fetchall(sql["executing_runs"], params):
        run = run_from_row(row)
        crashes = run.crashes + 1  # a crash is not the task's failure: attempts stays as it was
        update: dict[str, Any] = {"id": run.id, "crashes": crashes, "now": op.now, "message": CRASH_MESSAGE}
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
        await conn.executemany(sql["crash_attempt"], updates)
        await conn.executemany(sql["recover_run"], updates)
    op.result = recovered
    return [run.id for run in recovered if run.status == CRASHED]


async def _cancel(conn: aiosqlite.Connection, ops: list[CancelOp], sql: Mapping[str, str]) -> list[str]:
    """Returns the ids of the runs it canceled."""
    ids = json.dumps([op.run_id for op in ops])
    rows = await conn.execute_fetchall(sql["run_statuses"], {"ids": ids})
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
        await conn.executemany(sql["cancel_run"], [{"id": op.run_id, "now": op.now} for op in cancels])
        rows = await conn.execute_fetchall(sql["runs_by_ids"], {"ids": ids})
        runs = {row["id"]: run_from_row(row) for row in rows}
        for op in cancels:
            op.result = runs[op.run_id]
    return [op.run_id for op in cancels]


class Heartbeat:
    """Renews leases from a plain thread, on a sqlite3 connection of its own opened on first use.

    A thread keeps leases alive even while task code blocks the event loop. Thread-safe.
    """

    def __init__(self, location: str, pragmas: str, sql: str) -> None:
        self._location = location
        self._pragmas = pragmas
        self._sql = sql
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def beat(self, run_ids: Collection[str], lease_until: float) -> int:
        """Set lease_until on those runs that are still executing; how many. Never raises."""
        with self._lock:
            if self._closed:
                return 0
            try:
                if self._conn is None:
                    self._conn = _connect_blocking(self._location, self._pragmas)
                params = {"ids": json.dumps(list(run_ids)), "lease_until": lease_until}
                return self._conn.execute(self._sql, params).rowcount  # autocommit: one transaction
            except Exception as exc:
                log.warning("store: could not renew the leases of %d run(s): %s", len(run_ids), exc)
                return 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _connect_blocking(location: str, pragmas: str) -> sqlite3.Connection:
    conn = sqlite3.connect(location, isolation_level=None, check_same_thread=False)
    try:
        conn.executescript(pragmas)
    except BaseException:
        conn.close()
        raise
    return conn


class RunStore:
    """The run methods of :class:`gateway.store.sqlite.store.Store`, which provides the queue, reader and
    heartbeat."""

    _loop: asyncio.AbstractEventLoop
    _beats: Heartbeat
    _claimer: Callable[[], ClaimOp | None] | None  # the executor's claim for batches that create runs

    def set_claimer(self, claimer: Callable[[], ClaimOp | None] | None) -> None:
        """Ask ``claimer`` (the executor's) for a claim to add to every batch that creates runs: those runs
        then start once that one transaction commits, not after a second one. It returns None to pass."""
        self._claimer = claimer

    def _ride(self, batch: list[Any]) -> None:
        if self._claimer is None:
            return
        try:
            op = self._claimer()
        except Exception:
            log.exception("store: the claimer failed; its runs start on its next own claim")
            return
        if op is not None:
            batch.append(op)  # claims run last in the transaction: they see the runs just inserted

    def _enqueue(self, item: RunOp) -> None:
        raise NotImplementedError

    async def _read(self, query: str, params: dict[str, Any]) -> list[sqlite3.Row]:
        raise NotImplementedError

    # -- writes, through the writer's batches ---------------------------------------------------------

    async def claim(
        self,
        *,
        now: float,
        limit: int,
        lease: float,
        accept: Callable[[Run], bool],
        skip_queues: Collection[str] = (),
        skip_tasks: Collection[str] = (),
    ) -> list[Claim]:
        """Mark up to ``limit`` ready runs executing, in claim order, each with a new attempt row.

        ``accept(run)`` is asked about each candidate in order (in the writer task; it must not await);
        a run it refuses stays queued. A run whose (task, concurrency key) has an earlier unfinished run
        is blocked: not a candidate. Never returns a run twice: only queued or retrying runs are candidates.
        """
        op = self.claim_op(
            now=now, limit=limit, lease=lease, accept=accept, skip_queues=skip_queues, skip_tasks=skip_tasks
        )
        self._enqueue(op)
        return await op.done

    def claim_op(
        self,
        *,
        now: float,
        limit: int,
        lease: float,
        accept: Callable[[Run], bool],
        skip_queues: Collection[str] = (),
        skip_tasks: Collection[str] = (),
    ) -> ClaimOp:
        """The op :meth:`claim` enqueues, for a claimer that rides batches (``Store.set_claimer``); its
        ``done`` future gives the claims once the batch is committed."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        if lease <= 0:
            raise ValueError(f"lease must be positive, not {lease}")
        skip = {"skip_queues": json.dumps(list(skip_queues)), "skip_tasks": json.dumps(list(skip_tasks))}
        return ClaimOp(now, limit, lease, accept, skip, self._loop.create_future())

    async def finish_attempt(self, end: AttemptEnd) -> None:
        """Record how an attempt ended and move its run on, unless the run stopped executing it meanwhile."""
        op = FinishOp(attempt_end_row(end), self._loop.create_future())  # bad values fail here, alone
        self._enqueue(op)
        await op.done

    async def recover(
        self, *, now: float, max_crashes: int = 3, only_expired: bool = True, keep: Collection[str] = ()
    ) -> list[Run]:
        """Requeue executing runs whose process died (lease expired), or crash them after ``max_crashes``."""
        if max_crashes < 0:
            raise ValueError(f"max_crashes must be at least 0, not {max_crashes}")
        op = RecoverOp(now, max_crashes, only_expired, json.dumps(list(keep)), self._loop.create_future())
        self._enqueue(op)
        return await op.done

    async def cancel(self, run_id: str, *, now: float) -> Run | None:
        """Cancel a queued or retrying run; None if it is in another status. Raises NotFound."""
        op = CancelOp(run_id, now, self._loop.create_future())
        self._enqueue(op)
        return await op.done

    def heartbeat_blocking(self, run_ids: Collection[str], lease_until: float) -> int:
        """Extend the leases of these executing runs; call from a plain thread. Never raises: 0 on error."""
        return self._beats.beat(run_ids, lease_until)

    # -- reads ----------------------------------------------------------------------------------------

    async def next_available_at(self, *, after: float) -> float | None:
        """When the next waiting run becomes ready, if one becomes ready after ``after``."""
        rows = await self._read("next_available_at", {"after": after})
        when: float | None = rows[0][0]
        return when

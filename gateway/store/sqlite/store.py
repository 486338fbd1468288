"""The SQLite store (interface.Store): one file in WAL mode with ``synchronous=FULL``, so a write returns only
once it is on disk, and only while that file is still the one at its path (files.py). It holds one Writer
(group commit) and one read connection, and composes the parts: ``runs`` (the executor's), ``jobs`` (replays,
bulk jobs, prunes) and ``reads`` (listings).

Does I/O: the database file and its connections.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self

import aiosqlite

from gateway.errors import StoreError, StoreUnavailable
from gateway.model import Event, Recorded, Rejection, RejectionKeep, Run
from gateway.store.rows import rejection_to_row
from gateway.store.sqlite.files import DatabaseFiles, refusal, rescue
from gateway.store.sqlite.intake import EventWrite, RowWrite, apply_intake, event_write
from gateway.store.sqlite.jobs import JOB_OPS, AddOp, SQLiteJobs, apply_jobs
from gateway.store.sqlite.reader import SQLiteReads
from gateway.store.sqlite.rejections import RejectionWrite
from gateway.store.sqlite.runs import RUN_OPS, Heartbeat, SQLiteRuns, apply_runs
from gateway.store.sqlite.schema import connect, damaged, prepare, salvage
from gateway.store.sqlite.sql import QUERIES
from gateway.store.sqlite.wakeup import WakeUps
from gateway.store.sqlite.writer import Op, Writer

log = logging.getLogger("gateway.store")
# Seconds a failed commit keeps /readyz at 503 unless a delivery commits meanwhile: long enough for a load
# balancer to see it, short enough that an instance it stopped sending to becomes ready again by itself.
READY_AFTER_FAILURE = 30.0


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counters since the store was opened; ``commits`` counts fsynced batches."""

    commits: int = 0
    failed_batches: int = 0
    largest_batch: int = 0
    events: int = 0
    duplicates: int = 0
    runs: int = 0
    rows: int = 0  # rejections and meta rows


class SQLiteStore:
    """Use :meth:`open`. The writer's batches are this class's to fill (:meth:`joining`), write
    (:meth:`write`: subclasses in tests wrap it to inject faults) and report (:meth:`committed`)."""

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        *,
        location: str,
        max_batch: int,
        on_batch: Callable[[int, float, bool], None] | None = None,
    ) -> None:
        """Takes connections that are already configured and migrated (:meth:`open` makes them)."""
        self._loop = asyncio.get_running_loop()
        self._reader = reader
        self._on_batch = on_batch
        self._stats = StoreStats()
        self._delivered_at: float | None = None  # time.monotonic() of the last commit holding a delivery
        self._lost: str | None = None  # what to say once the file was deleted or replaced: until restarted
        self._corrupt: str | None = None  # what to say once SQLite found the file damaged: until restarted
        self._files = DatabaseFiles(location)  # the connections have opened the file and its -wal and -shm
        self._close_lock = asyncio.Lock()
        self._writer = Writer(writer, self, max_batch=max_batch)
        self._beats = Heartbeat(location)
        self.runs = SQLiteRuns(self._writer, reader, self._beats)
        self.jobs = SQLiteJobs(self._writer, reader)
        self.reads = SQLiteReads(reader)
        self._wakeups = WakeUps(location)

    def listen(self) -> bool:
        """Hear of runs other processes commit to this file (wakeup.py): the attached claimant is told at once
        instead of at its next poll. For a process that runs tasks; False when wake-ups are unavailable."""
        return self._wakeups.listen(self._loop, lambda: self.runs.committed((), elsewhere=True))

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        max_batch: int = 256,
        on_batch: Callable[[int, float, bool], None] | None = None,
        listen: bool = False,
        check: float | None = None,
    ) -> Self:
        """Open (creating if needed) the database at ``path``, migrate it, and start the writer. ``on_batch``
        hears of every transaction: its size, its seconds and whether it committed (metrics); ``listen`` hears
        of runs other processes commit (see :meth:`listen`); ``check`` runs PRAGMA quick_check first for up to
        that many seconds (schema.quick_check: StoreError if the file is corrupted)."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        location = os.fspath(path)
        # Create and migrate with plain sqlite3 in a worker thread first: a file that cannot be opened then
        # fails here, not inside aiosqlite, whose worker thread can outlive a failed connect (aiosqlite#241).
        try:
            await asyncio.to_thread(prepare, location, check)
            writer = await connect(location, QUERIES["writer_pragmas"])
            try:
                reader = await connect(location, QUERIES["reader_pragmas"])
            except BaseException:
                await writer.close()
                raise
        except sqlite3.Error as exc:
            if damaged(exc):  # "file is not a database": its first page is damaged too
                raise StoreError(f"{location} is corrupted ({exc}): {salvage(location)}") from None
            raise StoreError(f"cannot open the database {location}: {exc}") from exc
        store = cls(writer, reader, location=location, max_batch=max_batch, on_batch=on_batch)
        if listen:
            store.listen()
        return store

    @property
    def stats(self) -> StoreStats:
        w = self._writer.stats
        return replace(
            self._stats, commits=w.commits, failed_batches=w.failed_batches, largest_batch=w.largest_batch
        )

    async def close(self) -> None:
        """Refuse new writes, commit the queued ones, then close every connection."""
        async with self._close_lock:  # two concurrent closes must not close a connection twice
            await self._writer.close()
            await self._writer.conn.close()
            await self._reader.close()
            await asyncio.to_thread(self._beats.close)  # waits for a heartbeat in progress
            self._wakeups.close(self._loop)

    # -- intake -------------------------------------------------------------------------------------------

    async def record(
        self,
        event: Event,
        runs: Sequence[Run],
        *,
        dedupe_window: float | None = None,
        recovers: int | None = None,
    ) -> Recorded:
        """Store ``event`` and its ``runs`` in one durable transaction, unless its dedupe key is known (and,
        with a ``dedupe_window``, younger than it). With ``recovers``, the rejection it is recovered from is
        marked in that transaction (see interface.Store).

        Raises StoreUnavailable if the write could not be committed; nothing of it is then on disk.
        """
        op = event_write(event, runs, self._loop, dedupe_window=dedupe_window, recovers=recovers)
        self._writer.submit(op)
        return await op.done

    async def record_rejection(self, rejection: Rejection, keep: RejectionKeep | None = None) -> None:
        """Store a refused request, through the same batches as events; its request, when it has one, within
        its source's ``keep`` (gateway/store/sqlite/rejections.py)."""
        op = RejectionWrite(rejection_to_row(rejection), keep, self._loop.create_future())
        self._writer.submit(op)
        await op.done

    async def probe(self) -> None:
        """Prove the database still takes durable writes (for /readyz); raises StoreUnavailable, saying why.
        A database file deleted or replaced, or found damaged, fails it until the gateway is restarted. A
        small probe row can commit while deliveries fail (a nearly full disk takes it, not a 1 MiB body), so
        a batch that failed in the last READY_AFTER_FAILURE seconds, with no delivery committed since, fails
        it too."""
        for lasting in (self._lost, self._corrupt):
            if lasting is not None:
                raise StoreUnavailable(lasting)
        failed_at, committed_at = self._writer.stats.failed_at, self._delivered_at
        if failed_at is not None and (committed_at is None or committed_at < failed_at):
            ago = time.monotonic() - failed_at
            if ago < READY_AFTER_FAILURE:
                raise StoreUnavailable(f"a write could not be committed {ago:.0f} s ago (see the log)")
        await self._write_row("set_meta", {"key": "last_probe", "value": time.time()})

    async def _write_row(self, query: str, row: dict[str, Any]) -> None:
        op = RowWrite(query, row, self._loop.create_future())
        self._writer.submit(op)
        await op.done

    # -- the writer's batches (writer.Batches) ------------------------------------------------------------

    def joining(self, batch: list[Op]) -> None:
        """A batch that creates runs takes the executor's claim along (runs.ride): those runs then start once
        this one transaction commits, not after a second one."""
        if any(isinstance(op, EventWrite | AddOp) and op.runs for op in batch):
            claim = self.runs.ride()
            if claim is not None:
                batch.append(claim)

    async def write(self, conn: aiosqlite.Connection, batch: list[Op]) -> None:
        """One batch's transaction: intake first, then bulk-job ops, then run ops with the claims last, so
        they see the runs just inserted and the slots just freed."""
        events = [op for op in batch if isinstance(op, EventWrite)]
        rows = [op for op in batch if isinstance(op, RowWrite)]
        rejections = [op for op in batch if isinstance(op, RejectionWrite)]
        if events or rows or rejections:
            await apply_intake(conn, events, rows, rejections)
        await apply_jobs(conn, [op for op in batch if isinstance(op, JOB_OPS)])
        await apply_runs(conn, [op for op in batch if isinstance(op, RUN_OPS)])

    async def landed(self, conn: aiosqlite.Connection) -> str | None:
        """After each commit: is the file it went to still the one at the path? If not (deleted, replaced),
        save what the connection still reads (files.rescue) and say so once, loudly: the log line and /readyz
        say where it went and what to do; the writes refused from now on say what happened."""
        change = self._files.changed()
        if change is None:
            return None
        self._lost = await rescue(conn, self._files, change)
        log.error("store: %s", self._lost)
        return f"{refusal(self._files, change)} (see the log)"

    def failed(self, batch: list[Op], exc: Exception) -> None:
        """A damaged file does not heal: once SQLite finds it so, /readyz says it until a restart."""
        if self._corrupt is None and damaged(exc):
            location = self._files.location
            self._corrupt = (
                f"{location} is corrupted ({exc}): writes that touch the damaged pages fail, and /readyz "
                "answers 503 until the gateway is restarted on a sound file; stop it, then "
                f"{salvage(location)}"
            )
            log.error("store: %s", self._corrupt)

    def committed(self, batch: list[Op]) -> None:
        events = [op for op in batch if isinstance(op, EventWrite)]
        fresh = [op for op in events if op.result is not None and not op.result.duplicate]
        s = self._stats
        self._stats = replace(
            s,
            events=s.events + len(fresh),
            duplicates=s.duplicates + len(events) - len(fresh),
            runs=s.runs + sum(len(op.runs) for op in fresh),
            rows=s.rows + sum(isinstance(op, RowWrite | RejectionWrite) for op in batch),
        )
        if events:
            self._delivered_at = time.monotonic()
        created = [run for op in batch if isinstance(op, EventWrite | AddOp) for run in op.created]
        self.runs.committed(created)
        if created:
            self._wakeups.notify()  # other processes on this file (gateway serve, workers) start them now

    def observed(self, size: int, seconds: float, *, ok: bool) -> None:
        if self._on_batch is not None:
            try:
                self._on_batch(size, seconds, ok)
            except Exception:
                log.exception("store: the on_batch callback failed")

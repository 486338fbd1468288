"""What every database's store does the same way (interface.Store): one Writer group-committing the intake's
writes, the composed parts (runs, jobs, reads), the answers of each batch, readiness and stats. A database
package subclasses it with how to open, close and check its database (SQLiteStore, PostgresStore).

Does I/O through the Db connections it is given.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway.errors import StoreUnavailable
from gateway.model import Event, Recorded, Rejection, RejectionKeep, Run
from gateway.store.ops.batch import creates_runs, write_batch
from gateway.store.ops.db import Db
from gateway.store.ops.intake import EventWrite, RowWrite, event_write
from gateway.store.ops.jobs import AddOp, Jobs
from gateway.store.ops.reads import Reads
from gateway.store.ops.rejections import RejectionWrite
from gateway.store.ops.runs import Beats, Runs
from gateway.store.ops.writer import Op, Writer
from gateway.store.rows import rejection_to_row

log = logging.getLogger("gateway.store")
# Seconds a failed commit keeps /readyz at 503 unless a delivery commits meanwhile: long enough for a load
# balancer to see it, short enough that an instance it stopped sending to becomes ready again by itself.
READY_AFTER_FAILURE = 30.0


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counters since the store was opened; ``commits`` counts durable batches."""

    commits: int = 0
    failed_batches: int = 0
    largest_batch: int = 0
    events: int = 0
    duplicates: int = 0
    runs: int = 0
    rows: int = 0  # rejections and meta rows


class BatchedStore:
    """The writer's batches are this class's to fill (:meth:`joining`), write (:meth:`write`: subclasses in
    tests wrap it to inject faults) and report (:meth:`committed`)."""

    def __init__(
        self,
        writer: Db,
        reader: Db,
        beats: Beats,
        clock: Callable[[], float],
        *,
        max_batch: int,
        on_batch: Callable[[int, float, bool], None] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_batch = on_batch
        self._stats = StoreStats()
        self._delivered_at: float | None = None  # time.monotonic() of the last commit holding a delivery
        self._close_lock = asyncio.Lock()
        self._writer = Writer(writer, self, max_batch=max_batch)
        self._beats = beats
        self.runs = Runs(self._writer, reader, beats, clock)
        self.jobs = Jobs(self._writer, reader)
        self.reads = Reads(reader)

    @property
    def stats(self) -> StoreStats:
        w = self._writer.stats
        return replace(
            self._stats, commits=w.commits, failed_batches=w.failed_batches, largest_batch=w.largest_batch
        )

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
        its source's ``keep`` (gateway/store/ops/rejections.py)."""
        op = RejectionWrite(rejection_to_row(rejection), keep, self._loop.create_future())
        self._writer.submit(op)
        await op.done

    async def probe(self) -> None:
        """Prove the database still takes durable writes (for /readyz); raises StoreUnavailable, saying why.
        What :meth:`lasting` says fails it until a restart. A small probe row can commit while deliveries
        fail (a nearly full disk takes it, not a 1 MiB body), so a batch that failed in the last
        READY_AFTER_FAILURE seconds, with no delivery committed since, fails it too."""
        lasting = self.lasting()
        if lasting is not None:
            raise StoreUnavailable(lasting)
        failed_at, committed_at = self._writer.stats.failed_at, self._delivered_at
        if failed_at is not None and (committed_at is None or committed_at < failed_at):
            ago = time.monotonic() - failed_at
            if ago < READY_AFTER_FAILURE:
                raise StoreUnavailable(f"a write could not be committed {ago:.0f} s ago (see the log)")
        await self._write_row("set_meta", {"key": "last_probe", "value": time.time()})

    async def close(self) -> None:
        """Refuse new writes, commit the queued ones, then close every connection (each database's own)."""
        raise NotImplementedError

    def lasting(self) -> str | None:
        """Why the store refuses writes until a restart, or None (SQLite: its file was lost or damaged)."""
        return None

    async def _write_row(self, query: str, row: dict[str, Any]) -> None:
        op = RowWrite(query, row, self._loop.create_future())
        self._writer.submit(op)
        await op.done

    # -- the writer's batches (writer.Batches) ------------------------------------------------------------

    def joining(self, batch: list[Op]) -> None:
        """A batch that creates runs takes the executor's claim along (runs.ride): those runs then start once
        this one transaction commits, not after a second one."""
        if creates_runs(batch):
            claim = self.runs.ride()
            if claim is not None:
                batch.append(claim)

    async def write(self, conn: Db, batch: list[Op]) -> None:
        """One batch's transaction (ops.batch.write_batch)."""
        await write_batch(conn, batch)

    async def landed(self, conn: Db) -> str | None:
        """After each commit: why it reached no durable place, or None (see writer.Batches)."""
        return None

    def failed(self, batch: list[Op], exc: Exception) -> None:
        """A batch rolled back for good (see writer.Batches)."""

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
            self.wake_others()

    def wake_others(self) -> None:
        """Tell the other processes sharing the database that runs were committed (after the commit)."""

    def observed(self, size: int, seconds: float, *, ok: bool) -> None:
        if self._on_batch is not None:
            try:
                self._on_batch(size, seconds, ok)
            except Exception:
                log.exception("store: the on_batch callback failed")

"""Group commit: one task owns the write connection. Callers queue ops; the writer takes everything queued (up
to ``max_batch``, never waiting to fill a batch), writes it in one transaction (one fsync), has the store
check that the commit landed where it should (SQLite: in the file at the database's path), then answers
every caller of that batch. Does I/O: the write connection (a db.Db).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gateway.errors import StoreError, StoreUnavailable
from gateway.store.ops.db import DataRefused, Db

log = logging.getLogger("gateway.store")

# Errors caused by one write's own data rather than by the disk, whatever the database: a batch that hits one
# (or one of its Db's data_errors) is retried write by write, so only the bad write fails (with StoreError)
# and its neighbours still commit. Binding a value can raise these: an integer past 64 bits (OverflowError),
# a type the driver cannot send, bad text.
DATA_ERRORS: tuple[type[BaseException], ...] = (DataRefused, OverflowError, ValueError, TypeError)


class Op(Protocol):
    """A write on the queue. Inside its batch's transaction it leaves its answer on ``result`` (or, when it
    failed alone, its ``error``); once the batch commits, ``done`` gets it. Fields, so dataclasses fit."""

    done: asyncio.Future[Any]
    result: Any
    error: Exception | None


class Batches(Protocol):
    """What a store does with each batch the writer takes (gateway/store/sqlite/store.py)."""

    def joining(self, batch: list[Op]) -> None:
        """Before the transaction: add ops that should commit with this batch (a claim riding it)."""

    async def write(self, conn: Db, batch: list[Op]) -> None:
        """The body of the batch's transaction; raising rolls the whole batch back."""

    async def landed(self, conn: Db) -> str | None:
        """After COMMIT, before anything is answered: why what was committed is in no file at the database's
        path (it was deleted or replaced while serving), or None. It must not raise. Once it gives a reason,
        the batch is refused and so is every op after it: the writer writes nothing more."""

    def committed(self, batch: list[Op]) -> None:
        """After COMMIT, before any caller is answered; it must not raise."""

    def failed(self, batch: list[Op], exc: Exception) -> None:
        """After a batch was rolled back for good, before its callers are refused; it must not raise."""

    def observed(self, size: int, seconds: float, *, ok: bool) -> None:
        """After every transaction, committed (``ok``) or rolled back: for stats and metrics."""


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Since the writer started: fsynced batches, batches that failed for good, the largest batch."""

    commits: int = 0
    failed_batches: int = 0
    largest_batch: int = 0
    failed_at: float | None = None  # time.monotonic() of the last batch that failed for good


class Writer:
    """Owns ``conn`` from its own task until :meth:`close`; ops go in with :meth:`submit`."""

    def __init__(self, conn: Db, batches: Batches, *, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.conn = conn
        self._data_errors = DATA_ERRORS + conn.data_errors
        self._batches = batches
        self._max_batch = max_batch
        self._queue: asyncio.Queue[Op | None] = asyncio.Queue()  # None asks the writer to stop
        self._inflight: list[Op] = []
        self._closing = False
        self._refusal = "the store is closed; nothing was written"
        self.lost: str | None = None  # why every op is refused for good: the database file is gone (landed)
        self.stats = WriterStats()
        self._task = asyncio.create_task(self._loop(), name="gateway-store-writer")
        self._task.add_done_callback(self._stopped)

    def submit(self, op: Op) -> None:
        """Queue ``op`` for the next batch; raises StoreUnavailable once the writer is closing or stopped."""
        if self._closing:
            raise StoreUnavailable(self._refusal)
        self._queue.put_nowait(op)

    async def close(self) -> None:
        """Refuse new ops, commit the queued ones, then stop (the caller closes the connection)."""
        if not self._closing:
            self._closing = True
            self._queue.put_nowait(None)
        await asyncio.wait([self._task])

    async def _loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._inflight = [op for op in batch if op is not None]
            if self._inflight:
                self._batches.joining(self._inflight)
                await self._commit(self._inflight)
            self._inflight = []
            if None in batch:
                return

    async def _commit(self, batch: list[Op]) -> None:
        """The one guarded transaction path: begin, the batch, commit, or roll back; then the check that the
        commit landed."""
        if self.lost is not None:
            for op in batch:
                _fail(op, StoreUnavailable(self.lost))
            return
        started = time.perf_counter()
        try:
            await self.conn.begin()
            await self._batches.write(self.conn, batch)
            await self.conn.commit()
        except Exception as exc:
            await self.conn.rollback()
            self._batches.observed(len(batch), time.perf_counter() - started, ok=False)
            if isinstance(exc, self._data_errors) and len(batch) > 1:
                for op in batch:
                    await self._commit([op])
                return
            self._count_failure()
            log.error("store: rolled back a batch of %d writes: %s", len(batch), exc)
            self._batches.failed(batch, exc)
            for op in batch:
                _fail(op, _failure(exc, self._data_errors))
            return
        self.lost = await self._batches.landed(self.conn)
        self._batches.observed(len(batch), time.perf_counter() - started, ok=self.lost is None)
        if self.lost is not None:  # committed to a file no longer at the path: lost at the next start
            self._count_failure()
            for op in batch:
                _fail(op, StoreUnavailable(self.lost))
            return
        s = self.stats
        self.stats = replace(s, commits=s.commits + 1, largest_batch=max(s.largest_batch, len(batch)))
        self._batches.committed(batch)
        for op in batch:
            _settle(op)

    def _count_failure(self) -> None:
        self.stats = replace(
            self.stats, failed_batches=self.stats.failed_batches + 1, failed_at=time.monotonic()
        )

    def _stopped(self, task: asyncio.Task[None]) -> None:
        # Whatever stopped the writer, nobody may wait for it forever.
        crashed = task.cancelled() or task.exception() is not None
        if crashed:
            log.error("store: the writer stopped", exc_info=None if task.cancelled() else task.exception())
            self._refusal = "the store's writer stopped unexpectedly (see the log); restart the gateway"
        self._closing = True
        orphans: list[Op | None] = list(self._inflight)
        while not self._queue.empty():
            orphans.append(self._queue.get_nowait())
        for op in orphans:
            if op is not None:
                _fail(op, StoreUnavailable(self._refusal))


def _settle(op: Op) -> None:
    """Answer the caller of a committed op: its result, or the error it met alone."""
    if op.done.done():  # the caller gave up waiting (cancelled)
        return
    if op.error is not None:
        op.done.set_exception(op.error)
    else:
        op.done.set_result(op.result)


def _fail(op: Op, exc: Exception) -> None:
    if not op.done.done():
        op.done.set_exception(exc)


def _failure(exc: Exception, data_errors: tuple[type[BaseException], ...]) -> StoreError:
    if isinstance(exc, data_errors):
        return StoreError(f"the database refused this write ({type(exc).__name__}: {exc}); nothing was kept")
    return StoreUnavailable(f"the write could not be committed ({exc}); nothing of it was kept")

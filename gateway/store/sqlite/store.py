"""The SQL store: durable events, runs and rejections in SQLite (the run side is in runstore). Does I/O.

Writes are group-committed: callers queue them, one writer task commits everything queued in one
transaction (one fsync), then answers every caller of that batch. Reads use a second connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Self

import aiosqlite

from gateway.errors import StoreError, StoreUnavailable
from gateway.model import Event, Recorded, Rejection, Run
from gateway.store.rows import event_row, rejection_row, run_row
from gateway.store.sqlite.jobs import JOB_OPS, AddOp, JobOp, JobStore, apply_jobs
from gateway.store.sqlite.reader import Reader
from gateway.store.sqlite.runs import RUN_OPS, ClaimOp, Heartbeat, RunOp, RunStore, apply, insert_runs, settle

log = logging.getLogger("gateway.store")

_NAME = re.compile(r"^-- name: (\w+)[ \t]*$", re.MULTILINE)


def load_queries(text: str) -> dict[str, str]:
    """Split ``-- name: x`` blocks into ``{"x": sql}``."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"queries.sql: query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


QUERIES = load_queries(resources.files("gateway.store.sqlite").joinpath("queries.sql").read_text("utf-8"))

# Applied in order; PRAGMA user_version counts how many a file has. Append, never edit or reorder.
MIGRATIONS: tuple[str, ...] = ("schema_v1", "schema_v2", "schema_v3", "schema_v4", "schema_v5")

# Errors caused by one write's own data rather than by the disk: a batch that hits one is retried
# write by write, so only the bad write fails (with StoreError) and its neighbours still commit.
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.InterfaceError, ValueError, TypeError)


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


@dataclass(slots=True)
class _EventWrite:
    event: Event
    runs: tuple[Run, ...]
    event_row: dict[str, Any]
    run_rows: list[dict[str, Any]]
    done: asyncio.Future[Recorded]


@dataclass(slots=True)
class _RowWrite:
    query: str  # a name in QUERIES
    row: dict[str, Any]
    done: asyncio.Future[None]


_Write = _EventWrite | _RowWrite | RunOp | JobOp
_OPS = RUN_OPS + JOB_OPS


class Store(RunStore, JobStore, Reader):
    """SQLite in WAL mode with ``synchronous=FULL``: a write returns only once it is on disk."""

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        *,
        location: str,
        max_batch: int,
        on_commit: Callable[[Sequence[Run]], None] | None,
        on_batch: Callable[[int, float, bool], None] | None = None,
    ) -> None:
        """Use :meth:`open`; this takes connections that are already configured and migrated."""
        self._writer = writer
        self._reader = reader
        self._beats = Heartbeat(location, QUERIES["heartbeat_pragmas"], QUERIES["renew_leases"])
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._on_batch = on_batch
        self._claimer: Callable[[], ClaimOp | None] | None = None
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue()  # None asks the writer to stop
        self._inflight: list[_Write] = []
        self._closing = False
        self._refusal = "the store is closed; nothing was written"
        self._stats = StoreStats()
        self._close_lock = asyncio.Lock()
        self._task = asyncio.create_task(self._write_loop(), name="gateway-store-writer")
        self._task.add_done_callback(self._writer_stopped)

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        max_batch: int = 256,
        on_commit: Callable[[Sequence[Run]], None] | None = None,
        on_batch: Callable[[int, float, bool], None] | None = None,
    ) -> Self:
        """Open (creating if needed) the database at ``path``, migrate it, and start the writer.

        ``on_commit`` is called in the event loop, after each durable commit, with the runs it created;
        ``on_batch`` after every transaction with its size, its seconds and whether it committed (metrics).
        """
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        location = os.fspath(path)
        # Create and migrate with plain sqlite3 in a worker thread first: a file that cannot be opened then
        # fails here, not inside aiosqlite, whose worker thread can outlive a failed connect (aiosqlite#241).
        try:
            await asyncio.to_thread(_prepare, location)
            writer = await _connect(location, QUERIES["writer_pragmas"])
            try:
                reader = await _connect(location, QUERIES["reader_pragmas"])
            except BaseException:
                await writer.close()
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {location}: {exc}") from exc
        writer.row_factory = reader.row_factory = sqlite3.Row
        return cls(
            writer, reader, location=location, max_batch=max_batch, on_commit=on_commit, on_batch=on_batch
        )

    @property
    def stats(self) -> StoreStats:
        return self._stats

    async def close(self) -> None:
        """Refuse new writes, commit the queued ones, then close every connection."""
        if not self._closing:
            self._closing = True
            self._queue.put_nowait(None)
        async with self._close_lock:  # two concurrent closes must not close a connection twice
            await asyncio.wait([self._task])
            await self._writer.close()
            await self._reader.close()
            await asyncio.to_thread(self._beats.close)  # waits for a heartbeat in progress

    # -- writes ---------------------------------------------------------------------------------------

    async def record(self, event: Event, runs: Sequence[Run]) -> Recorded:
        """Store ``event`` and its ``runs`` in one durable transaction, unless its dedupe key is known.

        Raises StoreUnavailable if the write could not be committed; nothing of it is then on disk.
        """
        for run in runs:
            if run.event_id != event.id:
                raise ValueError(f"run {run.id} has event_id {run.event_id!r}, expected {event.id!r}")
        # Encode here, in the caller's task, so a bad value fails only its caller, not the batch.
        rows = [run_row(r, event) for r in runs]
        item = _EventWrite(event, tuple(runs), event_row(event), rows, self._loop.create_future())
        self._enqueue(item)
        return await item.done

    async def record_rejection(self, rejection: Rejection) -> None:
        """Store a refused request, through the same batches as events."""
        await self._write_row("insert_rejection", rejection_row(rejection))

    async def probe(self) -> None:
        """Prove the database still takes durable writes (for /readyz); raises StoreUnavailable."""
        await self._write_row("set_meta", {"key": "last_probe", "value": time.time()})

    async def _write_row(self, query: str, row: dict[str, Any]) -> None:
        item = _RowWrite(query, row, self._loop.create_future())
        self._enqueue(item)
        await item.done

    def _enqueue(self, item: _Write) -> None:
        if self._closing:
            raise StoreUnavailable(self._refusal)
        self._queue.put_nowait(item)

    async def _write_loop(self) -> None:
        # Take what is queued now, up to max_batch: never wait to fill a batch.
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._inflight = [item for item in batch if item is not None]
            if any(isinstance(item, _EventWrite | AddOp) and item.runs for item in self._inflight):
                self._ride(self._inflight)  # RunStore: the executor's claim joins a batch that creates runs
            if self._inflight:
                await self._commit(self._inflight)
            self._inflight = []
            if None in batch:
                return

    async def _commit(self, batch: list[_Write]) -> None:
        """The one guarded transaction path: BEGIN IMMEDIATE, the batch, COMMIT, or ROLLBACK."""
        started = time.perf_counter()
        try:
            await self._writer.execute("BEGIN IMMEDIATE")
            recorded = await self._write_batch(self._writer, batch)
            await self._writer.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                await self._writer.execute("ROLLBACK")
            self._observe(len(batch), started, ok=False)
            if isinstance(exc, _DATA_ERRORS) and len(batch) > 1:
                for item in batch:
                    await self._commit([item])
                return
            self._stats = replace(self._stats, failed_batches=self._stats.failed_batches + 1)
            log.error("store: rolled back a batch of %d writes: %s", len(batch), exc)
            for item in batch:
                _fail(item.done, _failure(exc))
            return
        self._observe(len(batch), started, ok=True)
        self._count(batch, recorded)
        created = [run for r in recorded if not r.duplicate for run in r.runs]
        created += [run for op in batch if isinstance(op, AddOp) and op.error is None for run in op.runs]
        if created and self._on_commit is not None:
            try:
                self._on_commit(tuple(created))
            except Exception:
                log.exception("store: the on_commit callback failed")
        answers = iter(recorded)
        for item in batch:
            if isinstance(item, _OPS):
                settle(item)
            else:
                _settle(item.done, next(answers) if isinstance(item, _EventWrite) else None)

    async def _write_batch(self, conn: aiosqlite.Connection, items: Sequence[_Write]) -> list[Recorded]:
        """The body of one batch's transaction: a constant number of statements, whatever its size.

        Subclasses may wrap it to inject faults (raise ``sqlite3.OperationalError``): the batch rolls back.

        Returns one Recorded per event write, in order. Dedupe is decided here, inside the
        transaction, against stored events and against earlier writes of the same batch.
        """
        events = [item for item in items if isinstance(item, _EventWrite)]
        keys = [[w.event.source, w.event.dedupe_key] for w in events if w.event.dedupe_key is not None]
        known: dict[tuple[str, str | None], str] = {}
        if keys:
            rows = await conn.execute_fetchall(QUERIES["find_dedupe_keys"], {"keys": json.dumps(keys)})
            known = {(source, key): event_id for source, key, event_id in rows}
        recorded: list[Recorded] = []
        event_rows: list[dict[str, Any]] = []
        run_rows: list[dict[str, Any]] = []
        for w in events:
            key = (w.event.source, w.event.dedupe_key)
            if w.event.dedupe_key is not None:
                if key in known:
                    recorded.append(Recorded(known[key], (), duplicate=True))
                    continue
                known[key] = w.event.id
            event_rows.append(w.event_row)
            run_rows.extend(w.run_rows)
            recorded.append(Recorded(w.event.id, w.runs, duplicate=False))
        if event_rows:
            await conn.executemany(QUERIES["insert_event"], event_rows)
        if run_rows:
            await insert_runs(conn, run_rows, QUERIES)
        by_query: dict[str, list[dict[str, Any]]] = {}  # rejections, probes
        for item in items:
            if isinstance(item, _RowWrite):
                by_query.setdefault(item.query, []).append(item.row)
        for query, query_rows in by_query.items():
            await conn.executemany(QUERIES[query], query_rows)
        await apply_jobs(conn, [item for item in items if isinstance(item, JOB_OPS)], QUERIES)
        await apply(conn, [item for item in items if isinstance(item, RUN_OPS)], QUERIES)  # claims last
        return recorded

    def _observe(self, size: int, started: float, *, ok: bool) -> None:
        if self._on_batch is not None:
            try:
                self._on_batch(size, time.perf_counter() - started, ok)
            except Exception:
                log.exception("store: the on_batch callback failed")

    def _count(self, batch: list[_Write], recorded: list[Recorded]) -> None:
        fresh = [r for r in recorded if not r.duplicate]
        s = self._stats
        self._stats = replace(
            s,
            commits=s.commits + 1,
            largest_batch=max(s.largest_batch, len(batch)),
            events=s.events + len(fresh),
            duplicates=s.duplicates + len(recorded) - len(fresh),
            runs=s.runs + sum(len(r.runs) for r in fresh),
            rows=s.rows + sum(isinstance(item, _RowWrite) for item in batch),
        )

    def _writer_stopped(self, task: asyncio.Task[None]) -> None:
        # Whatever stopped the writer, nobody may wait for it forever.
        crashed = task.cancelled() or task.exception() is not None
        if crashed:
            log.error("store: the writer stopped", exc_info=None if task.cancelled() else task.exception())
            self._refusal = "the store's writer stopped unexpectedly (see the log); restart the gateway"
        self._closing = True
        orphans: list[_Write | None] = list(self._inflight)
        while not self._queue.empty():
            orphans.append(self._queue.get_nowait())
        for item in orphans:
            if item is not None:
                _fail(item.done, StoreUnavailable(self._refusal))

    # -- reads (the queries are in reader.py) ---------------------------------------------------------

    async def _read(self, query: str, params: dict[str, Any]) -> list[sqlite3.Row]:
        try:
            return list(await self._reader.execute_fetchall(QUERIES[query], params))
        except (sqlite3.Error, ValueError) as exc:  # aiosqlite raises ValueError once closed
            raise StoreError(f"could not read from the database: {exc}") from exc


def _prepare(location: str) -> None:
    """Create the file if needed, switch it to WAL and apply pending migrations. Blocking."""
    with contextlib.closing(sqlite3.connect(location, isolation_level=None)) as conn:
        [(version,)] = conn.execute(QUERIES["read_user_version"]).fetchall()
        try:  # rolled back, it writes nothing: a file SQLite opened read-only fails here, not at each write
            conn.executescript(f"BEGIN IMMEDIATE; PRAGMA user_version = {version}; ROLLBACK;")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.rollback()
            if exc.sqlite_errorname == "SQLITE_READONLY":  # a read-only mount, chattr +i
                fix = "mount it read-write (or chattr -i), or choose another database file"
                raise StoreError(f"{location} is read-only ({exc}): {fix}") from None
            raise
        [(mode,)] = conn.execute(QUERIES["enable_wal"]).fetchall()
        if str(mode).lower() != "wal":
            raise StoreError(
                f"{location}: SQLite could not use WAL journal mode (it stayed {mode!r}); "
                "put the database on a local filesystem"
            )
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{location} has schema version {version}, newer than this gateway knows "
                f"({len(MIGRATIONS)}); upgrade the gateway"
            )
        for number, name in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits any open transaction first, so the transaction lives in the script.
            script = f"BEGIN IMMEDIATE;\n{QUERIES[name]}\nPRAGMA user_version = {number};\nCOMMIT;"
            try:
                conn.executescript(script)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.rollback()
                raise StoreError(f"{location}: migration {name} failed and was rolled back: {exc}") from exc
            log.info("store: migrated %s to schema version %d", location, number)


async def _connect(location: str, pragmas: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(location, isolation_level=None)  # we issue BEGIN/COMMIT ourselves
    try:
        await conn.executescript(pragmas)
    except BaseException:
        await conn.close()
        raise
    return conn


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the caller may have given up waiting (cancelled)
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)


def _failure(exc: Exception) -> StoreError:
    if isinstance(exc, _DATA_ERRORS):
        return StoreError(f"the database refused this write ({type(exc).__name__}: {exc}); nothing was kept")
    return StoreUnavailable(f"the write could not be committed ({exc}); nothing of it was kept")

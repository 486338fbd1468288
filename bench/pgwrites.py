"""The gateway's two hot PostgreSQL writes, through psycopg 3 or asyncpg, for bench/pgdriver.py: group commit
(a batch of deliveries in one transaction) and claim (``FOR UPDATE SKIP LOCKED``), with the schema and the
statements they run. I/O: a database, through each driver's pool."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import psycopg_pool

DRIVERS = ("psycopg", "asyncpg", "asyncpg-noreset")
DRIVER_LABELS = {
    "psycopg": "psycopg 3",
    "asyncpg": "asyncpg",
    "asyncpg-noreset": "asyncpg, pool reset off",  # no RESET ALL etc. round trip at each release
}
# The group commit's idioms, and the drivers each is measured with: "arrays-text" is psycopg's arrays with
# text parameters (``%s``), to show what binary ones (``%b``, asyncpg's only kind) save.
IDIOMS = {"per-row": DRIVERS, "arrays": DRIVERS, "arrays-text": ("psycopg",)}

SCHEMA = """
CREATE TABLE events (
    id text PRIMARY KEY, source text NOT NULL, type text NOT NULL, dedupe_key text NOT NULL,
    body text NOT NULL, received_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX events_dedupe ON events (source, dedupe_key);
CREATE TABLE runs (
    id text PRIMARY KEY, event_id text NOT NULL REFERENCES events (id), task text NOT NULL,
    status text NOT NULL DEFAULT 'queued', input text NOT NULL, created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE jobs (
    id bigserial PRIMARY KEY, queue text NOT NULL, task text NOT NULL, status text NOT NULL,
    run_at timestamptz NOT NULL, input text NOT NULL, worker text, lease_until timestamptz,
    finished_at timestamptz
);
CREATE INDEX jobs_ready ON jobs (queue, run_at, id) WHERE status = 'queued';
"""
# One delivery: the event, and its run only if the event was new (a duplicate inserts nothing).
PER_ROW = """
WITH e AS (
    INSERT INTO events (id, source, type, dedupe_key, body) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id
)
INSERT INTO runs (id, event_id, task, input) SELECT 'run_' || e.id, e.id, 'noop', '{}' FROM e
"""
# A whole batch in one statement; returns the events that were new (what answers 202 rather than 200).
ARRAYS = """
WITH e AS (
    INSERT INTO events (id, source, type, dedupe_key, body)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id
)
INSERT INTO runs (id, event_id, task, input) SELECT 'run_' || e.id, e.id, 'noop', '{}' FROM e
RETURNING event_id
"""
CLAIM = """
UPDATE jobs SET status = 'running', worker = $1, lease_until = now() + interval '30 seconds'
WHERE id IN (
    SELECT id FROM jobs WHERE status = 'queued' AND queue = 'default'
    ORDER BY run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED
)
RETURNING *
"""
DONE = "UPDATE jobs SET status = 'done', finished_at = now() WHERE id = ANY($1)"
JOB_COLUMNS = ("queue", "task", "status", "run_at", "input")


# -- the drivers -------------------------------------------------------------------------------------------


def psycopg_sql(text: str, placeholder: str = "%s") -> str:
    """asyncpg's ``$n`` placeholders as psycopg's ``%s`` (or ``%b``: a binary parameter); the statements here
    use each one once, in order."""
    for n in range(9, 0, -1):
        text = text.replace(f"${n}", placeholder)
    return text


class Driver(Protocol):
    name: str

    async def open(self, dsn: str, size: int) -> None: ...
    async def close(self) -> None: ...
    async def execute(self, sql: str) -> None: ...
    async def scalar(self, sql: str) -> Any: ...
    async def write(self, rows: Sequence[tuple[str, ...]], idiom: str) -> int: ...
    async def fill(self, rows: Sequence[tuple[Any, ...]]) -> None: ...
    async def claim(self, worker: str, limit: int) -> list[int]: ...
    async def done(self, ids: list[int]) -> None: ...


class Psycopg:
    """psycopg 3: an AsyncConnectionPool of autocommit connections; a batch is BEGIN .. COMMIT in one
    pipeline; arrays are binary parameters (``%b``) unless the idiom is "arrays-text"."""

    name = "psycopg"

    async def open(self, dsn: str, size: int) -> None:
        self.pool = psycopg_pool.AsyncConnectionPool(
            dsn, min_size=size, max_size=size, open=False, kwargs={"autocommit": True}
        )
        await self.pool.open(wait=True)

    async def close(self) -> None:
        await self.pool.close()

    async def execute(self, sql: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(sql)

    async def scalar(self, sql: str) -> Any:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(sql)).fetchone()
            return row[0] if row else None

    async def write(self, rows: Sequence[tuple[str, ...]], idiom: str) -> int:
        async with self.pool.connection() as conn, conn.pipeline(), conn.transaction(), conn.cursor() as cur:
            if idiom == "per-row":
                await cur.executemany(psycopg_sql(PER_ROW), rows)
                return len(rows)
            statement = psycopg_sql(ARRAYS, "%s" if idiom == "arrays-text" else "%b")
            await cur.execute(statement, [list(column) for column in zip(*rows, strict=True)])
            return len(await cur.fetchall())

    async def fill(self, rows: Sequence[tuple[Any, ...]]) -> None:
        statement = f"COPY jobs ({', '.join(JOB_COLUMNS)}) FROM STDIN"
        async with self.pool.connection() as conn, conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                await copy.write_row(row)

    async def claim(self, worker: str, limit: int) -> list[int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(psycopg_sql(CLAIM), (worker, limit))
            return [row[0] for row in await cur.fetchall()]

    async def done(self, ids: list[int]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(psycopg_sql(DONE), (ids,))


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Leave the session as it is at release (asyncpg's default resets it: one more round trip each time)."""


class Asyncpg:
    """asyncpg: its pool; a batch is one transaction of executemany (or of one statement over arrays). Its
    pool resets each connection at release (advisory locks, cursors, LISTEN, settings) unless ``reset`` is
    off."""

    def __init__(self, reset: bool = True) -> None:
        self.name = "asyncpg" if reset else "asyncpg-noreset"
        self.reset = reset

    async def open(self, dsn: str, size: int) -> None:
        extra = {} if self.reset else {"reset": _no_reset}
        self.pool: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size, **extra)

    async def close(self) -> None:
        await self.pool.close()

    async def execute(self, sql: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(sql)

    async def scalar(self, sql: str) -> Any:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(sql)

    async def write(self, rows: Sequence[tuple[str, ...]], idiom: str) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            if idiom == "per-row":
                await conn.executemany(PER_ROW, rows)
                return len(rows)
            return len(await conn.fetch(ARRAYS, *[list(column) for column in zip(*rows, strict=True)]))

    async def fill(self, rows: Sequence[tuple[Any, ...]]) -> None:
        async with self.pool.acquire() as conn:
            await conn.copy_records_to_table("jobs", records=rows, columns=JOB_COLUMNS)

    async def claim(self, worker: str, limit: int) -> list[int]:
        async with self.pool.acquire() as conn:
            return [row[0] for row in await conn.fetch(CLAIM, worker, limit)]

    async def done(self, ids: list[int]) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(DONE, ids)


def driver(name: str) -> Driver:
    return Psycopg() if name == "psycopg" else Asyncpg(reset=name == "asyncpg")


# -- group commit ------------------------------------------------------------------------------------------


def body(n: int, size: int) -> str:
    """A GitHub-like push of about ``size`` bytes of JSON, unique by ``n``."""
    head = json.dumps({"ref": "refs/heads/main", "delivery": n, "repository": {"full_name": "acme/api"}})
    pad = max(0, size - len(head) - 16)
    return head[:-1] + f', "padding": "{"x" * pad}"}}'


def delivery(n: int, size: int) -> tuple[str, str, str, str, str]:
    """(event id, source, type, dedupe key, body): the columns of one event row."""
    return (f"evt_{n:012d}", "github", "push", f"delivery-{n}", body(n, size))


@dataclass(frozen=True, slots=True)
class Load:
    """The group commit's load: how many producers, the warm-up before the measured time, the body size."""

    producers: int = 50
    warmup: float = 0.5
    body_bytes: int = 1024


async def group_commit(db: Driver, load: Load, idiom: str, seconds: float, first: int) -> dict[str, Any]:
    """One slice: ``load.producers`` producers and one batcher for ``load.warmup`` + ``seconds``, deliveries
    numbered from ``first``; what was answered inside the measured window (after the warm-up) counts."""
    queue: asyncio.Queue[tuple[tuple[str, ...], asyncio.Future[None]]] = asyncio.Queue()
    answered: list[tuple[float, float]] = []  # (answer time, submit → answer s)
    batches: list[int] = []
    counter = itertools.count(first)
    start = time.monotonic()
    measured_from, stop = start + load.warmup, start + load.warmup + seconds

    async def batcher() -> None:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await db.write([rows for rows, _ in batch], idiom)
            except Exception as exc:  # every producer of the batch hears of it, as its 503 would say
                for _, waiter in batch:
                    waiter.set_exception(exc)
                continue
            batches.append(len(batch))
            for _, waiter in batch:
                waiter.set_result(None)

    async def producer() -> None:
        loop = asyncio.get_running_loop()
        while (sent := time.monotonic()) < stop:
            waiter: asyncio.Future[None] = loop.create_future()
            queue.put_nowait((delivery(next(counter), load.body_bytes), waiter))
            await waiter
            now = time.monotonic()
            answered.append((now, now - sent))

    writer = asyncio.create_task(batcher())
    producers = [asyncio.create_task(producer()) for _ in range(load.producers)]
    await asyncio.sleep(max(0.0, measured_from - time.monotonic()))
    cpu = time.process_time()
    await asyncio.sleep(max(0.0, stop - time.monotonic()))
    cpu = time.process_time() - cpu
    try:
        await asyncio.gather(*producers)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    window = [latency * 1000 for at, latency in answered if measured_from <= at < stop]
    return {
        "count": len(window), "seconds": seconds, "cpu": cpu, "latencies": window, "batches": batches,
        "acknowledged": len(answered),
    }  # fmt: skip


# -- claims ------------------------------------------------------------------------------------------------


def queued_rows(count: int) -> list[tuple[Any, ...]]:
    """The claim table's rows, oldest first (``run_at`` one microsecond apart)."""
    base = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    step = datetime.timedelta(microseconds=1)
    return [("default", "noop", "queued", base + i * step, "{}") for i in range(count)]


async def fill(db: Driver, queued: int) -> dict[str, Any]:
    """The claim table's ``queued`` rows, with COPY; then VACUUM ANALYZE and a checkpoint."""
    started = time.monotonic()
    await db.fill(queued_rows(queued))
    seconds = time.monotonic() - started
    await db.execute("VACUUM ANALYZE jobs")
    await db.execute("CHECKPOINT")
    return {"fill_s": round(seconds, 3)}


async def claims(db: Driver, limit: int, claimers: int, seconds: float) -> dict[str, Any]:
    """One slice: ``claimers`` loops of claim ``limit`` → done, until ``seconds`` are up or no row is left."""
    finished: list[int] = []
    latencies: list[float] = []
    drained = False
    stop = time.monotonic() + seconds

    async def claimer(worker: str) -> None:
        nonlocal drained
        while time.monotonic() < stop:
            sent = time.monotonic()
            ids = await db.claim(worker, limit)
            latencies.append((time.monotonic() - sent) * 1000)
            if not ids:  # nothing left that another claimer does not hold
                drained = True
                return
            await db.done(ids)
            finished.extend(ids)

    cpu, started = time.process_time(), time.monotonic()
    await asyncio.gather(*(claimer(f"worker-{k}") for k in range(claimers)))
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    return {
        "count": len(finished), "seconds": elapsed, "cpu": cpu, "latencies": latencies, "ids": finished,
        "drained": drained,
    }  # fmt: skip


async def stored(db: Driver, sql: Mapping[str, str]) -> dict[str, Any]:
    return {name: await db.scalar(query) for name, query in sql.items()}


async def commit_check(db: Driver) -> dict[str, Any]:
    return await stored(db, {"events": "SELECT count(*) FROM events", "runs": "SELECT count(*) FROM runs"})


async def claim_check(db: Driver) -> dict[str, Any]:
    return await stored(db, {
        "done": "SELECT count(*) FROM jobs WHERE status = 'done'",
        "queued": "SELECT count(*) FROM jobs WHERE status = 'queued'",
    })  # fmt: skip

"""The hand-written baselines: what a user writes without this project, a Starlette handler that stores each
webhook in SQLite with aiosqlite before answering 202. Served like the floor (bench/floor.py: the gateway's
server settings). I/O: a listening socket and a SQLite file.

- ``locked``: one transaction per request under an asyncio.Lock, so one commit (one fsync) per event.
- ``shared``: the same without the lock, on one shared connection: concurrent requests' inserts land in one
  open transaction and a commit makes all of them durable, so commits happen to batch. Nobody designed it;
  it is what the code above does without the lock. (A request may be answered after another's commit made
  its row durable, never before: each request awaits a commit issued after its insert.)

Both use the gateway's durability settings: WAL, ``synchronous=FULL``. Verifying signatures, routing,
deduplicating, runs: none of it, which is the point of the comparison.
Run: ``python -m bench.baselines locked --port 8001 --db /tmp/locked.db [--server uvicorn]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiosqlite
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench import floor
from gateway.web.listen import loop_factory

MODES = ("locked", "shared")
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, received_at REAL, headers TEXT, body BLOB)"
)
INSERT = "INSERT INTO events (received_at, headers, body) VALUES (?, ?, ?)"


async def connect(db: Path) -> aiosqlite.Connection:
    """One connection for the whole process, as a user would open it at start-up."""
    conn = await aiosqlite.connect(db)
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute("PRAGMA synchronous=FULL")  # as the gateway: an fsync at every commit
    await conn.execute(SCHEMA)
    await conn.commit()
    return conn


def make_app(conn: aiosqlite.Connection, mode: str) -> Starlette:
    """The baseline app on ``conn``: POST anything stores it and answers 202; GET /healthz answers 200."""
    if mode not in MODES:
        raise ValueError(f"unknown baseline {mode!r} (choose one of: {', '.join(MODES)})")
    lock = asyncio.Lock() if mode == "locked" else contextlib.nullcontext()

    async def hook(request: Request) -> Response:
        body = await request.body()
        headers = json.dumps(dict(request.headers))
        async with lock:
            await conn.execute(INSERT, (time.time(), headers, body))
            await conn.commit()
        return Response(status_code=202)

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/{path:path}", hook, methods=["POST"]),
        ]
    )


@contextlib.asynccontextmanager
async def opened(db: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await connect(db)
    try:
        yield conn
    finally:
        await conn.close()


async def serve(mode: str, db: Path, host: str, port: int, server: str) -> None:
    async with opened(db) as conn:
        await floor.run(make_app(conn, mode), host, port, server)


def main(argv: Sequence[str] | None = None) -> int:
    parser = floor.parser("python -m bench.baselines", __doc__)
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--db", type=Path, required=True, help="SQLite file (created if missing)")
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory(args.server)) as runner:
        runner.run(serve(args.mode, args.db, args.host, args.port, args.server))
    return 0


if __name__ == "__main__":
    sys.exit(main())

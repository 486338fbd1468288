"""A gateway's database file read from outside, with sqlite3 (read-only where the gateway may still be writing
it): rows of a query, and what a store left on disk. I/O: reads the file."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any


def rows(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """The rows of ``sql`` in ``db``, read on a read-only connection (a running gateway may hold the file)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


def on_disk(db: Path) -> dict[str, Any]:
    """What a separate connection finds in the file: deliveries, runs, orphans either way, integrity."""
    queries = {
        "runs": "SELECT count(*) FROM runs",
        "runs without event": "SELECT count(*) FROM runs WHERE event_id NOT IN (SELECT id FROM events)",
        "events without runs": "SELECT count(*) FROM events WHERE id NOT IN (SELECT event_id FROM runs)",
        "integrity": "PRAGMA integrity_check",
    }
    with contextlib.closing(sqlite3.connect(db)) as conn:
        found = {name: conn.execute(sql).fetchone()[0] for name, sql in queries.items()}
        deliveries = sorted(key for (key,) in conn.execute("SELECT dedupe_key FROM events"))
    return {"deliveries": deliveries, **found}


def stored(*deliveries: str) -> dict[str, Any]:
    """``on_disk`` for these GitHub pushes, each stored once with its two runs, and nothing else."""
    return {
        "deliveries": sorted(deliveries),
        "runs": 2 * len(deliveries),
        "runs without event": 0,
        "events without runs": 0,
        "integrity": "ok",
    }


def damage(db: Path, index: str, leaf: int = 0) -> int:
    """Overwrite the ``leaf``-th leaf page of ``index`` (in key order) with bytes no page starts with, as a
    failing disk or a stray write would; the -wal is checkpointed into the file first, so SQLite reads the
    page from there, and a commit after it makes every connection drop what it cached. The page's number."""
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:  # waits out a gateway's commit
        [(busy, _, _)] = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        assert busy == 0, "a reader held the checkpoint back"
        [(page_size,)] = conn.execute("PRAGMA page_size").fetchall()
        query = "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path"
        pages = [page for (page,) in conn.execute(query, (index,))]
    with db.open("r+b") as file:
        file.seek((pages[leaf] - 1) * page_size)
        file.write(bytes(range(256)) * (page_size // 256))
    with contextlib.closing(sqlite3.connect(db, timeout=10, isolation_level=None)) as conn:
        # A commit of the first page alone: a connection that cached the damaged one reads it again.
        [(version,)] = conn.execute("PRAGMA user_version").fetchall()
        conn.executescript(f"BEGIN IMMEDIATE; PRAGMA user_version = {version}; COMMIT;")
    return int(pages[leaf])


async def peek(store: Any, sql: str, *args: object) -> list[tuple[object, ...]]:
    """The rows of ``sql`` (``?`` placeholders, SQL both databases read) on the store's own read connection,
    SQLite's or PostgreSQL's: what a test checks beyond the interface (a lease, a blocked flag)."""
    from gateway.store.sqlite.store import SQLiteStore

    reader = store._reader  # the store's read connection (ops.db.Db)
    if isinstance(store, SQLiteStore):
        return [tuple(row) for row in await reader.raw.execute_fetchall(sql, args)]
    cursor = await reader.conn.execute(sql.replace("?", "%s"), args)
    return [tuple(row) for row in await cursor.fetchall()]


async def within(conn: Any, sql: str) -> list[tuple[object, ...]]:
    """The rows of ``sql`` (no parameters) on a store's own connection (an ops.db.Db), inside whatever
    transaction it is in: what a batch sees before it commits."""
    if hasattr(conn, "raw"):  # SQLite's
        return [tuple(row) for row in await conn.raw.execute_fetchall(sql)]
    cursor = await conn.conn.execute(sql)
    return [tuple(row) for row in await cursor.fetchall()]


def elsewhere(store: Any, sql: str, *args: object) -> list[tuple[object, ...]]:
    """The rows of ``sql`` (``?`` placeholders) read on a connection of its own, SQLite's or PostgreSQL's: it
    sees only what the store has committed. Blocking: for a check made inside a callback."""
    from gateway.store.sqlite.store import SQLiteStore

    if isinstance(store, SQLiteStore):
        with contextlib.closing(sqlite3.connect(store._files.location)) as conn:
            return conn.execute(sql, args).fetchall()
    import psycopg

    with psycopg.connect(store._address, connect_timeout=10) as pg:
        return pg.execute(sql.replace("?", "%s"), args).fetchall()


def change_elsewhere(store: Any, sql: str, *args: object) -> None:
    """Run one changing statement (``?`` placeholders) on a connection of its own and commit it: a row as an
    older gateway or another process would have left it."""
    from gateway.store.sqlite.store import SQLiteStore

    if isinstance(store, SQLiteStore):
        with contextlib.closing(sqlite3.connect(store._files.location)) as conn, conn:
            conn.execute(sql, args)
        return
    import psycopg

    with psycopg.connect(store._address, connect_timeout=10) as pg:  # commits at the end of the block
        pg.execute(sql.replace("?", "%s"), args)


def count(store: Any, table: str) -> int:
    """How many rows ``table`` holds, as another connection sees it."""
    [(n,)] = elsewhere(store, f"SELECT count(*) FROM {table}")
    return int(str(n))


def at(address: Path | str, sql: str, *args: object) -> list[tuple[object, ...]]:
    """The rows of ``sql`` (``?`` placeholders) on the database at ``address`` (a SQLite file, or a
    postgresql:// address), on a connection of its own; a changing statement is committed."""
    if isinstance(address, Path) or not str(address).startswith("postgresql://"):
        with contextlib.closing(sqlite3.connect(address)) as conn, conn:
            return conn.execute(sql, args).fetchall()
    import psycopg

    with psycopg.connect(str(address), connect_timeout=10) as pg:
        cursor = pg.execute(sql.replace("?", "%s"), args)
        return cursor.fetchall() if cursor.description else []

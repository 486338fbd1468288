"""A gateway's SQLite file read for `gateway copy` (gateway/store/copy.py): its schema version, counts and
first event, its rows page by page, a sample of keys, and the store's own Reads, all in ONE read transaction
on a read-only connection, so what is copied and what it is compared with are one consistent snapshot even
while a gateway serves the file (in WAL mode the reader never blocks its writer, only holds checkpoints back).

I/O: reads the database file; never writes it (not even a rolled-back lock, nor its journal mode).
"""

from __future__ import annotations

import os
import random
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Self

import aiosqlite

from gateway.errors import StoreError
from gateway.store.ops.reads import Reads
from gateway.store.sqlite.db import SQLiteDb
from gateway.store.sqlite.sql import MIGRATIONS, QUERIES

# The tables a copy reads, and the order each is walked in: rowid (the order of insertion, which PostgreSQL's
# seq keeps) where there is one, else its primary key (attempts is WITHOUT ROWID).
ORDER: Mapping[str, tuple[str, ...]] = {
    "events": ("rowid",),
    "runs": ("rowid",),
    "attempts": ("run_id", "number"),
    "rejections": ("rowid",),
    "jobs": ("rowid",),
}
_ROWID = "_copy_rowid"  # the column name rowid is selected under (a table may have a column named rowid)


class Source:
    """The snapshot of one database file. Use :meth:`open`, then :meth:`close`; ``reads`` is
    gateway.store.ops.reads.Reads (what SQLiteStore.reads is) on the snapshot's connection."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, version: int) -> None:
        self._conn = conn
        self.path = path
        self.version = version
        self.reads = Reads(SQLiteDb(conn, str(path)))

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Open ``path`` read-only and start the snapshot. StoreError, in one line naming the file and the
        fix, when it is missing, not a gateway database, or not at this gateway's schema version (older:
        ``gateway migrate --db FILE`` first; a copy never migrates its source)."""
        if not path.exists():
            raise StoreError(f"no database at {path} (--from names the gateway's SQLite file)")
        if not path.is_file():
            raise StoreError(f"{path} is not a file (--from names the gateway's SQLite file)")
        uri = f"file:{urllib.parse.quote(os.path.realpath(path))}?mode=ro"
        try:
            conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        try:
            conn.row_factory = sqlite3.Row
            version = await _begin(conn, path)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path, version)

    async def identity(self) -> dict[str, Any]:
        """What names this source in the destination's ``copied_from``: its real path, its first event (in
        rowid order) and its counts now."""
        first = await self._rows("SELECT id FROM events ORDER BY rowid LIMIT 1")
        return {
            "path": os.path.realpath(self.path),
            "first_event": first[0][0] if first else None,
            "counts": await self.counts(),
        }

    async def counts(self) -> dict[str, int]:
        """Rows per table, in the snapshot."""
        return {table: (await self._rows(f"SELECT count(*) FROM {table}"))[0][0] for table in ORDER}

    async def pages(self, table: str, size: int) -> AsyncIterator[list[dict[str, Any]]]:
        """The table's rows as dicts keyed by column name, ``size`` at a time, in ORDER (keyset paging: each
        page is one indexed range read, however far into the table)."""
        order = ORDER[_known(table)]
        if order == ("rowid",):
            sql = f"SELECT rowid AS {_ROWID}, * FROM {table} WHERE rowid > :after ORDER BY rowid LIMIT :size"
            params: dict[str, Any] = {"after": -(2**63), "size": size}
        else:
            columns = ", ".join(order)
            sql = (
                f"SELECT * FROM {table} WHERE ({columns}) > ({', '.join(':' + c for c in order)}) "
                f"ORDER BY {columns} LIMIT :size"
            )
            params = {"run_id": "", "number": -(2**63), "size": size}
        while rows := await self._rows(sql, params):
            page = [dict(zip(row.keys(), row, strict=True)) for row in rows]
            if order == ("rowid",):
                params["after"] = page[-1][_ROWID]
                for item in page:
                    del item[_ROWID]
            else:
                params.update({c: page[-1][c] for c in order})
            yield page

    async def sample(self, table: str, n: int, rng: random.Random) -> list[Any]:
        """Keys to compare: the first and last row's and those of about ``n`` rows at random points of the
        table (ids; for attempts, the run ids whose attempts to compare)."""
        if _known(table) != "attempts":
            return await self._spread(table, "TRUE", n, rng)
        ends = await self._rows(  # no rowid: the first and last in key order, then runs that have attempts
            "SELECT * FROM (SELECT run_id FROM attempts ORDER BY run_id, number LIMIT 1) UNION ALL "
            "SELECT * FROM (SELECT run_id FROM attempts ORDER BY run_id DESC, number DESC LIMIT 1)"
        )
        keys = [row[0] for row in ends] + await self._spread("runs", "attempts > 0", n, rng)
        return list(dict.fromkeys(keys))

    async def _spread(self, table: str, where: str, n: int, rng: random.Random) -> list[Any]:
        """The ids of the first row at or after the first and last rowid and ``n`` random ones between."""
        [(low, high)] = await self._rows(f"SELECT min(rowid), max(rowid) FROM {table}")
        if low is None:
            return []
        sql = f"SELECT id FROM {table} WHERE rowid >= :at AND {where} ORDER BY rowid LIMIT 1"
        found: list[Any] = []
        for at in [low, high, *(rng.randint(low, high) for _ in range(n))]:
            found += [row[0] for row in await self._rows(sql, {"at": at})]
        return list(dict.fromkeys(found))

    async def _rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[sqlite3.Row]:
        try:
            return list(await self._conn.execute_fetchall(sql, params or {}))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from None

    async def close(self) -> None:
        """End the snapshot (the read transaction) and close the connection."""
        await self._conn.close()


async def _begin(conn: aiosqlite.Connection, path: Path) -> int:
    """Start the read transaction (its first read fixes the snapshot) and check the file is a gateway
    database at this gateway's schema version; that version."""
    where = f"{path}"
    try:
        await conn.executescript(QUERIES["backup_pragmas"] + "\nPRAGMA query_only = ON;")
        await conn.execute("BEGIN")
        tables = {row[0] for row in await conn.execute_fetchall("SELECT name FROM sqlite_master")}
        [(version,)] = await conn.execute_fetchall(QUERIES["read_user_version"])
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorname in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
            raise StoreError(f"{where} is not a gateway database ({exc})") from None
        if exc.sqlite_errorname == "SQLITE_CANTOPEN":  # WAL without its -shm, and none can be created
            raise StoreError(
                f"cannot read {where} ({exc}): with its gateway stopped, reading it needs its -shm file; run "
                "gateway copy as the gateway's user, who may write beside it"
            ) from None
        raise StoreError(f"cannot read {where}: {exc}") from None
    current = len(MIGRATIONS)
    missing = [table for table in ORDER if table not in tables]
    if version == 0 or (missing and version >= current):
        why = "it has no schema version" if version == 0 else f"it has no table {missing[0]}"
        raise StoreError(f"{where} is not a gateway database ({why})")
    if version < current:
        raise StoreError(
            f"{where} has schema version {version}, older than this gateway's ({current}); a copy never "
            f"writes its source: run gateway migrate --db {where} first (with its gateway stopped, or let "
            "gateway serve migrate it at start), then copy again"
        )
    if version > current:
        raise StoreError(
            f"{where} has schema version {version}, newer than this gateway knows ({current}); upgrade the "
            "gateway"
        )
    return int(version)


def _known(table: str) -> str:
    """``table`` when it is one a copy reads (so it may be spliced into SQL); ValueError otherwise."""
    if table not in ORDER:
        raise ValueError(f"not a table gateway copy reads: {table!r}")
    return table

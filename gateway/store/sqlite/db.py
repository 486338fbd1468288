"""ops.db.Db on an aiosqlite connection, with the statements of sql/queries.sql. One writer at a time holds
the file (BEGIN IMMEDIATE), so nothing needs a lock of its own. I/O: the connection.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import aiosqlite

from gateway.store.ops.db import Row
from gateway.store.sqlite.sql import QUERIES


class SQLiteDb:
    """The store's writer or reader connection as the ops see it; ``raw`` is the aiosqlite connection."""

    data_errors: tuple[type[BaseException], ...] = (
        sqlite3.IntegrityError,
        sqlite3.InterfaceError,
        sqlite3.ProgrammingError,
        sqlite3.DataError,
    )
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    shared = False  # BEGIN IMMEDIATE: one transaction at a time writes the file, in every process

    def __init__(self, raw: aiosqlite.Connection, name: str) -> None:
        self.raw = raw
        self.name = name

    async def execute(self, query: str, params: Mapping[str, Any] | None = None) -> int:
        cursor = await self.raw.execute(QUERIES[query], params or {})
        return cursor.rowcount

    async def executemany(self, query: str, rows: Sequence[Mapping[str, Any]]) -> int:
        cursor = await self.raw.executemany(QUERIES[query], rows)
        return cursor.rowcount

    async def fetchall(self, query: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return list(await self.raw.execute_fetchall(QUERIES[query], params or {}))

    async def begin(self) -> None:
        await self.raw.execute("BEGIN IMMEDIATE")

    async def commit(self) -> None:
        await self.raw.execute("COMMIT")

    async def rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error, ValueError):  # ValueError: aiosqlite once closed
            await self.raw.execute("ROLLBACK")

    async def lock(self, names: Sequence[str]) -> None:
        """Nothing to take: the transaction holds the file's one writer lock already."""

    async def close(self) -> None:
        await self.raw.close()

"""Writing `gateway copy`'s pages into a PostgreSQL store (gateway/store/copy.py decides, this writes): what
the destination holds before it is migrated, the source it was copied from (the ``copied_from`` meta row),
one transaction per page with ``INSERT … ON CONFLICT (primary key) DO NOTHING`` (a resumed copy copies
nothing twice), the rejections' identity moved past the copied ids, and counts. Text goes through
db.to_text (PostgreSQL text cannot hold U+0000), BLOBs as bytea; generated columns (seq, dedupe_hash,
key_hash) are left to the database. The statements are built here from each table's columns as the source
holds them (not named in sql/queries.sql); names are quoted as identifiers, values always bound.

I/O: the database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import psycopg
from psycopg import sql

from gateway.errors import StoreError, StoreUnavailable
from gateway.store.postgres.address import without_password as shown
from gateway.store.postgres.db import PgRow, connect, from_text, lock_key, refused, to_text
from gateway.store.postgres.schema import migrate

COPIED_FROM = "copied_from"  # the meta key naming the source a destination was copied from
_LOCK = lock_key("gateway copy")  # held for the whole copy: one copy into a database at a time


@dataclass(frozen=True, slots=True)
class Found:
    """What a destination held before the copy touched it: rows per table that has any, and the source it
    was copied from (the ``copied_from`` JSON), if any."""

    rows: Mapping[str, int]
    copied_from: Mapping[str, Any] | None


class Destination:
    """One connection to the destination, holding the copy lock. Use :meth:`open`, then :meth:`close`."""

    def __init__(self, conn: psycopg.AsyncConnection[PgRow], address: str) -> None:
        self._conn = conn
        self._address = address
        self._columns: dict[str, tuple[list[str], set[str]]] = {}

    @classmethod
    async def open(cls, address: str) -> Self:
        """Connect and take the copy lock (session-level): StoreError when the server cannot be reached
        (naming the address without its password) or another `gateway copy` is writing into it."""
        try:
            conn = await connect(address, "SET synchronous_commit = on")
        except StoreUnavailable as exc:
            raise StoreError(str(exc)) from None
        try:
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS taken", (_LOCK,))
            row = await cursor.fetchone()
        except psycopg.Error as exc:
            await conn.close()
            raise refused(address, exc) from exc
        if row is None or not row["taken"]:
            await conn.close()
            raise StoreError(f"another gateway copy is writing into {shown(address)}: wait for it to end")
        return cls(conn, address)

    async def found(self, tables: Sequence[str]) -> Found:
        """How many rows each of ``tables`` holds (those that exist and have any) and ``copied_from``, read
        before anything is written (a database without the gateway's tables holds nothing)."""
        rows: dict[str, int] = {}
        for table in tables:
            if await self._one("SELECT to_regclass(%s) IS NOT NULL", (table,)):
                count = await self._one(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                if count:
                    rows[table] = count
        source = None
        if await self._one("SELECT to_regclass('meta') IS NOT NULL"):
            value = await self._one("SELECT value FROM meta WHERE key = %s", (COPIED_FROM,))
            source = json.loads(from_text(value)) if value else None
        return Found(rows, source)

    async def migrate(self) -> None:
        """Create the gateway's tables, or apply the migrations it lacks (gateway.store.postgres.schema)."""
        await migrate(self._address)

    async def note_source(self, identity: Mapping[str, Any]) -> None:
        """Record ``identity`` as the source this database is copied from (the ``copied_from`` meta row)."""
        value = to_text(json.dumps(identity, ensure_ascii=False, sort_keys=True))
        await self._execute(
            "INSERT INTO meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (COPIED_FROM, value),
        )

    async def write(
        self, table: str, key: Sequence[str], rows: Sequence[Mapping[str, Any]], *, resuming: bool
    ) -> int:
        """Insert one page of ``table`` in one transaction, skipping rows whose primary key ``key`` is there
        already; how many it inserted. ``resuming`` first asks which keys are there, so a resumed copy sends
        no row twice. StoreError names the row the database refused."""
        if not rows:
            return 0
        names, binary = await self._insertable(table, rows[0])
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.SQL(", ").join(sql.Placeholder() * len(names)),
            sql.SQL(", ").join(map(sql.Identifier, key)),
        )
        try:
            async with self._conn.transaction():
                if resuming:
                    rows = await self._missing(table, key, rows)
                values = [[_value(row[name], name in binary) for name in names] for row in rows]
                async with self._conn.cursor() as cursor:
                    await cursor.executemany(statement, values)
                    return max(cursor.rowcount, 0)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            ids = f"{', '.join(str(rows[0][k]) for k in key)} … {', '.join(str(rows[-1][k]) for k in key)}"
            raise StoreError(f"{shown(self._address)} refused a page of {table} ({ids}): {first}") from exc
        except psycopg.Error as exc:
            raise refused(self._address, exc) from exc

    async def _missing(
        self, table: str, key: Sequence[str], rows: Sequence[Mapping[str, Any]]
    ) -> list[Mapping[str, Any]]:
        """The rows of a page whose key the table does not hold yet (one indexed lookup for the page)."""
        first = key[0]
        query = sql.SQL("SELECT {} FROM {} WHERE {} = ANY(%s)").format(
            sql.SQL(", ").join(map(sql.Identifier, key)), sql.Identifier(table), sql.Identifier(first)
        )
        cursor = await self._conn.execute(query, ([to_text(row[first]) for row in rows],))
        present = {tuple(found) for found in await cursor.fetchall()}
        return [row for row in rows if tuple(row[k] for k in key) not in present]

    async def _insertable(self, table: str, row: Mapping[str, Any]) -> tuple[list[str], set[str]]:
        """The columns of ``row`` to insert, and which of them are bytea; StoreError when the destination has
        no such column, or generates it (a source and destination of different gateway versions)."""
        if table not in self._columns:
            cursor = await self._conn.execute(
                "SELECT column_name, data_type, is_generated, identity_generation "
                "FROM information_schema.columns WHERE table_name = %s AND table_schema = current_schema()",
                (table,),
            )
            columns = {r["column_name"]: r for r in await cursor.fetchall()}
            generated = {n for n, r in columns.items() if r["is_generated"] == "ALWAYS"}
            generated |= {n for n, r in columns.items() if r["identity_generation"] == "ALWAYS"}
            wrong = [n for n in row if n not in columns or n in generated]
            if wrong:
                raise StoreError(
                    f"{shown(self._address)}: the source's column {table}.{wrong[0]} has no place in the "
                    "destination's table (a source and destination of different gateway versions?)"
                )
            binary = {n for n, r in columns.items() if r["data_type"] == "bytea"}
            self._columns[table] = (list(row), binary)
        return self._columns[table]

    async def move_rejection_ids(self) -> None:
        """Set the rejections' identity past the largest copied id, so new rejections get ids after them."""
        await self._execute(
            "SELECT setval(pg_get_serial_sequence('rejections', 'id'), max(id)) FROM rejections "
            "HAVING max(id) > coalesce(pg_sequence_last_value(pg_get_serial_sequence('rejections', 'id')), 0)"
        )

    async def counts(self, tables: Sequence[str]) -> dict[str, int]:
        """Rows per table."""
        return {
            t: await self._one(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))) for t in tables
        }

    async def count_since(self, table: str, column: str, since: float) -> int:
        """Rows of ``table`` whose time ``column`` is at or after ``since`` (written since the copy began)."""
        query = sql.SQL("SELECT count(*) FROM {} WHERE {} >= %s").format(
            sql.Identifier(table), sql.Identifier(column)
        )
        return int(await self._one(query, (since,)))

    async def _one(self, query: str | sql.Composed, params: Sequence[Any] = ()) -> Any:
        try:
            cursor = await self._conn.execute(query, params)
            row = await cursor.fetchone()
        except psycopg.Error as exc:
            raise refused(self._address, exc) from exc
        return None if row is None else row[0]

    async def _execute(self, query: str, params: Sequence[Any] = ()) -> None:
        try:
            await self._conn.execute(query, params)
        except psycopg.Error as exc:
            raise refused(self._address, exc) from exc

    async def close(self) -> None:
        """Close the connection, which lets go of the copy lock."""
        await self._conn.close()


def _value(value: Any, binary: bool) -> Any:
    """A SQLite value as PostgreSQL takes it: bytes for a bytea column, text through to_text."""
    if binary and isinstance(value, str):  # SQLite is typeless: a BLOB column can hold text
        return value.encode("utf-8")
    return to_text(value)

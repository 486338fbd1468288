"""Migrating a PostgreSQL database: the numbered files of sql/migrations/, each recorded in the table
gateway_migrations, applied in one transaction under an advisory lock, so that ten gateways starting at once
migrate once and the others wait, then find nothing to do. I/O: the database.
"""

from __future__ import annotations

import logging

import psycopg

from gateway.errors import StoreError
from gateway.store.ops.statements import Migration
from gateway.store.postgres.address import without_password as shown
from gateway.store.postgres.db import PgRow, connect, refused
from gateway.store.postgres.sql import MIGRATIONS, QUERIES

log = logging.getLogger("gateway.store")


def _check(address: str, applied: list[tuple[int, str]]) -> list[Migration]:
    """The migrations ``applied`` lacks; StoreError when it was migrated by a newer gateway or differently."""
    known = {m.number: m.name for m in MIGRATIONS}
    for number, name in applied:
        if number not in known:
            raise StoreError(
                f"{shown(address)} has migration {name} ({number}), newer than this gateway knows "
                f"({len(MIGRATIONS)}); upgrade the gateway"
            )
        if known[number] != name:
            raise StoreError(
                f"{shown(address)} has migration {number} named {name!r}, where this gateway's is "
                f"{known[number]!r}: it was migrated by another program; use a database of its own"
            )
    done = {number for number, _ in applied}
    return [m for m in MIGRATIONS if m.number not in done]


async def _applied(conn: psycopg.AsyncConnection[PgRow]) -> list[tuple[int, str]]:
    cursor = await conn.execute(QUERIES["has_migrations_table"])
    row = await cursor.fetchone()
    if row is None or not row["present"]:
        return []
    cursor = await conn.execute(QUERIES["applied_migrations"])
    return [(r["number"], r["name"]) for r in await cursor.fetchall()]


async def pending(address: str) -> list[Migration]:
    """What :func:`migrate` would apply, without writing anything (``gateway migrate --check``)."""
    conn = await connect(address, "SET default_transaction_read_only = on")
    try:
        return _check(address, await _applied(conn))
    except psycopg.Error as exc:
        raise refused(address, exc) from exc
    finally:
        await conn.close()


async def migrate(address: str) -> list[Migration]:
    """Apply the migrations the database lacks, all in one transaction under the migration lock; what it
    applied. A failing one rolls every one back and raises StoreError naming it."""
    conn = await connect(address, "SET synchronous_commit = on")
    try:
        migration: Migration | None = None
        try:
            async with conn.transaction():
                await conn.execute(QUERIES["migrate_lock"])
                await conn.execute(QUERIES["create_migrations"])
                todo = _check(address, await _applied(conn))
                for migration in todo:
                    await conn.execute(migration.sql.encode())  # our own file's text, no parameters
                    await conn.execute(
                        QUERIES["note_migration"], {"number": migration.number, "name": migration.name}
                    )
        except psycopg.Error as exc:
            if migration is None:
                raise refused(address, exc) from exc
            raise StoreError(
                f"{shown(address)}: migration {migration.name} failed and was rolled back: {exc}"
            ) from exc
    finally:
        await conn.close()
    if todo and len(todo) == len(MIGRATIONS):
        log.info("store: created the gateway's tables in %s at schema version %d", shown(address), len(todo))
    elif todo:
        steps = ", ".join(m.name for m in todo)
        log.info("store: migrated %s to schema version %d (%s)", shown(address), len(MIGRATIONS), steps)
    return todo

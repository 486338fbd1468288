"""Opening a database file: create it, switch it to WAL, apply the migrations it lacks, and configure each
connection. I/O: the database file.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3

import aiosqlite

from gateway.errors import StoreError
from gateway.store.sqlite.sql import MIGRATIONS, QUERIES

log = logging.getLogger("gateway.store")


def prepare(location: str) -> None:
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
        pending = MIGRATIONS[version:]
        for migration in pending:
            # executescript commits any open transaction first, so the transaction lives in the script.
            script = f"BEGIN IMMEDIATE;\n{migration.sql}\nPRAGMA user_version = {migration.number};\nCOMMIT;"
            try:
                conn.executescript(script)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.rollback()
                raise StoreError(
                    f"{location}: migration {migration.name} failed and was rolled back: {exc}"
                ) from exc
        if pending and version == 0:
            log.info("store: created %s at schema version %d", location, len(MIGRATIONS))
        elif pending:  # one line for the whole upgrade, naming each step
            steps = ", ".join(m.name for m in pending)
            log.info(
                "store: migrated %s from schema version %d to %d (%s)",
                location,
                version,
                len(MIGRATIONS),
                steps,
            )


async def connect(location: str, pragmas: str) -> aiosqlite.Connection:
    """An aiosqlite connection with ``pragmas`` (a QUERIES script) run on it, rows addressable by name."""
    conn = await aiosqlite.connect(location, isolation_level=None)  # we issue BEGIN/COMMIT ourselves
    try:
        await conn.executescript(pragmas)
    except BaseException:
        await conn.close()
        raise
    conn.row_factory = sqlite3.Row
    return conn


def connect_blocking(location: str, pragmas: str) -> sqlite3.Connection:
    """A plain sqlite3 connection for a thread of its own (the heartbeat), in autocommit."""
    conn = sqlite3.connect(location, isolation_level=None, check_same_thread=False)
    try:
        conn.executescript(pragmas)
    except BaseException:
        conn.close()
        raise
    return conn

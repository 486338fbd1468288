"""Opening a database file: create it, check it (``PRAGMA quick_check``, for `gateway serve`), switch it to
WAL, apply the migrations it lacks, and configure each connection; and what to say when SQLite finds it
damaged. I/O: the database file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import urllib.parse

import aiosqlite

from gateway.errors import StoreError
from gateway.store.ops.statements import Migration
from gateway.store.sqlite.sql import MIGRATIONS, QUERIES

log = logging.getLogger("gateway.store")

# Seconds `gateway serve` gives PRAGMA quick_check at start before serving anyway, saying the check was cut
# short. It reads every page: a 525 MB file took 0.2 s from the page cache and 9 s from a cold virtual disk
# (docs/reliability.md), so only a large file read cold is checked in part, and start-up stays bounded.
CHECK_BUDGET = 10.0
_PROBLEMS_SHOWN = 3


def damaged(exc: BaseException) -> bool:
    """Whether SQLite refused because the file's content is damaged (not the disk, not one write's data)."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    return isinstance(exc, sqlite3.DatabaseError) and (
        name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB"
    )


def salvage(location: str) -> str:
    """The fix for a damaged database, as the last part of a message."""
    return (
        "restore a `gateway backup` copy (docs/operations.md#restore), or salvage what SQLite can still "
        f"read: sqlite3 {location} .recover | sqlite3 {location}.recovered, check it with PRAGMA "
        f"quick_check, and move it to {location}"
    )


def prepare(location: str, check: float | None = None) -> None:
    """Create the file if needed, switch it to WAL and apply pending migrations. With ``check`` (seconds), an
    existing file is first checked with PRAGMA quick_check for up to that long. Blocking."""
    _writable_directory(location)
    with contextlib.closing(sqlite3.connect(location, isolation_level=None)) as conn:
        [(version,)] = conn.execute(QUERIES["read_user_version"]).fetchall()
        if check is not None and version > 0:
            quick_check(conn, location, check)
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


def pending(location: str) -> list[Migration]:
    """The migrations the file at ``location`` lacks (all of them for no file), read without writing it
    (``gateway migrate --check``). Raises StoreError for a file from a newer gateway."""
    if not os.path.exists(location):
        return list(MIGRATIONS)
    uri = f"file:{urllib.parse.quote(location)}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            [(version,)] = conn.execute(QUERIES["read_user_version"]).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the database {location}: {exc}") from exc
    if version > len(MIGRATIONS):
        raise StoreError(
            f"{location} has schema version {version}, newer than this gateway knows ({len(MIGRATIONS)}); "
            "upgrade the gateway"
        )
    return list(MIGRATIONS[version:])


def _writable_directory(location: str) -> None:
    """SQLite writes its -wal and -shm beside the database: say so in one line when it cannot."""
    directory = os.path.dirname(os.path.realpath(location))
    if not os.path.isdir(directory):
        problem = "does not exist"
    elif not os.access(directory, os.W_OK | os.X_OK):
        problem = "is not writable"
    else:
        return
    raise StoreError(
        f"cannot use the database {location}: its directory {directory} {problem}, and SQLite writes the "
        "database, its -wal and its -shm there; create it or make it writable, or choose another --db"
    )


def quick_check(conn: sqlite3.Connection, location: str, budget: float) -> None:
    """PRAGMA quick_check on ``conn``, interrupted after ``budget`` seconds (then logged, and not a failure).
    Raises StoreError naming the first problems and the fix. The progress handler cannot stop it: SQLite
    before 3.43 does not call it inside the B-tree check, so a timer interrupts it from another thread."""
    started = time.monotonic()
    timer = threading.Timer(budget, conn.interrupt)
    timer.daemon = True
    timer.start()
    try:
        found = [str(row[0]) for row in conn.execute(QUERIES["quick_check"])]
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorname != "SQLITE_INTERRUPT":
            raise
        log.warning(
            "store: PRAGMA quick_check of %s (%.0f MB) was stopped after %.0f s, part of the file "
            "unchecked; the gateway serves on it. Check it while the gateway is stopped: "
            "sqlite3 %s 'PRAGMA quick_check'",
            *(location, _megabytes(location), budget, location),
        )
        return
    except sqlite3.DatabaseError as exc:
        if not damaged(exc):
            raise
        found = [str(exc)]
    finally:
        timer.cancel()
    # One line each, without the "*** in database main ***" heading SQLite puts before the first.
    problems = [line for text in found for line in text.splitlines() if line and not line.startswith("***")]
    if problems != ["ok"]:
        shown = "; ".join(problems[:_PROBLEMS_SHOWN]) + ("; …" if len(problems) > _PROBLEMS_SHOWN else "")
        many = f"{len(problems)}{'+' if len(problems) >= 100 else ''}"  # quick_check reports at most 100
        raise StoreError(
            f"{location} is corrupted: PRAGMA quick_check found {many} problem(s): {shown}. Nothing was "
            f"served; {salvage(location)}"
        )
    took = time.monotonic() - started
    log.info("store: %s passed PRAGMA quick_check (%.0f MB in %.2f s)", location, _megabytes(location), took)


def _megabytes(location: str) -> float:
    return sum(os.path.getsize(p) for p in (location, f"{location}-wal") if os.path.exists(p)) / 1e6


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
    """A plain sqlite3 connection for a thread of its own (the heartbeat), in autocommit, on the existing file
    only: a database deleted under a serving gateway is not created again, empty, by its heartbeat."""
    uri = f"file:{urllib.parse.quote(location)}?mode=rw"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.executescript(pragmas)
    except BaseException:
        conn.close()
        raise
    return conn

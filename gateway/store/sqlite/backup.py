"""A consistent copy of a database that a running gateway may be writing (`gateway backup`), checked before it
takes its name. Blocking: run it in a thread from async code. I/O: reads the database, writes the copy.

The copy is one ``VACUUM INTO`` on a read-only connection: one read transaction, so one consistent snapshot,
which in WAL mode never blocks the gateway's writer (it only holds checkpoints back while it runs). A stepped
``sqlite3.Connection.backup`` is no better here: every commit of the live gateway between two steps makes it
start again, so under steady traffic it never finishes. The gateway's lock file is not touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import Invalid, StoreError
from gateway.store.sqlite.sql import QUERIES

# Files of a live database besides the database itself: a backup must never be written over one of them.
SIDECARS = ("-wal", "-shm", "-journal", ".lock")
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK}


@dataclass(frozen=True, slots=True)
class Backup:
    """What a backup wrote: the file, its size in bytes, and what the copy holds (read from the copy)."""

    path: Path
    size: int
    schema_version: int
    events: int
    runs: int


def backup(source: Path, target: Path, *, force: bool = False) -> Backup:
    """Copy the database ``source`` to the file ``target``: into a temporary file beside it, fsynced and
    checked (``PRAGMA quick_check``, the source's schema version), then renamed into place. Raises Invalid
    when ``target`` cannot be used (it exists and not ``force``, its directory is missing, it is the live
    database) and StoreError when the database cannot be read or the copy written; nothing is left at
    ``target`` then."""
    _refuse(source, target, force)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as exc:  # a read-only directory, one we may not write into
        raise StoreError(f"cannot write in {target.parent} ({exc.strerror}): choose another PATH") from None
    os.close(fd)  # mode 0600: the copy holds every stored payload and header
    partial = Path(name)
    try:
        version = _copy(source, partial)
        _fsync(partial)
        found = inspect(partial)
        if found.schema_version != version:
            raise StoreError(
                f"{source} was migrated while the backup ran (schema version {version}, the copy has "
                f"{found.schema_version}); run gateway backup again"
            )
        _rename(partial, target, force)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync(target.parent)  # the rename itself is on disk
    return Backup(target, target.stat().st_size, found.schema_version, found.events, found.runs)


def inspect(path: Path) -> Backup:
    """What a database file holds, after ``PRAGMA quick_check``; StoreError when the check fails or the file
    is not a gateway database."""
    try:
        with contextlib.closing(sqlite3.connect(_read_only(path), uri=True)) as conn:
            problems = [row[0] for row in conn.execute(QUERIES["quick_check"])]
            if problems != ["ok"]:
                raise StoreError(f"{path} fails PRAGMA quick_check: {'; '.join(problems[:5])}")
            [(version,)] = conn.execute(QUERIES["read_user_version"]).fetchall()
            [(events, runs)] = conn.execute(QUERIES["backup_counts"]).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"{path} is not a gateway database ({exc})") from None
    return Backup(path, path.stat().st_size, int(version), int(events), int(runs))


def _refuse(source: Path, target: Path, force: bool) -> None:
    if not source.is_file():
        raise StoreError(f"no database at {source} (set --db or GATEWAY_DB to the gateway's database file)")
    if not target.parent.is_dir():
        what = "is not a directory" if target.parent.exists() else "does not exist"
        raise Invalid(f"{target.parent} {what}: create the directory first, or choose another PATH")
    live, written = os.path.realpath(source), os.path.realpath(target)
    if written == live or (target.exists() and os.path.samefile(target, source)):
        raise Invalid(f"{target} is the database to back up: choose another PATH")
    if written in {live + suffix for suffix in SIDECARS}:
        raise Invalid(f"{target} is a file of the live database {source}: choose another PATH")
    if target.is_dir():
        raise Invalid(f"{target} is a directory: name the file to write")
    if target.exists() and not force:
        raise _exists(target)


def _copy(source: Path, partial: Path) -> int:
    """``VACUUM INTO`` ``partial``; the source's schema version, read just before."""
    try:
        with contextlib.closing(sqlite3.connect(_read_only(source), uri=True, isolation_level=None)) as conn:
            conn.executescript(QUERIES["backup_pragmas"])
            [(version,)] = conn.execute(QUERIES["read_user_version"]).fetchall()
            if version == 0:
                raise StoreError(f"{source} is not a gateway database (it has no schema version)")
            conn.execute(QUERIES["vacuum_into"], {"path": str(partial)})
    except sqlite3.Error as exc:
        raise StoreError(f"cannot back up {source}: {exc}{_hint(exc, partial)}") from None
    return int(version)


def _hint(exc: sqlite3.Error, partial: Path) -> str:
    if exc.sqlite_errorname == "SQLITE_FULL":
        return f" ({partial.parent} is full)"
    if exc.sqlite_errorname == "SQLITE_CANTOPEN":  # WAL without its -shm, and none can be created
        return (
            " (with the gateway stopped, reading the database needs its -shm file: run gateway backup as the "
            "gateway's user, who may write beside it)"
        )
    return ""


def _rename(partial: Path, target: Path, force: bool) -> None:
    """Give the checked copy its name. Without ``force`` a file that appeared at ``target`` meanwhile (another
    backup) is kept: a hard link fails where a name exists, where the rename would replace it."""
    if force:
        os.replace(partial, target)
        return
    try:
        os.link(partial, target)
    except FileExistsError:
        raise _exists(target) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:  # a filesystem without hard links: rename, checked just before
            raise StoreError(f"cannot write {target} ({exc.strerror})") from None
        if target.exists():
            raise _exists(target) from None
        os.rename(partial, target)
        return
    partial.unlink()


def _exists(target: Path) -> Invalid:
    return Invalid(f"{target} already exists: choose another PATH, or pass --force to replace it")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_only(path: Path) -> str:
    # A URI, so the connection can never write the live file nor create one that is missing.
    return f"{path.resolve().as_uri()}?mode=ro"

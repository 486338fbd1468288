"""The files a store writes, as they were when it opened them: the database and its -wal and -shm, by device
and inode. A file deleted or replaced under a serving gateway (``rm gateway.db``, ``mv other.db gateway.db``)
is noticed at the next commit; SQLite itself keeps writing the unlinked file and says nothing. Once one is,
what the open connection still reads is copied beside the path and the old -wal and -shm are set aside.
I/O: stat, renames and the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass

import aiosqlite

from gateway.store.sqlite.sql import QUERIES


@dataclass(frozen=True, slots=True)
class FileId:
    """Which file a path names: it stays the same file while it is renamed, not when it is replaced."""

    device: int
    inode: int


def identify(path: str) -> FileId | None:
    """The file at ``path`` (symlinks followed), or None when there is none."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return FileId(info.st_dev, info.st_ino)


@dataclass(frozen=True, slots=True)
class Change:
    """A path that no longer names the file the store opened: ``gateway.db missing, was inode 41``."""

    name: str  # gateway.db, gateway.db-wal or gateway.db-shm
    was: FileId
    now: FileId | None  # None: nothing is at the path
    main: bool  # the database itself, not its -wal or -shm

    def __str__(self) -> str:
        if self.now is None:
            return f"{self.name} missing, was inode {self.was.inode}"
        elsewhere = "" if self.now.device == self.was.device else " on another device"
        return f"{self.name} now inode {self.now.inode}{elsewhere}, was {self.was.inode}"


class DatabaseFiles:
    """The database at ``location`` and its -wal and -shm, as found when constructed (after the store's
    connections opened them; a side file first seen later is taken as found then)."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.real = os.path.realpath(location)  # SQLite names the -wal and -shm after the resolved path
        # The path as given, followed at every look: a symlink pointed elsewhere is a replaced database.
        self._main = os.path.abspath(location)
        self._sides = (f"{self.real}-wal", f"{self.real}-shm")
        self._known: dict[str, FileId] = {}
        self.changed()

    def changed(self) -> Change | None:
        """The first path that no longer names the file the store opened, or None. Three os.stat calls."""
        for path in (self._main, *self._sides):
            found, known = identify(path), self._known.get(path)
            if known is None:
                if found is not None:
                    self._known[path] = found
            elif found != known:
                return Change(os.path.basename(path), known, found, main=path == self._main)
        return None

    def set_aside(self, suffix: str) -> tuple[list[str], list[str]]:
        """Rename the -wal and -shm the store opened, where still at their paths, adding ``suffix``: once the
        database itself is gone from the path they would be read over whatever file is put there, and SQLite
        leaves them in place even at a clean close (it skips its checkpoint for a moved file). What was
        moved (the new names) and what could not be (with why)."""
        moved: list[str] = []
        stuck: list[str] = []
        for path in self._sides:
            if identify(path) != self._known.get(path):
                continue  # not ours (any more): another file's, or gone
            try:
                os.rename(path, path + suffix)
            except OSError as exc:
                stuck.append(f"{os.path.basename(path)} ({exc.strerror})")
            else:
                moved.append(os.path.basename(path + suffix))
        return moved, stuck


def refusal(files: DatabaseFiles, change: Change) -> str:
    """What every write is refused with once the database was deleted or replaced."""
    return (
        f"{files.location} was deleted or replaced while the gateway was serving ({change}): nothing is "
        "acknowledged until the gateway is restarted on a database file"
    )


async def rescue(conn: aiosqlite.Connection, files: DatabaseFiles, change: Change) -> str:
    """Once ``change`` is found: copy what ``conn`` still reads (the file it opened, even unlinked) beside the
    path, and set the old -wal and -shm aside when the database itself is gone. What the log and /readyz
    say: what happened, where the content is, and the fix. Never raises. ``conn`` is outside a
    transaction."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        copy: str | None = await _copy(conn, f"{files.real}.rescued-{stamp}")
        said = [f"Everything it had stored is copied to {copy}"]
    except Exception as exc:  # a full disk, a directory gone with the file
        copy, said = None, [f"No copy of what it had stored could be saved ({exc}); it is lost once it stops"]
    if change.main:
        moved, stuck = files.set_aside(f".old-{stamp}")
        if moved:
            old = " and ".join(name.removesuffix(f".old-{stamp}") for name in moved)
            said.append(
                f"the old file's {old}, which SQLite would read over any file put at {files.location}, are "
                f"renamed {' and '.join(moved)}"
            )
        said += [f"{name} could not be renamed: move it away before it starts again" for name in stuck]
    choices = [] if copy is None else [f"{copy} moved to {files.location} (every delivery it acknowledged)"]
    if change.main and change.now is not None:
        choices.append(f"the file now at {files.location}")
    choices.append("a `gateway backup` copy (docs/operations.md#restore)")
    fix = f"Stop it with SIGTERM, then start it on {', or on '.join(choices)}"
    return f"{refusal(files, change)}. {'; '.join(said)}. {fix}"


async def _copy(conn: aiosqlite.Connection, target: str) -> str:
    """VACUUM INTO ``target``, mode 0600 (it holds every stored payload), fsynced; nothing left on failure."""
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # VACUUM INTO takes an empty file
    try:
        await conn.execute(QUERIES["vacuum_into"], {"path": target})
        await asyncio.to_thread(_fsync, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
    return target


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The SQLite store (interface.Store): one file in WAL mode with ``synchronous=FULL``, so a write returns only
once it is on disk, and only while that file is still the one at its path (files.py). It holds one Writer
(group commit) and one read connection (ops.base.BatchedStore composes the parts: ``runs``, ``jobs`` and
``reads``), and wakes the other processes on the file through a datagram socket (wakeup.py).

Does I/O: the database file and its connections.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Self

import aiosqlite

from gateway.errors import StoreError
from gateway.store.ops.base import BatchedStore
from gateway.store.ops.db import Db
from gateway.store.ops.writer import Op
from gateway.store.sqlite.db import SQLiteDb
from gateway.store.sqlite.files import DatabaseFiles, refusal, rescue
from gateway.store.sqlite.heartbeat import Heartbeat
from gateway.store.sqlite.schema import connect, damaged, prepare, salvage
from gateway.store.sqlite.sql import QUERIES
from gateway.store.sqlite.wakeup import WakeUps

log = logging.getLogger("gateway.store")


class SQLiteStore(BatchedStore):
    """Use :meth:`open`."""

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        *,
        location: str,
        max_batch: int,
        on_batch: Callable[[int, float, bool], None] | None = None,
    ) -> None:
        """Takes connections that are already configured and migrated (:meth:`open` makes them)."""
        self._write_db = SQLiteDb(writer, location)
        self._reader = SQLiteDb(reader, location)
        # A SQLite file is shared only by processes on one host (its locks do not work over a network file
        # system), so the host's clock is the store's.
        beats = Heartbeat(location)
        super().__init__(
            self._write_db, self._reader, beats, time.time, max_batch=max_batch, on_batch=on_batch
        )
        self._lost: str | None = None  # what to say once the file was deleted or replaced: until restarted
        self._corrupt: str | None = None  # what to say once SQLite found the file damaged: until restarted
        self._files = DatabaseFiles(location)  # the connections have opened the file and its -wal and -shm
        self._wakeups = WakeUps(location)

    def listen(self) -> bool:
        """Hear of runs other processes commit to this file (wakeup.py): the attached claimant is told at once
        instead of at its next poll. For a process that runs tasks; False when wake-ups are unavailable."""
        return self._wakeups.listen(self._loop, lambda: self.runs.committed((), elsewhere=True))

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        max_batch: int = 256,
        on_batch: Callable[[int, float, bool], None] | None = None,
        listen: bool = False,
        check: float | None = None,
    ) -> Self:
        """Open (creating if needed) the database at ``path``, migrate it, and start the writer. ``on_batch``
        hears of every transaction: its size, its seconds and whether it committed (metrics); ``listen`` hears
        of runs other processes commit (see :meth:`listen`); ``check`` runs PRAGMA quick_check first for up to
        that many seconds (schema.quick_check: StoreError if the file is corrupted)."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        location = os.fspath(path)
        # Create and migrate with plain sqlite3 in a worker thread first: a file that cannot be opened then
        # fails here, not inside aiosqlite, whose worker thread can outlive a failed connect (aiosqlite#241).
        try:
            await asyncio.to_thread(prepare, location, check)
            writer = await connect(location, QUERIES["writer_pragmas"])
            try:
                reader = await connect(location, QUERIES["reader_pragmas"])
            except BaseException:
                await writer.close()
                raise
        except sqlite3.Error as exc:
            if damaged(exc):  # "file is not a database": its first page is damaged too
                raise StoreError(f"{location} is corrupted ({exc}): {salvage(location)}") from None
            raise StoreError(f"cannot open the database {location}: {exc}") from exc
        store = cls(writer, reader, location=location, max_batch=max_batch, on_batch=on_batch)
        if listen:
            store.listen()
        return store

    async def close(self) -> None:
        """Refuse new writes, commit the queued ones, then close every connection."""
        async with self._close_lock:  # two concurrent closes must not close a connection twice
            await self._writer.close()
            await self._write_db.close()
            await self._reader.close()
            await asyncio.to_thread(self._beats.close)  # waits for a heartbeat in progress
            self._wakeups.close(self._loop)

    def lasting(self) -> str | None:
        """A database file deleted or replaced, or found damaged, fails the probe until the gateway is
        restarted."""
        return self._lost or self._corrupt

    # -- the writer's batches (writer.Batches) ------------------------------------------------------------

    async def landed(self, conn: Db) -> str | None:
        """After each commit: is the file it went to still the one at the path? If not (deleted, replaced),
        save what the connection still reads (files.rescue) and say so once, loudly: the log line and /readyz
        say where it went and what to do; the writes refused from now on say what happened."""
        change = self._files.changed()
        if change is None:
            return None
        self._lost = await rescue(self._write_db.raw, self._files, change)
        log.error("store: %s", self._lost)
        return f"{refusal(self._files, change)} (see the log)"

    def failed(self, batch: list[Op], exc: Exception) -> None:
        """A damaged file does not heal: once SQLite finds it so, /readyz says it until a restart."""
        if self._corrupt is None and damaged(exc):
            location = self._files.location
            self._corrupt = (
                f"{location} is corrupted ({exc}): writes that touch the damaged pages fail, and /readyz "
                "answers 503 until the gateway is restarted on a sound file; stop it, then "
                f"{salvage(location)}"
            )
            log.error("store: %s", self._corrupt)

    def wake_others(self) -> None:
        """Other processes on this file (gateway serve, workers) start the new runs now."""
        self._wakeups.notify()

"""The PostgreSQL store (interface.Store), for several gateways and workers on many hosts: each process
group-commits its batches on one writer connection with ``synchronous_commit`` on (a write returns only once
PostgreSQL made it durable), reads on another, renews leases from a thread on a third, and hears of runs
other processes commit on a fourth (LISTEN/NOTIFY; the executor's poll covers a missed notification). The
ops are SQLite's (ops.base.BatchedStore), with advisory locks where SQLite's single writer serialized.

Does I/O: the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Self

import psycopg

from gateway.errors import StoreError, StoreUnavailable
from gateway.store.ops.base import BatchedStore
from gateway.store.ops.db import Db
from gateway.store.ops.intake import EventWrite
from gateway.store.ops.jobs import AddOp
from gateway.store.ops.writer import Op
from gateway.store.postgres.address import without_password as shown
from gateway.store.postgres.db import PgDb, PgRow, connect, refused
from gateway.store.postgres.heartbeat import PgHeartbeat, ServerClock
from gateway.store.postgres.schema import migrate
from gateway.store.postgres.sql import QUERIES

log = logging.getLogger("gateway.store")
LISTEN_RETRY = (1.0, 30.0)  # seconds before listening again after the connection broke: first, at most


class PostgresStore(BatchedStore):
    """Use :meth:`open`."""

    def __init__(
        self,
        writer: PgDb,
        reader: PgDb,
        *,
        address: str,
        clock: ServerClock,
        max_batch: int,
        on_batch: Callable[[int, float, bool], None] | None = None,
    ) -> None:
        """Takes connections that are already configured, on a migrated database (:meth:`open` makes them)."""
        self._write_db, self._reader = writer, reader
        self._address = address
        self._id = uuid.uuid4().hex  # the payload of this store's notifications: its own are not news
        beats = PgHeartbeat(address, clock)
        super().__init__(writer, reader, beats, clock.now, max_batch=max_batch, on_batch=on_batch)
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        address: str,
        *,
        max_batch: int = 256,
        on_batch: Callable[[int, float, bool], None] | None = None,
        listen: bool = False,
    ) -> Self:
        """Connect to the database at ``address`` (postgresql://user:password@host:port/name), apply the
        migrations it lacks (under an advisory lock) and start the writer. Raises StoreError naming the
        address without its password when it cannot be reached or used."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        try:
            await migrate(address)
            writer = await connect(address, QUERIES["writer_setup"])
            clock = ServerClock()
            try:
                reader = await connect(address, QUERIES["reader_setup"])
                for _ in range(ServerClock.SAMPLES):  # the shortest round trip of a few is the reading kept
                    sent = time.time()
                    cursor = await reader.execute(QUERIES["clock"])
                    [row] = await cursor.fetchall()
                    clock.measure(row["now"], sent, time.time())
            except BaseException:
                await writer.close()
                raise
        except StoreUnavailable as exc:
            raise StoreError(str(exc)) from None
        except psycopg.Error as exc:
            raise refused(address, exc) from exc
        store = cls(
            PgDb(writer, address, QUERIES["writer_setup"]),
            PgDb(reader, address, QUERIES["reader_setup"]),
            address=address,
            clock=clock,
            max_batch=max_batch,
            on_batch=on_batch,
        )
        if listen:
            store.listen()
        return store

    @property
    def name(self) -> str:
        """The address without its password."""
        return shown(self._address)

    def listen(self) -> bool:
        """Hear of runs other processes commit (LISTEN gateway_runs on a connection of its own): the attached
        claimant is told at once instead of at its next poll. Reconnects with backoff when it breaks."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="gateway-store-listener")
        return True

    async def _listen(self) -> None:
        wait, said = LISTEN_RETRY[0], False
        while True:
            conn: psycopg.AsyncConnection[PgRow] | None = None
            try:
                conn = await connect(self._address, QUERIES["listen_runs"])
                if said:
                    log.info("store: listening for new runs on %s again", self.name)
                wait, said = LISTEN_RETRY[0], False
                self.runs.committed((), elsewhere=True)  # whatever was committed while it was not listening
                async for note in conn.notifies():
                    if note.payload != self._id:
                        self.runs.committed((), elsewhere=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not said:
                    log.warning(
                        "store: stopped hearing of new runs on %s (%s); runs committed elsewhere start at "
                        "the next poll until it listens again",
                        self.name,
                        exc,
                    )
                    said = True
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(wait)
            wait = min(wait * 2, LISTEN_RETRY[1])

    async def close(self) -> None:
        """Refuse new writes, commit the queued ones, then close every connection."""
        async with self._close_lock:  # two concurrent closes must not close a connection twice
            await self._writer.close()
            if self._listener is not None:
                self._listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._listener
            await self._write_db.close()
            await self._reader.close()
            await asyncio.to_thread(self._beats.close)  # waits for a heartbeat in progress

    # -- the writer's batches (writer.Batches) ------------------------------------------------------------

    async def write(self, conn: Db, batch: list[Op]) -> None:
        """The batch (ops.batch.write_batch), and a notification to every listener when it creates runs,
        delivered at its commit."""
        await super().write(conn, batch)
        if any(op.created for op in batch if isinstance(op, EventWrite | AddOp)):
            await conn.execute("notify_runs", {"payload": self._id})

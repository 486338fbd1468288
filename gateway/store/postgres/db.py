"""ops.db.Db on a psycopg 3 async connection, with the statements of sql/queries.sql; and what to say of a
PostgreSQL address (never its password). A connection found broken (the server restarted, the network
dropped) is replaced at the next transaction or read, so the store recovers without a restart.

I/O: the connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import RowMaker

from gateway.errors import StoreError, StoreUnavailable
from gateway.store.ops.db import Row
from gateway.store.postgres.address import without_password as shown
from gateway.store.postgres.sql import QUERIES

log = logging.getLogger("gateway.store")
_T = TypeVar("_T")
CONNECT_TIMEOUT = 10  # seconds to reach the server at start and after a connection was lost


# PostgreSQL text cannot hold U+0000, which SQLite's can and senders send (a JSON "\u0000" in a dedupe key
# taken from the body). A str bound with one, or starting with _MARK, is stored as _MARK + the text with
# _MARK doubled and each U+0000 as _MARK "0"; read back, a value starting with _MARK is decoded. The mapping
# is one to one, so keys compare equal exactly when they are equal, and every other text is stored as is.
_MARK = "\ue000"  # a private-use character
_ENCODED = re.compile("\ue000(.)", re.DOTALL)


def to_text(value: Any) -> Any:
    """A parameter as PostgreSQL can hold it (see _MARK)."""
    if isinstance(value, str) and ("\x00" in value or value.startswith(_MARK)):
        return _MARK + value.replace(_MARK, _MARK + _MARK).replace("\x00", _MARK + "0")
    return value


def from_text(value: Any) -> Any:
    """A column's value as it was bound (see _MARK)."""
    if isinstance(value, str) and value.startswith(_MARK):
        return _ENCODED.sub(lambda m: "\x00" if m[1] == "0" else m[1], value[1:])
    return value


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {} if not params else {name: to_text(value) for name, value in params.items()}


class PgRow:
    """A result row: by column name, by position, or unpacked (what sqlite3.Row offers the ops)."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: Mapping[str, int]) -> None:
        self._values = tuple(map(from_text, values))
        self._index = index

    def __getitem__(self, key: str | int, /) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=True))!r})"


def pg_rows(cursor: psycopg.AsyncCursor[Any] | psycopg.Cursor[Any]) -> RowMaker[PgRow]:
    """psycopg's row factory for PgRow."""
    names = [column.name for column in cursor.description or ()]
    index = {name: position for position, name in enumerate(names)}

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, index)

    return make


def lock_key(name: str) -> int:
    """A lock name as the signed 64-bit key of pg_advisory_xact_lock (any text, U+0000 too)."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


async def connect(address: str, setup: str) -> psycopg.AsyncConnection[PgRow]:
    """An autocommit connection (the ops say BEGIN and COMMIT themselves) with ``setup`` run on it. Raises
    StoreUnavailable naming the address without its password."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            address, autocommit=True, connect_timeout=CONNECT_TIMEOUT, row_factory=pg_rows
        )
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot connect to {shown(address)}: {_first_line(exc)}") from None
    try:
        await conn.execute(setup)  # several statements and no parameters: one simple query
    except BaseException:
        await conn.close()
        raise
    return conn


async def _rows(conn: psycopg.AsyncConnection[PgRow], sql: str, params: Mapping[str, Any]) -> list[Row]:
    cursor = await conn.execute(sql, params)
    return list(await cursor.fetchall())


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PgDb:
    """The store's writer or reader connection as the ops see it, reconnecting when it was found broken."""

    # One write's data: a bad value, a constraint, a value past a server limit (an index row too large).
    data_errors: tuple[type[BaseException], ...] = (
        psycopg.DataError,
        psycopg.IntegrityError,
        psycopg.errors.ProgramLimitExceeded,
    )
    errors: tuple[type[BaseException], ...] = (psycopg.Error, StoreUnavailable)
    shared = True  # every gateway and worker writes at once: the ops lock what they decide on

    def __init__(self, conn: psycopg.AsyncConnection[PgRow], address: str, setup: str) -> None:
        self.conn = conn
        self.name = shown(address)
        self._address = address
        self._setup = setup
        self._closed = False

    async def _ready(self) -> psycopg.AsyncConnection[PgRow]:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        if self.conn.broken or self.conn.closed:
            with contextlib.suppress(psycopg.Error):
                await self.conn.close()
            self.conn = await connect(self._address, self._setup)
            log.info("store: connected to %s again", self.name)
        return self.conn

    async def execute(self, query: str, params: Mapping[str, Any] | None = None) -> int:
        cursor = await self.conn.execute(QUERIES[query], _params(params))
        return cursor.rowcount

    async def executemany(self, query: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        async with self.conn.cursor() as cursor:
            await cursor.executemany(QUERIES[query], [_params(row) for row in rows])
            return cursor.rowcount

    async def fetchall(self, query: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        inside = self.conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)
        if inside:
            cursor = await self.conn.execute(QUERIES[query], _params(params))
            return list(await cursor.fetchall())
        return await self._again(lambda conn: _rows(conn, QUERIES[query], _params(params)))

    async def begin(self) -> None:
        await self._again(lambda conn: conn.execute("BEGIN"))

    async def _again(self, step: Callable[[psycopg.AsyncConnection[PgRow]], Awaitable[_T]]) -> _T:
        """``step`` outside a transaction, once more on a new connection if it found this one dead (the
        server restarted since its last use): nothing was written or read, so it is safe to repeat."""
        conn = await self._ready()
        try:
            return await step(conn)
        except psycopg.OperationalError:
            if not conn.broken:
                raise
        return await step(await self._ready())

    async def commit(self) -> None:
        await self.conn.execute("COMMIT")

    async def rollback(self) -> None:
        if self.conn.broken or self.conn.closed:
            return
        with contextlib.suppress(psycopg.Error):
            await self.conn.execute("ROLLBACK")

    async def lock(self, names: Sequence[str]) -> None:
        """pg_advisory_xact_lock on each name's 64-bit hash, all in one statement, in the hashes' order (the
        same in every writer, so none waits on another in a circle)."""
        if names:
            keys = sorted({lock_key(name) for name in names})
            await self.conn.execute(QUERIES["lock"], {"keys": keys})

    async def close(self) -> None:
        self._closed = True
        with contextlib.suppress(psycopg.Error):
            await self.conn.close()


def refused(address: str, exc: psycopg.Error) -> StoreError:
    """What to say when the database refuses what a gateway asks of it at start (a schema, a role)."""
    return StoreError(f"{shown(address)}: {_first_line(exc)}")

"""What the ops need of a database connection: named statements (each database package has its own SQL for
the same names and parameters), rows by column name or position, a transaction, and a lock. SQLite's
(gateway/store/sqlite/db.py) and PostgreSQL's (gateway/store/postgres/db.py) implement it. Declarations only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol


class Row(Protocol):
    """A result row: by column name, by position, or unpacked."""

    def __getitem__(self, key: str | int, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class DataRefused(Exception):
    """A write's own data the database cannot take (raised by an op, not by a driver): like a driver's data
    errors, it fails that write alone."""


class Db(Protocol):
    """One connection, used by one task at a time. Parameters are named (``{"id": …}``) and bound as values;
    JSON lists of ids are passed as text. What a statement raises is the driver's own error: the writer tells
    a write's bad data (``data_errors``) from a database that cannot commit."""

    name: str  # where it is, for messages: a path, or a URL without its password
    data_errors: tuple[type[BaseException], ...]  # one write's data refused: retried write by write
    errors: tuple[type[BaseException], ...]  # every error the driver raises (reads turn them into StoreError)
    shared: bool  # transactions of several processes write at once (PostgreSQL): ops lock what they decide on

    async def execute(self, query: str, params: Mapping[str, Any] | None = None) -> int:
        """Run the named statement; how many rows it changed."""

    async def executemany(self, query: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run the named statement once per row; how many rows they changed in all."""

    async def fetchall(self, query: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """The rows the named statement answers."""

    async def begin(self) -> None:
        """Start a write transaction (SQLite: BEGIN IMMEDIATE, which holds the file's one writer lock)."""

    async def commit(self) -> None:
        """Commit; it returns once the transaction is durable."""

    async def rollback(self) -> None:
        """Roll back; never raises."""

    async def lock(self, names: Sequence[str]) -> None:
        """Hold these names until the transaction ends, so that writers in other processes touching the same
        names wait (a claim's limits, a concurrency key's order). A no-op where one transaction at a time
        writes anyway (SQLite). Take them before the statements they guard read anything."""

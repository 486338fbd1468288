"""Which store an address names, and opening it: a PostgreSQL URL (postgresql://…) opens the PostgreSQL
store, anything else is a SQLite file. psycopg is imported only for a PostgreSQL address (it is the optional
``hookgate[postgres]`` extra). I/O: opening the database.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from gateway.errors import StoreError
from gateway.store.ops.base import BatchedStore
from gateway.store.ops.statements import Migration

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(address: str | os.PathLike[str]) -> bool:
    """Whether ``--db`` names a PostgreSQL database rather than a SQLite file."""
    return os.fspath(address).startswith(POSTGRES_SCHEMES)


def shown(address: str | os.PathLike[str]) -> str:
    """The address as logs, errors and pages may show it: a file's path, or a URL without its password."""
    text = os.fspath(address)
    if not is_postgres(text):
        return text
    from gateway.store.postgres.address import without_password

    return without_password(text)


def absolute(address: str | os.PathLike[str]) -> str:
    """The address as another process in another directory reaches the same database."""
    text = os.fspath(address)
    return text if is_postgres(text) else os.path.abspath(text)


async def open_store(
    address: str | os.PathLike[str],
    *,
    on_batch: Callable[[int, float, bool], None] | None = None,
    listen: bool = False,
    check: float | None = None,
) -> BatchedStore:
    """The store at ``address``, migrated. ``check`` (seconds of PRAGMA quick_check) is SQLite's alone: a
    PostgreSQL server checks its own pages."""
    text = os.fspath(address)
    if is_postgres(text):
        _driver(text)
        from gateway.store.postgres.store import PostgresStore

        return await PostgresStore.open(text, on_batch=on_batch, listen=listen)
    from gateway.store.sqlite.store import SQLiteStore

    return await SQLiteStore.open(text, on_batch=on_batch, listen=listen, check=check)


async def migrations(address: str | os.PathLike[str], *, apply: bool) -> list[Migration]:
    """The migrations the database at ``address`` lacks; with ``apply``, applied (what opening it does)."""
    text = os.fspath(address)
    if is_postgres(text):
        _driver(text)
        from gateway.store.postgres import schema as pg

        return await (pg.migrate(text) if apply else pg.pending(text))
    import asyncio

    from gateway.store.sqlite import schema

    todo = await asyncio.to_thread(schema.pending, text)
    if apply and todo:
        await asyncio.to_thread(schema.prepare, text)
    return todo


def _driver(address: str) -> None:
    """StoreError when psycopg, the optional PostgreSQL driver, is not installed."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise StoreError(
            f"--db {shown(address)} needs the PostgreSQL driver, which is not installed ({exc}): "
            "pip install 'hookgate[postgres]'"
        ) from None

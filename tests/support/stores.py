"""Real SQLite stores that fail on purpose, as a full or failing disk makes them fail. I/O: a real file."""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway.store.sqlite.store import SQLiteStore


class FailingStore(SQLiteStore):
    """A store whose disk 'fails' while ``failing`` is set."""

    failing = False

    async def write(self, conn: Any, batch: list[Any]) -> None:
        if self.failing:
            raise sqlite3.OperationalError("disk I/O error")
        return await super().write(conn, batch)

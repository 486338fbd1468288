"""A gateway's database file read from outside, with sqlite3 (read-only where the gateway may still be writing
it): rows of a query, and what a store left on disk. I/O: reads the file."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any


def rows(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """The rows of ``sql`` in ``db``, read on a read-only connection (a running gateway may hold the file)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


def on_disk(db: Path) -> dict[str, Any]:
    """What a separate connection finds in the file: deliveries, runs, orphans either way, integrity."""
    queries = {
        "runs": "SELECT count(*) FROM runs",
        "runs without event": "SELECT count(*) FROM runs WHERE event_id NOT IN (SELECT id FROM events)",
        "events without runs": "SELECT count(*) FROM events WHERE id NOT IN (SELECT event_id FROM runs)",
        "integrity": "PRAGMA integrity_check",
    }
    with contextlib.closing(sqlite3.connect(db)) as conn:
        found = {name: conn.execute(sql).fetchone()[0] for name, sql in queries.items()}
        deliveries = sorted(key for (key,) in conn.execute("SELECT dedupe_key FROM events"))
    return {"deliveries": deliveries, **found}


def stored(*deliveries: str) -> dict[str, Any]:
    """``on_disk`` for these GitHub pushes, each stored once with its two runs, and nothing else."""
    return {
        "deliveries": sorted(deliveries),
        "runs": 2 * len(deliveries),
        "runs without event": 0,
        "events without runs": 0,
        "integrity": "ok",
    }

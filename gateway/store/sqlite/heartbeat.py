"""The SQLite store's heartbeat (ops.runs.Beats): lease renewals and running attempts' logs from a plain
thread, on a sqlite3 connection of its own. I/O: the database file.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Collection, Sequence
from typing import Any

from gateway.store.sqlite.schema import connect_blocking
from gateway.store.sqlite.sql import QUERIES

log = logging.getLogger("gateway.store")


class Heartbeat:
    """Renews leases from a plain thread, on a sqlite3 connection of its own opened on first use.

    A thread keeps leases alive even while task code blocks the event loop. Thread-safe.
    """

    def __init__(
        self, location: str, pragmas: str = QUERIES["heartbeat_pragmas"], sql: str = QUERIES["renew_leases"]
    ) -> None:
        self._location = location
        self._pragmas = pragmas
        self._sql = sql
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def beat(
        self, run_ids: Collection[str], lease_until: float, *, worker: str | None = None, now: float = 0.0
    ) -> int:
        """Set lease_until on those runs ``worker`` still executes, and the worker's heartbeat to ``now``, in
        one transaction; how many leases. Never raises."""
        with self._lock:
            if self._closed:
                return 0
            try:
                if self._conn is None:
                    self._conn = connect_blocking(self._location, self._pragmas)
                params = {"ids": json.dumps(list(run_ids)), "lease_until": lease_until, "worker": worker}
                with self._conn:  # one transaction, one fsync: the leases and the worker's heartbeat
                    self._conn.execute("BEGIN IMMEDIATE")
                    renewed = self._conn.execute(self._sql, params).rowcount if run_ids else 0
                    if worker is not None:
                        self._conn.execute(QUERIES["beat_worker"], {"worker": worker, "now": now})
                return renewed
            except Exception as exc:
                log.warning("store: could not renew the leases of %d run(s): %s", len(run_ids), exc)
                return 0

    def keep_logs(self, rows: Sequence[dict[str, Any]]) -> int:
        """Write each row's logs to its attempt if still open, in one transaction; how many. Never raises."""
        with self._lock:
            if self._closed or not rows:
                return 0
            try:
                if self._conn is None:
                    self._conn = connect_blocking(self._location, self._pragmas)
                with self._conn:  # one transaction, one fsync, for every attempt of this round
                    self._conn.execute("BEGIN IMMEDIATE")
                    kept = self._conn.executemany(QUERIES["keep_logs"], rows).rowcount
                return kept
            except Exception as exc:
                log.warning("store: could not save the logs of %d running attempt(s): %s", len(rows), exc)
                return 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

"""The PostgreSQL store's heartbeat (ops.runs.Beats): lease renewals, running attempts' logs and the offset
of the server's clock, from a plain thread on a connection of its own (psycopg's blocking API), opened on
first use and again after it broke. I/O: the database.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Collection, Sequence
from typing import Any

import psycopg

from gateway.store.postgres.address import without_password as shown
from gateway.store.postgres.db import CONNECT_TIMEOUT, PgRow, pg_rows, to_text
from gateway.store.postgres.sql import QUERIES

log = logging.getLogger("gateway.store")


class ServerClock:
    """The database server's clock: ``now()`` is this host's clock plus an offset, measured in one round trip
    at open and again at every heartbeat. A reading's error is at most half its round trip, so of the last
    SAMPLES readings the one with the shortest round trip is used (as NTP filters its samples): a slow
    reading on a loaded machine does not move the clock by milliseconds. Leases are set and judged by it, so
    hosts whose clocks disagree still agree on when a lease lapsed."""

    SAMPLES = 8

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self._samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=self.SAMPLES)

    def now(self) -> float:
        return time.time() + self.offset

    def measure(self, server_now: float, sent: float, received: float) -> None:
        """One reading: the server said ``server_now`` between ``sent`` and ``received`` (by this host)."""
        self._samples.append((received - sent, server_now - (sent + received) / 2))
        self.offset = min(self._samples)[1]


class PgHeartbeat:
    """Thread-safe; no call raises."""

    def __init__(self, address: str, clock: ServerClock) -> None:
        self._address = address
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[PgRow] | None = None
        self._closed = False

    def _connection(self) -> psycopg.Connection[PgRow]:
        if self._conn is not None and (self._conn.broken or self._conn.closed):
            self._conn.close()
            self._conn = None
        if self._conn is None:
            self._conn = psycopg.connect(
                self._address, connect_timeout=CONNECT_TIMEOUT, row_factory=pg_rows, autocommit=True
            )
            self._conn.execute(QUERIES["heartbeat_setup"])
        return self._conn

    def beat(
        self, run_ids: Collection[str], lease_until: float, *, worker: str | None = None, now: float = 0.0
    ) -> int:
        """Set lease_until on those runs ``worker`` still executes, and the worker's heartbeat to ``now``, in
        one transaction; measure the server's clock too. How many leases."""
        with self._lock:
            if self._closed:
                return 0
            try:
                conn = self._connection()
                sent = time.time()
                [row] = conn.execute(QUERIES["clock"]).fetchall()
                self._clock.measure(row["now"], sent, time.time())
                params = {
                    "ids": json.dumps(list(run_ids)),
                    "lease_until": lease_until,
                    "worker": to_text(worker),
                }
                with conn.transaction():
                    renewed = conn.execute(QUERIES["renew_leases"], params).rowcount if run_ids else 0
                    if worker is not None:
                        conn.execute(QUERIES["beat_worker"], {"worker": worker, "now": now})
                return renewed
            except Exception as exc:
                log.warning(
                    "store: could not renew the leases of %d run(s) on %s: %s",
                    len(run_ids),
                    shown(self._address),
                    exc,
                )
                self._rollback()
                return 0

    def keep_logs(self, rows: Sequence[dict[str, Any]]) -> int:
        """Write each row's logs to its attempt if still open, in one transaction; how many."""
        with self._lock:
            if self._closed or not rows:
                return 0
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cursor:
                    cursor.executemany(QUERIES["keep_logs"], rows)  # ids and JSON text: no U+0000
                    return cursor.rowcount
            except Exception as exc:
                log.warning("store: could not save the logs of %d running attempt(s): %s", len(rows), exc)
                self._rollback()
                return 0

    def _rollback(self) -> None:
        """After a failure: a broken connection is replaced at the next call (``transaction()`` rolled back
        whatever failed inside it)."""
        if self._conn is not None and self._conn.broken:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

"""The executor's heartbeat thread: it renews the leases of running runs and the worker's own heartbeat,
and saves what running attempts have logged. A thread, not a coroutine: leases stay alive and logs are
saved even while task code blocks the event loop. I/O: the store, through interface.RunQueue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.execution.context import RunLog
from gateway.store.interface import AttemptLog, RunQueue

if TYPE_CHECKING:
    from gateway.execution.executor import ExecutorOptions

Snapshot = Callable[[], tuple[frozenset[str], list[tuple[str, tuple[int, RunLog]]]]]


class Heartbeats:
    """Leases every ``options.heartbeat`` seconds (idle too: the worker's heartbeat says it is alive); the
    logs of running attempts every ``options.log_flush`` seconds, only those that changed, all in one
    write (never a write per line). ``snapshot`` gives the running run ids and each one's attempt and log."""

    def __init__(
        self,
        store: RunQueue,
        options: ExecutorOptions,
        worker_id: str,
        clock: Callable[[], float],
        snapshot: Snapshot,
    ) -> None:
        self.store = store
        self.options = options
        self.worker_id = worker_id
        self.clock = clock
        self.snapshot = snapshot

    def run(self, stop: threading.Event) -> None:
        tick = min(self.options.heartbeat, self.options.log_flush)
        saved: dict[tuple[str, int], int] = {}  # (run, attempt) -> RunLog.changes when last saved
        next_beat = time.monotonic() + self.options.heartbeat
        while not stop.wait(tick):
            ids, running = self.snapshot()
            if time.monotonic() >= next_beat:
                now = self.clock()
                lease_until = now + self.options.lease
                self.store.heartbeat_blocking(ids, lease_until, worker=self.worker_id, now=now)
                next_beat = time.monotonic() + self.options.heartbeat
            changed = []
            for run_id, (attempt, runlog) in running:
                changes = runlog.changes
                if changes != saved.get((run_id, attempt), 0):
                    changed.append(AttemptLog(run_id, attempt, runlog.lines()))
                    saved[run_id, attempt] = changes
            if changed:
                self.store.keep_logs_blocking(changed)
            live = {(run_id, attempt) for run_id, (attempt, _) in running}
            saved = {key: n for key, n in saved.items() if key in live}

"""Which tasks wait for a worker: runs queued for a task (and queue) that no live worker serves. What
`gateway workers`, `gateway runs --waiting-for-worker`, /metrics and intake's warnings read. ``unserved`` is
pure; :class:`ServingWatch` reads the store (I/O) and logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from gateway.aio import wait_first
from gateway.errors import StoreError
from gateway.model import LIVE, TaskWorker
from gateway.store.interface import Reads

log = logging.getLogger("gateway.workers")

LEASE = 30.0  # seconds without a heartbeat after which a worker is lost (the executor's default lease)
WARN_AFTER = 60.0  # seconds a task may go without a live worker before intake warns


@dataclass(frozen=True, slots=True)
class Waiting:
    """Runs of one task in one queue waiting to start, and whether a live worker serves them."""

    task: str
    queue: str
    runs: int
    oldest: float  # created_at of the oldest
    served: bool


def waiting(workers: Sequence[TaskWorker], by_task: Sequence[tuple[str, str, int, float]]) -> list[Waiting]:
    """Each (task, queue) with waiting runs, served or not by a live worker."""
    live = [w for w in workers if w.status == LIVE]
    return [
        Waiting(task, queue, n, oldest, any(w.serves(task, queue) for w in live))
        for task, queue, n, oldest in by_task
    ]


def unserved(rows: Sequence[Waiting]) -> dict[str, int]:
    """Runs waiting for a worker, by task."""
    counts: Counter[str] = Counter()
    for row in rows:
        if not row.served:
            counts[row.task] += row.runs
    return dict(counts)


def live_since(now: float, lease: float = LEASE) -> float:
    return now - lease


class ServingWatch:
    """Intake that runs no tasks itself warns, once per task, when the routes name a task that no live
    worker has served for WARN_AFTER seconds, and again when one serves it. It reads every ``every``
    seconds."""

    def __init__(
        self,
        reads: Reads,
        tasks: Collection[str],
        *,
        every: float = 15.0,
        warn_after: float = WARN_AFTER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reads = reads
        self.tasks = sorted(set(tasks))
        self.every = every
        self.warn_after = warn_after
        self.clock = clock
        self._since: dict[str, float] = {}  # task -> when it was first seen without a live worker
        self._warned: set[str] = set()

    async def check(self) -> list[str]:
        """One look; the tasks it warned about now."""
        now = self.clock()
        workers = await self.reads.workers(live_since=live_since(now))
        live = {task for w in workers if w.status == LIVE for task in w.tasks}
        warned: list[str] = []
        for task in self.tasks:
            if task in live:
                self._since.pop(task, None)
                if task in self._warned:
                    self._warned.discard(task)
                    log.info("task %s has a live worker again", task)
                continue
            first = self._since.setdefault(task, now)
            if task not in self._warned and now - first >= self.warn_after:
                self._warned.add(task)
                warned.append(task)
                log.warning(
                    "no live worker has served task %s for %.0f s: its runs wait queued. Start one: "
                    "gateway worker --routes ... --db ... (see `gateway workers`, "
                    "`gateway runs --waiting-for-worker`)",
                    *(task, now - first),
                )
        return warned

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except StoreError as exc:
                log.debug("could not read the workers: %s", exc)
            await wait_first(stop.wait(), timeout=self.every)

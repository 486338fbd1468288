"""The summaries the dashboard's overview, tasks and rejections pages show: deliveries per minute, runs by
status, recent failures, queues, workers, acks against their budget, and per-task counts, failure rate and
duration percentiles. ``percentile`` and ``task_stats`` are pure; :class:`Stats` reads the store (I/O).

These figures cost the rows in their windows, not the table (a busy hour of 1 M deliveries: seconds; see
docs/benchmarks.md, section 9). :class:`Memo` keeps each a while, longer the more it cost, so any number of
viewers polling the overview every 2 s costs the store a bounded share of its time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from gateway.model import CANCELED, CRASHED, FAILED, FINAL_STATUSES, TIMED_OUT, TaskWorker
from gateway.records.serving import live_since
from gateway.report import AckBudget, DeliveryCount, QueueDepth, TaskDurations
from gateway.store.interface import Store

HOUR = 3600.0
DAY = 86400.0
FAILURES = frozenset({FAILED, TIMED_OUT, CRASHED})  # how a run ends when its task did not succeed
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TaskStats:
    """One task's runs created in a window: by status, how many finished by executing (completed, failed,
    timed out, crashed), the share of those that failed, and the median and 95th percentile of their
    executing seconds (None without finished runs)."""

    task: str
    counts: Mapping[str, int]
    finished: int
    failed: int
    failure_rate: float | None
    p50: float | None
    p95: float | None


@dataclass(frozen=True, slots=True)
class Overview:
    """What the dashboard's first page shows, read at ``now``."""

    now: float
    since: float  # the start of the deliveries' window (an hour)
    deliveries: tuple[DeliveryCount, ...]
    runs_by_status: Mapping[str, int]  # runs created in the last day
    failures_last_hour: Mapping[
        str, int
    ]  # runs created in the last hour that ended failed, timed out, crashed
    queues: tuple[QueueDepth, ...]
    workers: tuple[TaskWorker, ...]
    acks: Mapping[str, AckBudget]

    @property
    def delivered(self) -> dict[str, dict[str, int]]:
        """The window's deliveries summed by source, then by outcome."""
        out: dict[str, dict[str, int]] = {}
        for d in self.deliveries:
            by = out.setdefault(d.source, {})
            by[d.outcome] = by.get(d.outcome, 0) + d.n
        return out

    @property
    def per_minute(self) -> list[tuple[float, int]]:
        """Every minute of the window, oldest first, with its deliveries of every source and outcome."""
        n: dict[float, int] = {}
        for d in self.deliveries:
            n[d.minute] = n.get(d.minute, 0) + d.n
        first = math.floor(self.since / 60) * 60
        return [(m, n.get(m, 0)) for m in (first + 60 * k for k in range(int((self.now - first) // 60) + 1))]


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """The ``p`` percentile (0..100) of ascending values by linear interpolation between closest ranks;
    None for no values."""
    if not ordered:
        return None
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def task_stats(durations: TaskDurations) -> TaskStats:
    counts = dict(durations.counts)
    finished = sum(n for status, n in counts.items() if status in FINAL_STATUSES - {CANCELED})
    failed = sum(n for status, n in counts.items() if status in FAILURES)
    return TaskStats(
        task=durations.task,
        counts=counts,
        finished=finished,
        failed=failed,
        failure_rate=failed / finished if finished else None,
        p50=percentile(durations.durations, 50),
        p95=percentile(durations.durations, 95),
    )


class Memo:
    """Values that are costly to compute, kept for ``max(floor, factor * what computing one took)`` seconds
    of the caller's clock: a figure that took 5 s is kept 50 s, so recomputing it costs at most a tenth of
    the store's time however often it is asked for. One computes at a time; who asks meanwhile waits for it
    and shares it. At most ``size`` keys are kept, the oldest dropped first."""

    def __init__(
        self,
        *,
        floor: float = 5.0,
        factor: float = 10.0,
        size: int = 32,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.floor, self.factor, self.size, self.timer = floor, factor, size, timer
        self._kept: dict[Hashable, tuple[float, float, Any]] = {}  # key: (computed at, kept for, value)
        self._lock = asyncio.Lock()

    async def get(self, key: Hashable, now: float, compute: Callable[[], Awaitable[T]]) -> T:
        async with self._lock:
            kept = self._kept.get(key)
            if kept is not None and 0 <= now - kept[0] < kept[1]:
                value: T = kept[2]
                return value
            started = self.timer()
            value = await compute()
            cost = self.timer() - started
            self._kept.pop(key, None)
            self._kept[key] = (now, max(self.floor, self.factor * cost), value)
            while len(self._kept) > self.size:
                del self._kept[next(iter(self._kept))]
            return value


class Stats:
    """The dashboard's summaries, read from the store and kept a while (:class:`Memo`); ``acks`` come from
    this process's metrics, fresh on every call."""

    def __init__(self, store: Store, memo: Memo | None = None) -> None:
        self.store = store
        self.memo = memo or Memo()

    async def overview(self, *, now: float, acks: Mapping[str, AckBudget]) -> Overview:
        """The overview as computed at most a little while ago (its ``now`` says when), with ``acks`` now."""
        kept = await self.memo.get("overview", now, lambda: self._overview(now))
        return replace(kept, acks=acks)

    async def _overview(self, now: float) -> Overview:
        reads = self.store.reads
        since = now - HOUR
        deliveries = await reads.deliveries_per_minute(since=since, until=now)
        runs = await reads.runs_by_status(since=now - DAY, recent=since)
        return Overview(
            now=now,
            since=since,
            deliveries=tuple(deliveries),
            runs_by_status={status: day for status, (day, _) in runs.items()},
            failures_last_hour={s: hour for s, (_, hour) in runs.items() if s in FAILURES and hour},
            queues=await reads.queue_depths(),
            workers=await self.workers(now=now),
            acks={},
        )

    async def workers(self, *, now: float) -> tuple[TaskWorker, ...]:
        return tuple(await self.store.reads.workers(live_since=live_since(now)))

    async def tasks(self, *, since: float, now: float, per_task: int = 1000) -> list[TaskStats]:
        """Every task with runs created since ``since``; percentiles over its ``per_task`` last finished.
        Kept a while (a window that starts in the same minute is the same figures)."""

        async def compute() -> list[TaskStats]:
            found = await self.store.reads.task_stats(since=since, per_task=per_task)
            return [task_stats(d) for d in found]

        return await self.memo.get(("tasks", math.floor(since / 60), per_task), now, compute)

    async def rejection_reasons(self, *, since: float, now: float) -> dict[str, dict[str, int]]:
        """Rejections received since ``since``, by source then reason; kept a while, as ``tasks``."""

        async def compute() -> dict[str, dict[str, int]]:
            counts = await self.store.reads.counts(since=since, parts=("rejections",))
            rejections: dict[str, dict[str, int]] = counts["rejections"]
            return rejections

        return await self.memo.get(("rejections", math.floor(since / 60)), now, compute)

"""The summaries the dashboard's overview, tasks and rejections pages show: deliveries per minute, runs by
status, recent failures, queues, workers, acks against their budget, and per-task counts, failure rate and
duration percentiles. ``percentile`` and ``task_stats`` are pure; :class:`Stats` reads the store (I/O).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.model import CANCELED, CRASHED, FAILED, FINAL_STATUSES, TIMED_OUT, TaskWorker
from gateway.records.serving import live_since
from gateway.report import AckBudget, DeliveryCount, QueueDepth, TaskDurations
from gateway.store.interface import Store

HOUR = 3600.0
DAY = 86400.0
FAILURES = frozenset({FAILED, TIMED_OUT, CRASHED})  # how a run ends when its task did not succeed


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


class Stats:
    """The dashboard's summaries, read from the store; ``acks`` come from this process's metrics."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def overview(self, *, now: float, acks: Mapping[str, AckBudget]) -> Overview:
        reads = self.store.reads
        since = now - HOUR
        deliveries = await reads.deliveries_per_minute(since=since, until=now)
        day = await reads.counts(since=now - DAY)
        by_status: dict[str, int] = {}
        for per_status in day["runs"].values():
            for status, n in per_status.items():
                by_status[status] = by_status.get(status, 0) + n
        hour = await reads.task_stats(since=since, per_task=1)
        failures: dict[str, int] = {}
        for t in hour:
            for status, n in t.counts.items():
                if status in FAILURES:
                    failures[status] = failures.get(status, 0) + n
        return Overview(
            now=now,
            since=since,
            deliveries=tuple(deliveries),
            runs_by_status=by_status,
            failures_last_hour=failures,
            queues=await reads.queue_depths(),
            workers=await self.workers(now=now),
            acks=acks,
        )

    async def workers(self, *, now: float) -> tuple[TaskWorker, ...]:
        return tuple(await self.store.reads.workers(live_since=live_since(now)))

    async def tasks(self, *, since: float, per_task: int = 1000) -> list[TaskStats]:
        """Every task with runs created since ``since``; percentiles over its ``per_task`` last finished."""
        return [task_stats(d) for d in await self.store.reads.task_stats(since=since, per_task=per_task)]

    async def rejection_reasons(self, *, since: float) -> dict[str, dict[str, int]]:
        """Rejections received since ``since``, by source then reason."""
        counts = await self.store.reads.counts(since=since)
        rejections: dict[str, dict[str, int]] = counts["rejections"]
        return rejections

"""The dashboard's pure summaries: percentiles, a task's failure rate, the overview's sums and minutes."""

from __future__ import annotations

import asyncio

import pytest

from gateway.records.stats import Memo, Overview, percentile, task_stats
from gateway.report import DeliveryCount, TaskDurations

NOW = 1_800_000_000.0  # a minute's start


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([4.0], 95) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 95) == pytest.approx(95.05)


def test_a_tasks_failure_rate_counts_failed_timed_out_and_crashed_among_finished_runs() -> None:
    counts = {"completed": 6, "failed": 1, "timed_out": 1, "crashed": 0, "canceled": 5, "queued": 3}
    stats = task_stats(TaskDurations("deploy", counts, (0.1, 0.2, 0.3, 0.4)))
    assert (stats.finished, stats.failed, stats.failure_rate) == (8, 2, 0.25)
    assert stats.p50 == pytest.approx(0.25) and stats.p95 == pytest.approx(0.385)
    assert stats.counts == counts


def test_a_task_with_nothing_finished_has_no_rate_and_no_percentiles() -> None:
    stats = task_stats(TaskDurations("deploy", {"queued": 2, "canceled": 1}))
    assert (stats.finished, stats.failure_rate, stats.p50, stats.p95) == (0, None, None, None)


def overview(deliveries: tuple[DeliveryCount, ...], *, since: float, now: float) -> Overview:
    return Overview(now, since, deliveries, {}, {}, (), (), {})


def test_the_overview_sums_deliveries_by_source_and_outcome() -> None:
    o = overview(
        (
            DeliveryCount(NOW - 120, "github", "routed", 2),
            DeliveryCount(NOW - 60, "github", "routed", 3),
            DeliveryCount(NOW - 60, "github", "rejected", 1),
            DeliveryCount(NOW, "stripe", "unrouted", 4),
        ),
        since=NOW - 3600,
        now=NOW,
    )
    assert o.delivered == {"github": {"routed": 5, "rejected": 1}, "stripe": {"unrouted": 4}}


def test_every_minute_of_the_window_is_listed_with_zeros_where_nothing_came() -> None:
    o = overview(
        (DeliveryCount(NOW - 120, "github", "routed", 2), DeliveryCount(NOW - 120, "open", "unrouted", 1)),
        since=NOW - 150,  # mid-minute: its minute is the first
        now=NOW + 30,
    )
    assert o.per_minute == [(NOW - 180, 0), (NOW - 120, 3), (NOW - 60, 0), (NOW, 0)]


# -- Memo: costly figures kept a while -------------------------------------------------------------------


class Counting:
    """A compute that takes ``cost`` seconds of the fake timer and answers how many times it ran."""

    def __init__(self, timer: list[float], cost: float) -> None:
        self.timer, self.cost, self.calls = timer, cost, 0

    async def __call__(self) -> int:
        self.calls += 1
        self.timer[0] += self.cost
        await asyncio.sleep(0)  # let a second caller arrive meanwhile
        return self.calls


def memo(timer: list[float], **kwargs: float) -> Memo:
    return Memo(timer=lambda: timer[0], **kwargs)


async def test_a_value_is_kept_for_the_floor_then_computed_again() -> None:
    timer = [0.0]
    m, compute = memo(timer), Counting(timer, cost=0.01)
    assert await m.get("k", NOW, compute) == 1
    assert await m.get("k", NOW + 4.9, compute) == 1
    assert await m.get("k", NOW + 5.0, compute) == 2
    assert await m.get("other", NOW + 5.0, compute) == 3  # keys are kept apart


async def test_a_costly_value_is_kept_ten_times_what_it_cost() -> None:
    timer = [0.0]
    m, compute = memo(timer), Counting(timer, cost=3.0)
    await m.get("k", NOW, compute)
    assert await m.get("k", NOW + 29, compute) == 1
    assert await m.get("k", NOW + 30, compute) == 2


async def test_callers_at_once_share_one_computation() -> None:
    timer = [0.0]
    m, compute = memo(timer), Counting(timer, cost=1.0)
    got = await asyncio.gather(*(m.get("k", NOW, compute) for _ in range(5)))
    assert got == [1] * 5 and compute.calls == 1


async def test_a_clock_that_went_back_computes_again_and_old_keys_are_dropped() -> None:
    timer = [0.0]
    m, compute = memo(timer, size=2), Counting(timer, cost=0.0)
    await m.get("a", NOW, compute)
    assert await m.get("a", NOW - 1, compute) == 2
    await m.get("b", NOW, compute)
    await m.get("c", NOW, compute)  # "a", the oldest, makes room
    assert compute.calls == 4
    assert await m.get("a", NOW, compute) == 5
    assert await m.get("c", NOW, compute) == 4  # still kept

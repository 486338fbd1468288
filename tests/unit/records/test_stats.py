"""The dashboard's pure summaries: percentiles, a task's failure rate, the overview's sums and minutes."""

from __future__ import annotations

import pytest

from gateway.records.stats import Overview, percentile, task_stats
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

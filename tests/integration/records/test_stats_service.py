"""Service.stats on both stores: the overview's figures, per-task stats and rejection reasons read from real
records, and Service.runs_of for an events listing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.model import FAILED
from gateway.records.service import Service
from gateway.report import AckBudget
from gateway.routes.load import Config
from tests.support.clock import HOUR, NOW, Clock
from tests.support.records import deliver, finish, rejection
from tests.support.routes import ROUTES_V1

pytestmark = pytest.mark.both_stores
OpenStore = Callable[..., Any]
LoadConfig = Callable[..., Config]


async def test_the_overview_reads_the_last_hour_and_day(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    done = await deliver(store, config, at=NOW - 600)
    failed = await deliver(store, config, at=NOW - 300)
    await deliver(store, config, at=NOW - 60)  # stays queued
    old = await deliver(store, config, at=NOW - 5 * HOUR)  # in the day, not the hour
    await finish(store, [done.runs[0].id, old.runs[0].id], at=NOW - 200)
    await finish(store, [failed.runs[0].id], at=NOW - 100, outcome=FAILED)
    await store.record_rejection(
        rejection(
            "github",
            at=NOW - 30,
        )
    )
    acks = {"github": AckBudget(10.0, 3, 3, 0)}

    o = await Service(store, config, clock=Clock()).stats.overview(now=NOW, acks=acks)

    assert o.delivered == {"github": {"routed": 3, "rejected": 1}}
    assert sum(n for _, n in o.per_minute) == 4 and len(o.per_minute) == 61
    assert o.runs_by_status == {"completed": 2, "failed": 1, "queued": 1}
    assert o.failures_last_hour == {"failed": 1}
    [queue] = o.queues
    assert (queue.waiting, queue.oldest_ready_at) == (1, NOW - 60)
    assert o.workers == () and o.acks == acks


async def test_task_stats_and_rejection_reasons(open_store: OpenStore, load_config: LoadConfig) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    a = await deliver(store, config, at=NOW - 60)
    b = await deliver(store, config, at=NOW - 50)
    await finish(store, [a.runs[0].id], at=NOW - 10)
    await finish(store, [b.runs[0].id], at=NOW - 10, outcome=FAILED)
    for reason in ("bad_signature", "bad_signature", "stale_timestamp"):
        await store.record_rejection(rejection("github", at=NOW - 20, reason=reason))
    await store.record_rejection(
        rejection(
            "stripe",
            at=NOW - 2 * HOUR,
        )
    )
    service = Service(store, config, clock=Clock())

    [deploy] = await service.stats.tasks(since=NOW - HOUR, now=NOW)
    assert (deploy.task, deploy.finished, deploy.failed, deploy.failure_rate) == ("deploy-preview", 2, 1, 0.5)
    assert deploy.p50 is not None and deploy.p95 is not None and deploy.p50 <= deploy.p95
    assert await service.stats.rejection_reasons(since=NOW - HOUR, now=NOW) == {
        "github": {"bad_signature": 2, "stale_timestamp": 1}
    }
    runs = await service.runs_of([a.event_id, b.event_id, "evt_missing"])
    assert {k: [r.id for r in v] for k, v in runs.items() if v} == {
        a.event_id: [a.runs[0].id],
        b.event_id: [b.runs[0].id],
    }


async def test_the_overview_is_kept_a_while_then_read_again_with_fresh_acks(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    stats = Service(store, config, clock=Clock()).stats
    await deliver(store, config, at=NOW - 60)
    first = await stats.overview(now=NOW, acks={})
    await deliver(store, config, at=NOW - 30)
    acks = {"github": AckBudget(10.0, 1, 1, 0)}
    kept = await stats.overview(now=NOW + 1, acks=acks)
    assert kept.now == first.now == NOW and kept.delivered == {"github": {"routed": 1}}
    assert kept.acks == acks  # acks are the process's own, never kept
    fresh = await stats.overview(now=NOW + 5, acks={})
    assert fresh.now == NOW + 5 and fresh.delivered == {"github": {"routed": 2}}


async def test_counts_read_only_the_parts_asked_for(open_store: OpenStore, load_config: LoadConfig) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    await deliver(store, config, at=NOW - 60)
    await store.record_rejection(
        rejection(
            "github",
            at=NOW - 20,
        )
    )
    runs = await store.reads.counts(since=NOW - HOUR, parts=("runs",))
    assert runs == {"events": {}, "runs": {"deploy-preview": {"queued": 1}}, "rejections": {}, "queues": {}}
    everything = await store.reads.counts(since=NOW - HOUR)
    assert everything["events"] == {"github": {"routed": 1}}
    assert everything["rejections"] == {"github": {"bad_signature": 1}}
    assert [q["waiting"] for q in everything["queues"].values()] == [1]
    with pytest.raises(ValueError, match="unknown parts"):
        await store.reads.counts(parts=("evnts",))

"""The dashboard's reads on both stores: deliveries per minute by source and outcome, per-task run counts and
durations, and the exact text search over event ids, dedupe keys (a retired one included) and run ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from gateway.model import COMPLETED, FAILED, AttemptEnd, EventFilter
from gateway.records.service import Service
from gateway.report import DeliveryCount
from gateway.routes.load import Config
from tests.support.claims import claim_runs
from tests.support.clock import HOUR, NOW, Clock
from tests.support.records import deliver, plain_event, rejection
from tests.support.routes import ROUTES_V1

pytestmark = pytest.mark.both_stores
OpenStore = Callable[..., Any]
LoadConfig = Callable[..., Config]
MINUTE = NOW - NOW % 60  # NOW is on a minute's start already; say so rather than rely on it


async def run_for(store: Any, run_id: str, *, start: float, seconds: float, outcome: str) -> None:
    """Claim one run at ``start`` and end its attempt ``seconds`` later."""
    [c] = await claim_runs(store.runs, now=start, limit=1, lease=600.0, accept=lambda r: r.id == run_id)
    error = None if outcome == COMPLETED else {"type": "RuntimeError", "message": "boom"}
    await store.runs.finish_attempt(
        AttemptEnd(run_id, c.attempt, start + seconds, outcome, outcome, error=error)
    )


# -- deliveries per minute ----------------------------------------------------------------------------------


async def test_deliveries_are_counted_by_minute_source_and_outcome_without_replays_or_triggers(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    first = await deliver(store, config, at=MINUTE + 1)
    await deliver(store, config, at=MINUTE + 59.5)
    await deliver(store, config, "open", {}, at=MINUTE + 30)  # unrouted: no route for `open` in v1
    await deliver(store, config, at=MINUTE + 61)
    await store.record_rejection(rejection("github", at=MINUTE + 62))
    await store.record_rejection(rejection("github", at=MINUTE + 63))
    await store.record(plain_event(1, at=MINUTE + 5, source="@api"), [])  # a trigger, not a delivery
    await Service(store, config, clock=Clock(MINUTE + 70)).replay(first.event_id)  # a replay, neither
    await deliver(store, config, at=MINUTE - 1)  # before the window
    await deliver(store, config, at=MINUTE + 200)  # after it

    got = await store.reads.deliveries_per_minute(since=MINUTE, until=MINUTE + 120)

    assert got == [
        DeliveryCount(MINUTE, "github", "routed", 2),
        DeliveryCount(MINUTE, "open", "unrouted", 1),
        DeliveryCount(MINUTE + 60, "github", "rejected", 2),
        DeliveryCount(MINUTE + 60, "github", "routed", 1),
    ]
    assert all(isinstance(d.minute, float) and isinstance(d.n, int) for d in got)


async def test_the_window_includes_both_ends_and_an_empty_one_is_empty(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    await deliver(store, config, at=MINUTE)
    await deliver(store, config, at=MINUTE + 120)
    got = await store.reads.deliveries_per_minute(since=MINUTE, until=MINUTE + 120)
    assert [(d.minute, d.n) for d in got] == [(MINUTE, 1), (MINUTE + 120, 1)]
    assert await store.reads.deliveries_per_minute(since=MINUTE + 1, until=MINUTE + 119) == []


# -- task stats ---------------------------------------------------------------------------------------------


async def test_task_stats_count_runs_by_status_and_list_finished_durations_ascending(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    runs = [(await deliver(store, config, at=NOW + i)).runs[0].id for i in range(5)]
    await run_for(store, runs[0], start=NOW + 10, seconds=3.0, outcome=COMPLETED)
    await run_for(store, runs[1], start=NOW + 20, seconds=0.5, outcome=COMPLETED)
    await run_for(store, runs[2], start=NOW + 30, seconds=2.0, outcome=FAILED)
    await Service(store, config, clock=Clock(NOW + 40)).cancel(runs[3])  # canceled: no duration
    old = await deliver(store, config, at=NOW - HOUR)  # created before the window
    await run_for(store, old.runs[0].id, start=NOW + 50, seconds=9.0, outcome=COMPLETED)

    [deploy] = await store.reads.task_stats(since=NOW)

    assert deploy.task == "deploy-preview"
    assert dict(deploy.counts) == {"completed": 2, "failed": 1, "canceled": 1, "queued": 1}
    assert deploy.durations == pytest.approx((0.5, 2.0, 3.0))


async def test_task_stats_take_the_durations_of_the_most_recently_finished_runs_only(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    runs = [(await deliver(store, config, at=NOW + i)).runs[0].id for i in range(4)]
    for i, (run_id, seconds) in enumerate(zip(runs, (1.0, 8.0, 4.0, 2.0), strict=True)):
        await run_for(store, run_id, start=NOW + 10 * (i + 1), seconds=seconds, outcome=COMPLETED)

    [deploy] = await store.reads.task_stats(since=NOW, per_task=2)

    assert deploy.counts == {"completed": 4}
    assert deploy.durations == pytest.approx((2.0, 4.0))  # the last two to finish, shortest first
    assert await store.reads.task_stats(since=NOW + HOUR) == []


async def test_runs_by_status_counts_the_day_and_the_later_hour_in_one_read(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    old = await deliver(store, config, at=NOW - 5 * HOUR)
    recent = await deliver(store, config, at=NOW - 60)
    await deliver(store, config, at=NOW - 30)
    await deliver(store, config, at=NOW - 2 * 24 * HOUR)  # before the day
    await run_for(store, old.runs[0].id, start=NOW - 10, seconds=1.0, outcome=FAILED)
    await run_for(store, recent.runs[0].id, start=NOW - 5, seconds=1.0, outcome=FAILED)

    got = await store.reads.runs_by_status(since=NOW - 24 * HOUR, recent=NOW - HOUR)

    assert got == {"failed": (2, 1), "queued": (1, 1)}
    assert await store.reads.runs_by_status(since=NOW, recent=NOW) == {}


async def test_task_stats_refuse_a_limit_below_one(open_store: OpenStore) -> None:
    store = await open_store()
    with pytest.raises(ValueError, match="limit must be at least 1"):
        await store.reads.task_stats(since=NOW, per_task=0)


# -- text search ------------------------------------------------------------------------------------------


async def ids(store: Any, text: str, **f: Any) -> list[str]:
    return [e.id for e in await store.reads.events_page(EventFilter(text=text, **f), before=None, limit=50)]


async def test_text_finds_an_event_by_its_id_its_dedupe_key_or_a_run_id_exactly(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    a = await deliver(store, config, at=NOW)
    b = await deliver(store, config, at=NOW + 1)
    event_b = await store.reads.get_event(b.event_id)
    assert event_b is not None and event_b.dedupe_key is not None

    assert await ids(store, a.event_id) == [a.event_id]
    assert await ids(store, event_b.dedupe_key) == [b.event_id]
    assert await ids(store, b.runs[0].id) == [b.event_id]
    assert await ids(store, event_b.dedupe_key[:-1]) == []  # exact, not a prefix
    assert await ids(store, "%") == [] and await ids(store, "_") == []  # no LIKE wildcards
    assert await ids(store, "' OR 1=1 --") == []
    assert await ids(store, a.event_id, source="open") == []  # the other filters still apply
    assert await store.reads.count_events(EventFilter(text=b.runs[0].id)) == 1
    after = await store.reads.events_after(EventFilter(text=a.event_id), after=None, upto=NOW + 10, limit=10)
    assert [e.id for e in after] == [a.event_id]


async def test_text_finds_an_event_by_a_dedupe_key_retired_past_its_window(open_store: OpenStore) -> None:
    store = await open_store()
    github = dict(source="github", event_type="push", verification="verified:github")
    first = replace(plain_event(1, at=NOW), id="evt_first", dedupe_key="key-1", **github)
    later = replace(plain_event(2, at=NOW + 2 * HOUR), id="evt_later", dedupe_key="key-1", **github)
    await store.record(first, [], dedupe_window=HOUR)
    assert not (await store.record(later, [], dedupe_window=HOUR)).duplicate

    assert await ids(store, "key-1") == ["evt_later", "evt_first"]  # the retired key is shown and found
    assert await store.reads.count_events(EventFilter(text="key-1")) == 2
    assert await ids(store, "key-1", since=NOW + HOUR) == ["evt_later"]

"""A source's dedupe window on a real SQLite file: a key older than the window is stored again (the older
event keeps showing its key), a key within it is a duplicate, without a window a key holds as long as its
event, and the decision stays atomic within one batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.model import Event, Headers, Payload
from tests.support.clock import HOUR, NOW
from tests.support.database import peek

pytestmark = pytest.mark.both_stores

OpenStore = Callable[..., Any]
WINDOW = 24 * HOUR


def delivery(name: str, at: float, key: str | None = "d-1", source: str = "github") -> Event:
    return Event(
        id=f"evt_{name}",
        source=source,
        event_type="push",
        dedupe_key=key,
        status="unrouted",
        received_at=at,
        method="POST",
        url=f"https://hooks.example.com/hooks/{source}",
        headers=Headers([("X-GitHub-Delivery", key or "")]),
        query=(),
        body=b"{}",
        payload=Payload("json", {}),
        verification="verified:github",
    )


async def test_a_key_older_than_the_window_is_stored_again_and_the_older_event_keeps_showing_it(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = await open_store()
    first = await store.record(delivery("first", NOW), [], dedupe_window=WINDOW)
    within = await store.record(delivery("within", NOW + WINDOW - 1), [], dedupe_window=WINDOW)
    past = await store.record(delivery("past", NOW + WINDOW + 1), [], dedupe_window=WINDOW)
    after = await store.record(delivery("after", NOW + WINDOW + 2), [], dedupe_window=WINDOW)

    assert (first.duplicate, within.duplicate, within.event_id) == (False, True, "evt_first")
    assert (past.duplicate, past.event_id) == (False, "evt_past")
    assert (after.duplicate, after.event_id) == (True, "evt_past")  # the key now names the newer event
    old = await store.reads.get_event("evt_first")
    assert old is not None and old.dedupe_key == "d-1"  # what it arrived with, for people and listings
    rows = await peek(store, "SELECT id, dedupe_key, retired_key FROM events ORDER BY received_at")
    assert rows == [("evt_first", None, "d-1"), ("evt_past", "d-1", None)]


async def test_without_a_window_a_key_holds_as_long_as_its_event_is_kept(open_store: OpenStore) -> None:
    store = await open_store()
    await store.record(delivery("first", NOW), [])
    years = await store.record(delivery("later", NOW + 3 * 365 * 24 * HOUR), [])
    assert (years.duplicate, years.event_id) == (True, "evt_first")
    other = await store.record(delivery("other", NOW + 1, source="stripe"), [], dedupe_window=1.0)
    assert not other.duplicate  # keys are per source


async def test_within_one_batch_an_expired_key_is_stored_once_and_its_twin_is_its_duplicate(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    await store.record(delivery("first", NOW), [], dedupe_window=WINDOW)
    at = NOW + 2 * WINDOW
    twins = await asyncio.gather(
        store.record(delivery("a", at), [], dedupe_window=WINDOW),
        store.record(delivery("b", at), [], dedupe_window=WINDOW),
        store.record(delivery("c", at, key="d-2"), [], dedupe_window=WINDOW),
    )
    assert store.stats.commits == 2  # the three shared one transaction
    assert [(t.event_id, t.duplicate) for t in twins] == [("evt_a", False), ("evt_a", True), ("evt_c", False)]
    assert await store.reads.count_events() == 3

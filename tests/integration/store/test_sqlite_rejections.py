"""Rejected requests kept for replay on a real SQLite file: the per-source cap drops the oldest first, a
flood turns over at most a quarter of the cap an hour, prunes give the room back, a recovery frees it, and
files from before migration 0006 keep their rejections."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.model import EVICTED, NO_ROOM, Headers, Inbound, Rejection, RejectionKeep
from gateway.store.rows import rejection_to_row
from gateway.store.sqlite.sql import MIGRATIONS
from gateway.store.sqlite.store import SQLiteStore
from tests.support.clock import HOUR, NOW
from tests.support.database import peek
from tests.support.records import plain_event

pytestmark = pytest.mark.both_stores

OpenStore = Callable[..., Any]
BODY = 1000 - 175  # with its URL and headers, each request below takes exactly 1000 bytes
KEEP = RejectionKeep(10_000)  # ten requests; a turnover of 2,500 bytes (two and a half) an hour


def rejected(n: int, *, at: float, source: str = "github") -> Rejection:
    """The ``n``-th forged push of ``source``, received at ``at``, with its whole request."""
    request = Inbound(
        "POST",
        f"https://hooks.example.com/hooks/{source}",
        Headers([("Content-Type", "application/json"), ("X-Hub-Signature-256", "sha256=" + "0" * 64)]),
        (b'{"n": %d' % n).ljust(BODY - 1) + b"}",
        remote_addr="198.51.100.7",
    )
    return Rejection(
        source,
        "bad_signature",
        "does not match",
        at,
        "198.51.100.7",
        request.body[:16],
        BODY,
        request=request,
    )


async def kept_ids(store: SQLiteStore, source: str = "github") -> list[int]:
    return [r.id for r in await store.reads.kept_rejections(source=source) if r.id is not None]


async def space(store: SQLiteStore) -> dict[str, int]:
    rows = await store.reads.list_rejections(limit=500)
    totals: dict[str, int] = {}
    for r in rows:
        totals[r.source] = totals.get(r.source, 0) + r.kept
    return totals


def test_each_request_of_these_tests_takes_1000_bytes() -> None:
    assert rejection_to_row(rejected(1, at=NOW))["kept_bytes"] == 1000


async def test_past_its_cap_a_source_drops_its_oldest_requests_first_and_keeps_the_rows(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    for n in range(12):
        await store.record_rejection(rejected(n, at=NOW + n), KEEP)
    await store.record_rejection(rejected(99, at=NOW, source="stripe"), KEEP)  # another source's own room

    everything = sorted(await store.reads.list_rejections(source="github"), key=lambda r: r.id or 0)
    assert len(everything) == 12  # every rejection is still listed
    assert [r.dropped for r in everything] == [EVICTED, EVICTED] + [None] * 10
    assert [r.kept for r in everything] == [0, 0] + [1000] * 10
    assert everything[0].dropped_at == NOW + 10  # dropped when the 11th came
    assert await kept_ids(store) == [r.id for r in everything[2:]]
    assert await space(store) == {"github": 10_000, "stripe": 1000}
    old = await store.reads.get_rejection(everything[0].id or 0)
    assert old is not None and old.request is None and old.body_prefix == b'{"n": 0         '
    newest = await store.reads.get_rejection(everything[-1].id or 0)
    assert newest is not None and newest.request == rejected(11, at=0).request


async def test_a_flood_turns_over_at_most_a_quarter_of_the_cap_an_hour_then_new_requests_are_not_kept(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    for n in range(10):  # the cap is full of genuine rejections
        await store.record_rejection(rejected(n, at=NOW - HOUR + n), KEEP)
    genuine = await kept_ids(store)

    for n in range(100, 150):  # fifty forgeries within a minute
        await store.record_rejection(rejected(n, at=NOW + n - 100), KEEP)

    kept = await kept_ids(store)
    assert kept[:8] == genuine[2:]  # 2,500 bytes of turnover: two of the genuine ones, never more
    assert len(kept) == 10 and await space(store) == {"github": 10_000}
    forgeries = sorted(await store.reads.list_rejections(source="github", limit=60), key=lambda r: r.id or 0)
    assert [r.dropped for r in forgeries[10:]] == [None] * 2 + [NO_ROOM] * 48
    assert {r.kept for r in forgeries[12:]} == {0}  # written without their request, never stored whole

    later = NOW + HOUR + 1  # a new hour, a new turnover
    await store.record_rejection(rejected(200, at=later), KEEP)
    now_kept = await kept_ids(store)
    assert now_kept[:-1] == kept[1:] and len(now_kept) == 10


async def test_a_burst_in_one_batch_keeps_the_cap_and_the_newest_it_cannot_keep_say_why(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    await asyncio.gather(*(store.record_rejection(rejected(n, at=NOW), KEEP) for n in range(40)))
    rows = sorted(await store.reads.list_rejections(limit=100), key=lambda r: r.id or 0)
    assert len(rows) == 40 and sum(r.kept for r in rows) <= KEEP.keep
    assert {r.dropped for r in rows if not r.kept} <= {EVICTED, NO_ROOM}


async def test_a_request_larger_than_the_cap_or_a_cap_of_0_keeps_no_request(open_store: OpenStore) -> None:
    store = await open_store()
    await store.record_rejection(rejected(1, at=NOW), RejectionKeep(999))
    await store.record_rejection(rejected(2, at=NOW), RejectionKeep(0))
    await store.record_rejection(rejected(3, at=NOW), None)
    rows = await store.reads.list_rejections()
    assert [(r.kept, r.dropped) for r in rows] == [(0, NO_ROOM)] * 3
    assert await space(store) == {"github": 0}


async def test_pruned_rejections_give_their_room_back(open_store: OpenStore, tmp_path: Path) -> None:
    store = await open_store()
    for n in range(10):
        await store.record_rejection(rejected(n, at=NOW - 2 * HOUR + n), KEEP)
    pruned = await store.jobs.prune(NOW - HOUR, {}, limit=100)
    assert pruned.rejections == 10
    assert await peek(store, "SELECT source, kept_bytes FROM rejection_space") == [("github", 0)]
    for n in range(10):  # the room is free again: nothing new is dropped
        await store.record_rejection(rejected(n, at=NOW + n), KEEP)
    assert [r.dropped for r in await store.reads.list_rejections()] == [None] * 10


async def test_a_recovered_rejection_names_its_event_and_frees_its_room(open_store: OpenStore) -> None:
    store = await open_store()
    await store.record_rejection(rejected(1, at=NOW), KEEP)
    [kept] = await store.reads.kept_rejections()
    event = plain_event(1, at=NOW + 60, source="github")

    recorded = await store.record(event, [], recovers=kept.id)
    again = await store.record(plain_event(2, at=NOW + 61, source="github"), [], recovers=kept.id)

    assert not recorded.duplicate
    assert (again.duplicate, again.event_id) == (True, event.id)  # recovered once: nothing stored twice
    assert await store.reads.get_event("evt_github_000002") is None
    done = await store.reads.get_rejection(kept.id or 0)
    assert done is not None
    assert (done.recovered_as, done.recovery, done.recovered_at) == (event.id, "stored", NOW + 60)
    assert (done.request, done.kept) == (None, 0) and await space(store) == {"github": 0}


@pytest.mark.sqlite_only  # a SQLite file of an older schema
async def test_a_file_from_before_0006_keeps_its_rejections(open_store: OpenStore, tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for migration in MIGRATIONS[:5]:
            conn.executescript(f"BEGIN; {migration.sql}; PRAGMA user_version = {migration.number}; COMMIT;")
        conn.execute(
            "INSERT INTO rejections (source, reason, detail, received_at, remote_addr, body_prefix, "
            "body_size) VALUES ('github', 'bad_signature', 'does not match', ?, NULL, x'7b7d', 2)",
            (NOW,),
        )

    store = await open_store()

    [old] = await store.reads.list_rejections()
    assert (old.source, old.body_prefix, old.kept, old.dropped, old.recovered_as) == (
        "github",
        b"{}",
        0,
        None,
        None,
    )
    found = await store.reads.get_rejection(old.id or 0)
    assert found is not None and found.request is None
    assert await store.reads.kept_rejections() == []

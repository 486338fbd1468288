"""A write whose own values the database cannot hold fails alone: the writes committed beside it in the same
group-commit batch (honest deliveries) are not rolled back with it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from gateway.errors import StoreError
from gateway.model import Rejection
from tests.support.records import push_event, queued_run

pytestmark = pytest.mark.both_stores


@pytest.mark.parametrize("size", [2**63, 2**64 - 1, 10**30])
async def test_a_rejection_with_a_number_past_64_bits_fails_alone_and_its_batch_commits(
    open_store: Callable[..., Any], size: int
) -> None:
    store = await open_store()
    events = [push_event(f"honest{n}", 1_800_000_000.0 + n) for n in range(5)]
    hostile = Rejection("github", "too_large", "declared too much", 1_800_000_000.0, None, b"", size)
    # Queued in one turn of the loop: the writer takes them as one batch.
    results = await asyncio.gather(
        *(store.record(e, [queued_run(e.id[4:], e)]) for e in events),
        store.record_rejection(hostile),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["Recorded"] * 5 + ["StoreError"]
    # SQLite's driver refuses to bind it; PostgreSQL takes it as a numeric and refuses it for its column.
    assert isinstance(results[-1], StoreError)
    assert "OverflowError" in str(results[-1]) or "NumericValueOutOfRange" in str(results[-1])
    assert len(await store.reads.events_page()) == 5


@pytest.mark.parametrize("declared", [str(2**63), str(2**64 - 1), "9" * 20, "²"])
async def test_a_hostile_content_length_is_refused_and_honest_deliveries_beside_it_are_stored(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
    declared: str,
) -> None:
    store = await open_store()
    client = await client_for(load_config(), store)
    honest = [client.post("/hooks/open", content=b'{"n": %d}' % n) for n in range(5)]
    hostile = client.post("/hooks/open", content=b"{}", headers=[(b"Content-Length", declared.encode())])
    *answers, refused = await asyncio.gather(*honest, hostile)
    assert [a.status_code for a in answers] == [202] * 5
    assert refused.status_code in (413, 202)  # a Content-Length that is not a number is not a size claim
    assert len(await store.reads.events_page()) == 5 + (refused.status_code == 202)
    if refused.status_code == 413:
        [rejection] = await store.reads.list_rejections()
        assert rejection.body_size == min(int(declared), 2**63 - 1)
    else:  # "²" is a digit to str.isdigit() but no number int() reads: it was a 500
        assert not declared.isascii()

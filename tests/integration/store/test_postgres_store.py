"""What only the PostgreSQL store has to prove, on a real server: several stores on one database (as several
gateways and workers are) keep dedupe, queue limits and per-key order; they hear of each other's runs; ten
starting at once migrate once; a server that goes away fails writes (never acknowledges them) and is used
again once it is back. The interface itself is tested on both stores by the both_stores modules beside this.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from gateway.errors import StoreError, StoreUnavailable
from gateway.model import COMPLETED, QUEUED, AttemptEnd, Event, Headers, Payload, Run
from gateway.store.interface import ClaimRequest
from gateway.store.postgres import schema
from gateway.store.postgres.sql import MIGRATIONS, QUERIES
from gateway.store.postgres.store import PostgresStore
from tests.support import postgres
from tests.support.claims import Claims, take_all

NOW = 1_800_000_000.0
LEASE = 30.0


def event(name: str, *, key: str | None = None, at: float = NOW) -> Event:
    return Event(
        id=f"evt_{name}",
        source="github",
        event_type="push",
        dedupe_key=key,
        status="routed",
        received_at=at,
        method="POST",
        url="https://hooks.example.com/hooks/github",
        headers=Headers([("X-GitHub-Event", "push")]),
        query=(),
        body=b"{}",
        payload=Payload("json", {}),
        verification="verified:github",
    )


def run(name: str, evt: Event, **changes: Any) -> Run:
    base = Run(
        id=name,
        event_id=evt.id,
        route_id="route-1",
        task_id="deploy",
        input={"name": name},
        status=QUEUED,
        created_at=evt.received_at,
        options={"max_attempts": 3},
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
async def stores(postgres_dsn: str) -> AsyncIterator[Callable[..., Any]]:
    """Open PostgresStores on this test's one database (as several gateways would), closed at the end."""
    opened: list[PostgresStore] = []

    async def open_(**kwargs: Any) -> PostgresStore:
        store = await PostgresStore.open(postgres_dsn, **kwargs)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


async def claim(store: PostgresStore, *, limit: int = 1, **request: Any) -> list[str]:
    store.runs.attach(Claims(take_all))
    claims = await store.runs.claim(ClaimRequest(NOW, limit, LEASE, **request))
    return [c.run.id for c in claims]


async def test_the_same_delivery_at_two_gateways_at_once_is_stored_once(stores: Callable[..., Any]) -> None:
    a, b = await stores(), await stores()
    for n in range(20):
        first, second = event(f"a{n}", key=f"d-{n}"), event(f"b{n}", key=f"d-{n}")
        got = await asyncio.gather(
            a.record(first, [run(f"ra{n}", first)]), b.record(second, [run(f"rb{n}", second)])
        )
        stored = [r for r in got if not r.duplicate]
        assert len(stored) == 1, got  # one 202, one 200 duplicate naming the same event
        assert {r.event_id for r in got} == {stored[0].event_id}
    assert await a.reads.count_events() == 20
    assert len(await a.reads.runs_page(limit=100)) == 20


async def test_a_queue_limit_of_one_holds_across_stores_claiming_at_once(stores: Callable[..., Any]) -> None:
    a, b, c = await stores(), await stores(), await stores()
    evt = event("bulk")
    await a.record(evt, [run(f"r{n:02d}", evt, queue="q") for n in range(12)])
    limits = {"queue_limits": {"q": 1}}
    taken: list[str] = []
    for _ in range(6):  # each round: three claims race for the one slot, then the holder finishes
        rounds = await asyncio.gather(*(claim(s, limit=3, **limits) for s in (a, b, c)))
        won = [run_id for ids in rounds for run_id in ids]
        assert len(won) == 1, rounds
        taken += won
        await a.runs.finish_attempt(AttemptEnd(won[0], 1, NOW + 1, "completed", COMPLETED))
    assert len(set(taken)) == 6


async def test_a_task_limit_holds_across_stores_claiming_at_once(stores: Callable[..., Any]) -> None:
    a, b = await stores(), await stores()
    evt = event("bulk")
    await a.record(evt, [run(f"r{n:02d}", evt) for n in range(10)])
    got = await asyncio.gather(
        claim(a, limit=5, task_limits={"deploy": 3}), claim(b, limit=5, task_limits={"deploy": 3})
    )
    assert sum(len(ids) for ids in got) == 3, got


async def test_a_run_recorded_elsewhere_while_its_keys_head_ends_is_not_left_blocked(
    stores: Callable[..., Any],
) -> None:
    """The race the key locks close: one store ends a key's head while another records the next run on it.
    Without them the new run could see the head unfinished while the end missed the new run: blocked for
    good."""
    a, b = await stores(), await stores()
    for n in range(25):
        key = f"repo:{n}"
        head_event = event(f"h{n}")
        await a.record(head_event, [run(f"head{n}", head_event, concurrency_key=key)])
        assert await claim(a) == [f"head{n}"]
        nxt = event(f"n{n}")
        await asyncio.gather(
            a.runs.finish_attempt(AttemptEnd(f"head{n}", 1, NOW + 1, "completed", COMPLETED)),
            b.record(nxt, [run(f"next{n}", nxt, concurrency_key=key)]),
        )
        assert await claim(b) == [f"next{n}"], f"round {n}: the next run of {key} was left blocked"
        await b.runs.finish_attempt(AttemptEnd(f"next{n}", 1, NOW + 2, "completed", COMPLETED))


async def test_per_key_order_holds_across_stores(stores: Callable[..., Any]) -> None:
    a, b = await stores(), await stores()
    for n in range(6):
        evt = event(f"k{n}", at=NOW - 10 + n)
        await (a if n % 2 else b).record(evt, [run(f"k{n}", evt, concurrency_key="repo:1")])
    order: list[str] = []
    for _ in range(6):
        got = await asyncio.gather(claim(a, limit=5), claim(b, limit=5))
        [won] = [ids for ids in got if ids]  # only the key's head is ever claimable
        assert len(won) == 1
        order += won
        await a.runs.finish_attempt(AttemptEnd(won[0], 1, NOW + 1, "completed", COMPLETED))
    assert order == [f"k{n}" for n in range(6)]


async def test_a_store_hears_of_runs_another_commits(stores: Callable[..., Any]) -> None:
    writer, listener = await stores(), await stores(listen=True)
    claimant = Claims()
    listener.runs.attach(claimant)
    await asyncio.sleep(0.5)  # it is listening (and heard of nothing but its own start)
    heard_before = len(claimant.committed_runs)
    evt = event("news")
    started = time.monotonic()
    await writer.record(evt, [run("news", evt)])
    while len(claimant.committed_runs) == heard_before:
        assert time.monotonic() - started < 5, "no notification within 5 s"
        await asyncio.sleep(0.005)
    assert claimant.committed_runs[-1] == []  # runs committed elsewhere: the claimant claims to learn them
    own = len(claimant.committed_runs)
    await listener.record(event("mine"), [run("mine", event("mine"))])
    await asyncio.sleep(0.3)
    assert claimant.committed_runs[own:] == [[run("mine", event("mine"))]]  # its own: told once, directly


async def test_ten_gateways_starting_at_once_migrate_once(postgres_dsn: str) -> None:
    applied = await asyncio.gather(*(schema.migrate(postgres_dsn) for _ in range(10)))
    assert sorted(len(done) for done in applied) == [0] * 9 + [len(MIGRATIONS)]
    assert await schema.pending(postgres_dsn) == []
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute("SELECT number, name FROM gateway_migrations ORDER BY number").fetchall()
    assert rows == [(m.number, m.name) for m in MIGRATIONS]


async def test_pending_lists_what_an_empty_database_lacks_without_creating_anything(
    postgres_dsn: str,
) -> None:
    assert [m.name for m in await schema.pending(postgres_dsn)] == [m.name for m in MIGRATIONS]
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT to_regclass('gateway_migrations')").fetchone() == (None,)


async def test_a_database_migrated_by_a_newer_gateway_is_refused(postgres_dsn: str) -> None:
    await schema.migrate(postgres_dsn)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO gateway_migrations VALUES (99, '0099_future', 0)")
    known = MIGRATIONS[-1].number
    with pytest.raises(StoreError, match=rf"newer than this gateway knows \({known}\); upgrade the gateway"):
        await PostgresStore.open(postgres_dsn)


async def test_a_server_that_cannot_be_reached_is_named_without_its_password() -> None:
    port = postgres.free_port()
    address = f"postgresql://gateway:s3cr3t-pw@127.0.0.1:{port}/hooks"
    with pytest.raises(StoreError) as raised:
        await PostgresStore.open(address)
    message = str(raised.value)
    assert message.startswith(f"cannot connect to postgresql://gateway@127.0.0.1:{port}/hooks: ")
    assert "s3cr3t" not in message and "Connection refused" in message


async def test_a_database_that_does_not_exist_is_said_in_one_line(postgres_server: Any) -> None:
    address = postgres.with_database(postgres_server.dsn(), "no_such_database")
    with pytest.raises(StoreError, match='database "no_such_database" does not exist'):
        await PostgresStore.open(address)


async def test_the_clock_is_the_servers(stores: Callable[..., Any]) -> None:
    store = await stores()
    with psycopg.connect(store._address) as conn:
        [(server_now,)] = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchall()
    assert abs(store.runs.clock() - server_now) < 1.0


async def test_while_the_server_is_down_writes_fail_and_once_it_is_back_they_commit(
    start_postgres: Callable[..., postgres.PostgresServer],
) -> None:
    server = start_postgres()
    address = postgres.create_database(server, "gateway")
    store = await PostgresStore.open(address)
    try:
        await store.record(event("before"), [run("before", event("before"))])
        server.kill()
        with pytest.raises(StoreUnavailable):  # never acknowledged: nothing of it is kept
            await store.record(event("during"), [run("during", event("during"))])
        with pytest.raises(StoreUnavailable):
            await store.probe()
        assert store.runs.heartbeat_blocking(["before"], NOW + 60, worker=None, now=NOW) == 0
        server.restart()
        recorded = await store.record(event("after"), [run("after", event("after"))])  # no restart needed
        assert not recorded.duplicate
        assert {e.id for e in await store.reads.events_page()} == {"evt_after", "evt_before"}  # not "during"
        assert await claim(store, limit=5) == ["before", "after"]
        assert store.runs.heartbeat_blocking(["before", "after"], NOW + 60, now=NOW) == 2
    finally:
        await store.close()


@pytest.mark.parametrize("key", ["k" * 100_000, "a\x00b", "\ue000starts-with-the-escape", "\x00" * 3])
async def test_keys_past_an_index_row_or_holding_nul_keep_their_order_and_dedupe(
    stores: Callable[..., Any], key: str
) -> None:
    """PostgreSQL text cannot hold U+0000 and a btree row holds at most 2,704 bytes: such keys still dedupe,
    still line up, and read back as they were sent."""
    store = await stores()
    first, again = event("first", key=key), event("again", key=key)
    assert not (await store.record(first, [run("r1", first, concurrency_key=key)])).duplicate
    assert (await store.record(again, [])).event_id == first.id
    later = event("later")  # ready at NOW too: only the key holds it back
    await store.record(later, [run("r2", later, concurrency_key=key)])
    assert await claim(store, limit=5) == ["r1"]  # r2 waits behind r1 on the same key
    await store.runs.finish_attempt(AttemptEnd("r1", 1, NOW + 2, "completed", COMPLETED))
    assert await claim(store, limit=5) == ["r2"]
    stored = await store.reads.get_event(first.id)
    assert stored is not None and stored.dedupe_key == key
    got = await store.reads.get_run("r2")
    assert got is not None and got.concurrency_key == key


def test_the_clock_keeps_the_reading_with_the_shortest_round_trip() -> None:
    """A slow reading (a loaded machine) would move the offset by half its round trip: the shortest wins."""
    from gateway.store.postgres.heartbeat import ServerClock

    clock = ServerClock()
    clock.measure(1000.0, 999.0, 999.002)  # 2 ms round trip: offset 0.999 s
    clock.measure(1000.5, 999.0, 1000.0)  # 1 s round trip: its offset (0.999... ± 0.5 s) is not trusted
    assert clock.offset == pytest.approx(0.999)
    for n in range(ServerClock.SAMPLES):  # the fast reading ages out behind newer ones
        clock.measure(2000.0 + n, 1999.0 + n, 1999.01 + n)
    assert clock.offset == pytest.approx(0.995)


async def test_an_attempts_end_looks_up_its_run_instead_of_reading_every_executing_one(
    stores: Callable[..., Any],
) -> None:
    """open_attempts, which every attempt's end runs, once hashed all executing runs (the planner guesses
    100 keys in the JSON list): with 10,000 executing it read 186 pages for one end (bench/postgres.py)."""
    store = await stores()
    evt = event("many")
    await store.record(evt, [run(f"r{n:05d}", evt) for n in range(10_000)])
    conn = store._write_db.conn
    await conn.execute("UPDATE runs SET status = 'executing'")
    await conn.execute("INSERT INTO attempts (run_id, number, started_at) SELECT id, 1, 0 FROM runs")
    await conn.execute("ANALYZE runs")
    await conn.execute("ANALYZE attempts")
    sql = QUERIES["open_attempts"].replace("%(keys)s", "'[[\"r00042\", 1]]'")
    cursor = await conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")  # type: ignore[arg-type]
    [(plan,)] = await cursor.fetchall()
    top = plan[0]["Plan"]
    assert top["Actual Rows"] == 1
    assert top["Shared Hit Blocks"] + top["Shared Read Blocks"] < 30, json.dumps(plan, indent=1)


async def test_batches_that_record_and_end_runs_on_crossed_keys_do_not_deadlock(
    stores: Callable[..., Any],
) -> None:
    """Each batch records a run on one key and ends the head of another, and a second store does the
    reverse at once (two gateways with embedded executors). Taking each batch's key locks in two rounds
    (the new runs' keys, then the ended runs') let two such batches wait on each other until PostgreSQL
    aborted one, and its deliveries were refused; every batch takes all its keys at its start instead."""
    a, b = await stores(), await stores()
    for n in range(15):
        k1, k2 = f"k1-{n}", f"k2-{n}"
        heads = event(f"heads{n}")
        await a.record(
            heads, [run(f"h1-{n}", heads, concurrency_key=k1), run(f"h2-{n}", heads, concurrency_key=k2)]
        )
        assert sorted(await claim(a, limit=5)) == [f"h1-{n}", f"h2-{n}"]
        e1, e2 = event(f"n1-{n}"), event(f"n2-{n}")
        results = await asyncio.gather(
            a.record(e1, [run(f"n1-{n}", e1, concurrency_key=k1)]),
            a.runs.finish_attempt(AttemptEnd(f"h2-{n}", 1, NOW + 1, "completed", COMPLETED)),
            b.record(e2, [run(f"n2-{n}", e2, concurrency_key=k2)]),
            b.runs.finish_attempt(AttemptEnd(f"h1-{n}", 1, NOW + 1, "completed", COMPLETED)),
            return_exceptions=True,
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert sorted(await claim(b, limit=5)) == [f"n1-{n}", f"n2-{n}"]
        for name in (f"n1-{n}", f"n2-{n}"):
            await b.runs.finish_attempt(AttemptEnd(name, 1, NOW + 2, "completed", COMPLETED))

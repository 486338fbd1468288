"""The store on a real SQLite file in tmp_path: durability, group commit, dedupe, faults, migrations."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import StoreError, StoreUnavailable
from gateway.model import Event, EventFilter, Headers, Payload, Recorded, Rejection, Run
from gateway.routes.payload import parse_payload
from gateway.store.ops.db import Db
from gateway.store.sqlite.db import SQLiteDb
from gateway.store.sqlite.sql import MIGRATIONS, load_queries
from gateway.store.sqlite.store import SQLiteStore
from tests.support.claims import Claims
from tests.support.database import count, peek

pytestmark = pytest.mark.both_stores

NOW = 1_700_000_000.25
OpenStore = Callable[..., Any]


def make_event(n: int = 1, **changes: Any) -> Event:
    event = Event(
        id=f"evt_{n:04d}",
        source="github",
        event_type="push",
        dedupe_key=None,
        status="routed",
        received_at=NOW + n,
        method="POST",
        url="https://hooks.example.com/hooks/github?x=1",
        headers=Headers([("Content-Type", "application/json"), ("X-GitHub-Event", "push")]),
        query=(("x", "1"),),
        body=b'{"ref":"refs/heads/main"}',
        payload=Payload("json", {"ref": "refs/heads/main"}),
        verification="verified:github",
        remote_addr="192.0.2.10",
    )
    return dataclasses.replace(event, **changes)


def make_run(event: Event, n: int = 1, **changes: Any) -> Run:
    run = Run(
        id=f"run_{event.id}_{n}",
        event_id=event.id,
        route_id=f"route-{n}",
        task_id="deploy-preview",
        input={"ref": "main"},
        status="queued",
        created_at=event.received_at,
        options={"retries": 3, "timeout": 30.0},
    )
    return dataclasses.replace(run, **changes)


def make_rejection(n: int = 1, **changes: Any) -> Rejection:
    rejection = Rejection(
        source="github",
        reason="bad_signature",
        detail="no configured secret produced this signature",
        received_at=NOW + n,
        remote_addr="198.51.100.7",
        body_prefix=b'{"ref":',
        body_size=2048,
    )
    return dataclasses.replace(rejection, **changes)


def raises_exactly(kind: type[Exception], message: str) -> Any:
    """pytest.raises that also asserts the whole message, verbatim."""
    return pytest.raises(kind, match=f"^{re.escape(message)}$")


class FlakyStore:
    """A store (mixed over either: see open_store) that fails its next ``failures`` batches after their rows
    are written, as a disk error at commit would."""

    failures = 0

    async def write(self, conn: Db, batch: list[Any]) -> None:
        recorded = await super().write(conn, batch)  # type: ignore[misc]
        if self.failures:
            self.failures -= 1
            raise OSError("disk I/O error")
        return recorded


# -- durability and round trips -------------------------------------------------------------------------


async def test_recorded_event_and_runs_survive_close_and_reopen(
    open_store: OpenStore, tmp_path: Path
) -> None:
    event = make_event(
        event_type="pull_request",
        url="https://hooks.example.com/hooks/github?tag=a&tag=b&name=J%C3%BCrgen",
        headers=Headers([("Set-Cookie", "a=1"), ("X-Note", "Grüße 🚀"), ("Set-Cookie", "b=2")]),
        query=(("tag", "a"), ("tag", "b"), ("name", "Jürgen")),
        body=b"\x00\xff not utf-8 \xfe\r\n",
        payload=Payload("raw", None),
        dedupe_key="delivery-1",
        replay_of="evt_0000",
    )
    runs = [
        make_run(event, 1, input={"msg": "héllo ✓", "list": [1, 2.5, None, True]}, concurrency_key="repo:1"),
        make_run(event, 2, route_id=None, queue="slow", priority=-3, output=[1, "two"], error={"type": "X"}),
    ]
    store = await open_store()
    assert await store.record(event, runs) == Recorded(event.id, tuple(runs), duplicate=False)
    await store.close()

    store = await open_store()
    stored = await store.reads.get_event(event.id)
    assert stored == event
    assert stored is not None and stored.headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert await store.reads.runs_for_event(event.id) == runs
    assert await store.reads.get_run(runs[1].id) == runs[1]
    assert count(store, "events") == 1


@pytest.mark.parametrize(
    "body, payload",
    [
        (b'{"a": [1, {"b": "\\u00fc"}]}', Payload("json", {"a": [1, {"b": "ü"}]})),
        (b"a=1&a=2&%C3%BC=%C3%B8&empty=", Payload("form", {"a": ["1", "2"], "ü": ["ø"], "empty": [""]})),
        (b"plain text", Payload("raw", "plain text")),
        (b"", Payload("raw", None)),
    ],
)
async def test_payloads_and_exact_body_round_trip(
    open_store: OpenStore, body: bytes, payload: Payload
) -> None:
    store = await open_store()
    event = make_event(body=body, payload=payload, status="unrouted")
    await store.record(event, [])
    assert await store.reads.get_event(event.id) == event


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/json", b'{"a": [1, {"b": "\\u00fc"}], "n": 1.5e3}'),
        ("application/json", '{"ü": "✓"}'.encode("utf-16")),  # json.loads detects UTF-16 too
        ("application/vnd.api+json", b"[true, null]"),
    ],
)
async def test_a_payload_parsed_from_the_body_is_stored_once_and_read_back_equal(
    open_store: OpenStore, tmp_path: Path, content_type: str, body: bytes
) -> None:
    payload = parse_payload(content_type, body)
    assert payload.kind == "json" and payload.parsed
    store = await open_store()
    event = make_event(body=body, payload=payload, status="unrouted")
    await store.record(event, [])
    stored = await store.reads.get_event(event.id)
    assert stored == event and stored is not None and stored.payload.data == payload.data
    assert await peek(store, "SELECT payload, body FROM events") == [("", body)]


async def test_a_json_payload_that_is_not_the_body_parsed_is_stored_in_full(
    open_store: OpenStore, tmp_path: Path
) -> None:
    event = make_event(body=b'{"ref":"other"}', payload=Payload("json", {"ref": "mine"}), status="unrouted")
    store = await open_store()
    await store.record(event, [])
    assert await store.reads.get_event(event.id) == event
    assert await peek(store, "SELECT payload FROM events") == [('{"ref":"mine"}',)]


async def test_unknown_ids_read_as_none(open_store: OpenStore) -> None:
    store = await open_store()
    assert await store.reads.get_event("evt_missing") is None
    assert await store.reads.get_run("run_missing") is None
    assert await store.reads.runs_for_event("evt_missing") == []


async def test_rejections_round_trip_newest_first_with_ids(open_store: OpenStore) -> None:
    store = await open_store()
    await store.record_rejection(make_rejection(1))
    await store.record_rejection(make_rejection(2, source="stripe", remote_addr=None, body_prefix=b"\xff"))
    stored = await store.reads.list_rejections()
    assert [dataclasses.replace(r, id=None) for r in stored] == [
        make_rejection(2, source="stripe", remote_addr=None, body_prefix=b"\xff"),
        make_rejection(1),
    ]
    assert stored[1].id is not None and stored[0].id is not None and stored[0].id > stored[1].id
    assert [r.source for r in await store.reads.list_rejections(source="github")] == ["github"]
    assert [r.received_at for r in await store.reads.list_rejections(since=NOW + 2)] == [NOW + 2]
    assert len(await store.reads.list_rejections(limit=1)) == 1


async def test_an_events_page_is_newest_first_filtered_and_bounded(open_store: OpenStore) -> None:
    store = await open_store()
    events = [
        make_event(1),
        make_event(2, source="stripe"),
        make_event(3, status="unrouted"),
        make_event(4, source="stripe", status="unrouted"),
    ]
    for event in events:
        await store.record(event, [])

    async def ids(limit: int = 50, **filters: Any) -> list[str]:
        return [e.id for e in await store.reads.events_page(EventFilter(**filters), limit=limit)]

    assert await ids() == ["evt_0004", "evt_0003", "evt_0002", "evt_0001"]
    assert await ids(source="stripe") == ["evt_0004", "evt_0002"]
    assert await ids(status="unrouted") == ["evt_0004", "evt_0003"]
    assert await ids(source="github", status="routed") == ["evt_0001"]
    assert await ids(since=NOW + 3) == ["evt_0004", "evt_0003"]
    assert await ids(limit=2) == ["evt_0004", "evt_0003"]
    with raises_exactly(ValueError, "limit must be at least 1, not 0"):
        await store.reads.events_page(limit=0)


# -- configuration ----------------------------------------------------------------------------------------


@pytest.mark.sqlite_only  # SQLite's own file and schema
async def test_the_committing_connection_runs_wal_with_full_sync(
    open_store: OpenStore, tmp_path: Path
) -> None:
    class PragmaSpy(SQLiteStore):
        seen: dict[str, Any] = {}

        async def write(self, conn: SQLiteDb, batch: list[Any]) -> None:  # type: ignore[override]
            for name in ("journal_mode", "synchronous", "foreign_keys"):
                [(value,)] = await conn.raw.execute_fetchall(f"PRAGMA {name}")
                self.seen[name] = value
            return await super().write(conn, batch)

    store = await open_store(cls=PragmaSpy)
    await store.record(make_event(), [])
    assert store.seen == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1}  # 2 is FULL
    with contextlib.closing(sqlite3.connect(tmp_path / "gateway.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # persistent in the file


@pytest.mark.sqlite_only  # SQLite's own file and schema
async def test_open_in_a_missing_directory_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "gateway.db"
    with pytest.raises(StoreError) as raised:
        await SQLiteStore.open(path)
    assert str(raised.value) == (
        f"cannot use the database {path}: its directory {path.parent} does not exist, and SQLite writes the "
        "database, its -wal and its -shm there; create it or make it writable, or choose another --db"
    )


@pytest.mark.sqlite_only  # SQLite's own file and schema
async def test_max_batch_below_one_is_refused(tmp_path: Path) -> None:
    with raises_exactly(ValueError, "max_batch must be at least 1, not 0"):
        await SQLiteStore.open(tmp_path / "gateway.db", max_batch=0)


def test_a_query_name_defined_twice_is_refused() -> None:
    with raises_exactly(ValueError, "queries.sql: query 'a' is defined twice"):
        load_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    assert load_queries("-- header\n-- name: a\nSELECT 1;\n\n-- name: b\nSELECT 2;\n") == {
        "a": "SELECT 1;",
        "b": "SELECT 2;",
    }


def test_a_fragment_does_not_carry_the_comments_after_it() -> None:
    """A section heading after a fragment would otherwise end up inside every statement including it, and
    comment out the rest of its line (PostgreSQL's count_prunable once lost its closing parenthesis so)."""
    text = "-- fragment: cols\na, b\n\n-- == A section ==\n\n-- name: x\n-- what x is\n"
    text += "SELECT ({cols}) AS c;\n"
    assert load_queries(text) == {"x": "-- what x is\nSELECT (a, b) AS c;"}


# -- migrations -------------------------------------------------------------------------------------------


@pytest.mark.sqlite_only  # SQLite's own file and schema
async def test_a_new_file_gets_the_current_schema(open_store: OpenStore, tmp_path: Path) -> None:
    await open_store()
    with contextlib.closing(sqlite3.connect(tmp_path / "gateway.db")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"events", "runs", "attempts", "rejections", "meta"} <= tables


@pytest.mark.sqlite_only  # SQLite's own file and schema
async def test_reopening_a_current_file_migrates_nothing(
    open_store: OpenStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.store")
    store = await open_store()
    await store.record(make_event(), [])
    await store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "gateway.db")) as conn:
        schema_before = conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    assert [r.message for r in caplog.records if "schema version" in r.message] == [
        f"store: created {tmp_path / 'gateway.db'} at schema version {len(MIGRATIONS)}"
    ]

    store = await open_store()
    assert sum("schema version" in r.message for r in caplog.records) == 1  # nothing to migrate: no line
    with contextlib.closing(sqlite3.connect(tmp_path / "gateway.db")) as conn:
        assert conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema_before
        assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    assert await store.reads.get_event("evt_0001") == make_event()


@pytest.mark.sqlite_only  # SQLite's own file and schema
async def test_a_file_from_a_newer_gateway_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError) as raised:
        await SQLiteStore.open(path)
    assert str(raised.value) == (
        f"{path} has schema version 99, newer than this gateway knows ({len(MIGRATIONS)}); "
        "upgrade the gateway"
    )


# -- group commit -----------------------------------------------------------------------------------------


async def test_concurrent_records_share_commits_and_all_are_stored(open_store: OpenStore) -> None:
    store = await open_store()
    events = [make_event(n) for n in range(200)]
    results = await asyncio.gather(*(store.record(e, [make_run(e)]) for e in events))
    assert [r.event_id for r in results] == [e.id for e in events]
    assert store.stats.commits <= 10
    assert (store.stats.events, store.stats.runs) == (200, 200)
    assert len(await store.reads.events_page(limit=1000)) == 200


async def test_a_batch_never_exceeds_max_batch(open_store: OpenStore) -> None:
    store = await open_store(max_batch=16)
    events = [make_event(n) for n in range(100)]
    await asyncio.gather(*(store.record(e, []) for e in events))
    assert store.stats.largest_batch == 16
    assert store.stats.commits >= 7
    assert len(await store.reads.events_page(limit=1000)) == 100


# -- dedupe -----------------------------------------------------------------------------------------------


async def test_a_known_dedupe_key_returns_the_original_and_writes_nothing(open_store: OpenStore) -> None:
    store = await open_store()
    first = make_event(1, dedupe_key="délivery-1 🚀")  # the batch lookup passes keys as JSON
    first_runs = [make_run(first)]
    second = make_event(2, dedupe_key="délivery-1 🚀")
    assert await store.record(first, first_runs) == Recorded(first.id, tuple(first_runs), duplicate=False)
    assert await store.record(second, [make_run(second)]) == Recorded(first.id, (), duplicate=True)
    assert await store.reads.get_event(second.id) is None
    assert await store.reads.get_run(make_run(second).id) is None
    assert await store.reads.runs_for_event(first.id) == first_runs
    assert store.stats.duplicates == 1


async def test_the_same_dedupe_key_twice_in_one_batch_stores_one(open_store: OpenStore) -> None:
    store = await open_store()
    events = [make_event(n, dedupe_key="delivery-1") for n in (1, 2, 3)]
    results = await asyncio.gather(*(store.record(e, [make_run(e)]) for e in events))
    assert store.stats.commits == 1  # really one batch, so the in-batch check is what decided
    assert results == [
        Recorded("evt_0001", (make_run(events[0]),), duplicate=False),
        Recorded("evt_0001", (), duplicate=True),
        Recorded("evt_0001", (), duplicate=True),
    ]
    assert [e.id for e in await store.reads.events_page()] == ["evt_0001"]


async def test_the_same_dedupe_key_from_two_sources_is_stored_twice(open_store: OpenStore) -> None:
    store = await open_store()
    await store.record(make_event(1, dedupe_key="k"), [])
    recorded = await store.record(make_event(2, source="stripe", dedupe_key="k"), [])
    assert recorded == Recorded("evt_0002", (), duplicate=False)
    assert len(await store.reads.events_page()) == 2


async def test_events_without_a_dedupe_key_never_collide(open_store: OpenStore) -> None:
    store = await open_store()
    await store.record(make_event(1), [])
    results = await asyncio.gather(store.record(make_event(2), []), store.record(make_event(3), []))
    assert not any(r.duplicate for r in results)
    assert len(await store.reads.events_page()) == 3


# -- faults -----------------------------------------------------------------------------------------------


async def test_a_failed_batch_fails_every_waiter_keeps_nothing_and_the_next_commits(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = await open_store(cls=FlakyStore)
    store.failures = 1
    events = [make_event(n, dedupe_key=f"d-{n}") for n in range(5)]
    results = await asyncio.gather(
        *(store.record(e, [make_run(e)]) for e in events),
        store.record_rejection(make_rejection()),
        store.probe(),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [StoreUnavailable] * 7
    assert str(results[0]) == "the write could not be committed (disk I/O error); nothing of it was kept"
    for table in ("events", "runs", "rejections", "meta"):
        assert count(store, table) == 0
    assert (store.stats.failed_batches, store.stats.commits) == (1, 0)

    # The fault has cleared: the writer is still there, and the failed dedupe key was never taken.
    assert await store.record(events[0], []) == Recorded(events[0].id, (), duplicate=False)
    assert [e.id for e in await store.reads.events_page()] == [events[0].id]


async def test_a_write_the_database_refuses_fails_alone(open_store: OpenStore, store_kind: str) -> None:
    store = await open_store()
    await store.record(make_event(1), [])
    clash = make_event(1, event_type="a different event with a reused id")
    surrogate = make_event(2, event_type="\udcff")
    good = make_event(3)
    results = await asyncio.gather(
        store.record(clash, []), store.record(surrogate, []), store.record(good, []), return_exceptions=True
    )
    assert type(results[0]) is StoreError
    refused = {  # each database in its own words
        "sqlite": "IntegrityError: UNIQUE constraint failed: events.id",
        "postgres": 'UniqueViolation: duplicate key value violates unique constraint "events_pkey"',
    }
    assert str(results[0]).startswith(f"the database refused this write ({refused[store_kind]}")
    assert str(results[0]).endswith("); nothing was kept")
    assert type(results[1]) is StoreError
    assert str(results[1]).startswith("the database refused this write (UnicodeEncodeError: ")
    assert results[2] == Recorded(good.id, (), duplicate=False)
    assert [e.id for e in await store.reads.events_page()] == ["evt_0003", "evt_0001"]


async def test_malformed_writes_are_refused_before_queueing(open_store: OpenStore) -> None:
    store = await open_store()
    event = make_event(1)
    with raises_exactly(ValueError, "run run_evt_0002_1 has event_id 'evt_0002', expected 'evt_0001'"):
        await store.record(event, [make_run(make_event(2))])
    statuses = (
        "['canceled', 'completed', 'crashed', 'executing', 'failed', 'queued', 'retrying', 'timed_out']"
    )
    with raises_exactly(
        ValueError, f"run run_evt_0001_1 has unknown status 'running'; expected one of {statuses}"
    ):
        await store.record(event, [make_run(event, status="running")])
    with raises_exactly(ValueError, "event status 'ok' is not one of 'routed', 'unrouted'"):
        await store.record(make_event(3, status="ok"), [])
    with pytest.raises(TypeError, match="is not JSON serializable"):
        await store.record(event, [make_run(event, input={"when": object()})])
    assert store.stats.commits == 0
    assert await store.reads.events_page() == []


async def test_a_writer_that_dies_fails_pending_and_later_writes(open_store: OpenStore) -> None:
    class WriterBug(BaseException):
        """Not an Exception, so the batch guard does not catch it: the writer task itself ends."""

    class DyingStore:
        async def write(self, conn: Db, batch: list[Any]) -> None:
            raise WriterBug

    store = await open_store(cls=DyingStore, max_batch=1)
    # max_batch=1: the first write is in flight when the writer dies, the other two still queued.
    results = await asyncio.gather(
        *(store.record(make_event(n), []) for n in (1, 2, 3)), return_exceptions=True
    )
    refusal = "the store's writer stopped unexpectedly (see the log); restart the gateway"
    assert [(type(r), str(r)) for r in results] == [(StoreUnavailable, refusal)] * 3
    with raises_exactly(StoreUnavailable, refusal):
        await store.record(make_event(4), [])
    await store.close()


# -- the claimant hears of committed runs, and probe ------------------------------------------------------


async def test_the_claimant_hears_of_exactly_the_new_runs_once_they_are_committed(
    open_store: OpenStore, tmp_path: Path
) -> None:
    calls: list[tuple[list[str], int]] = []

    class Counting(Claims):
        def committed(self, runs: Sequence[Run]) -> None:
            # A separate connection sees the runs: they were committed before the call.
            calls.append(([r.id for r in runs], count(store, "runs")))

    store = await open_store()
    store.runs.attach(Counting())
    first = make_event(1, dedupe_key="d")
    await store.record(first, [make_run(first, 1), make_run(first, 2)])
    duplicate, other = make_event(2, dedupe_key="d"), make_event(3)
    await asyncio.gather(
        store.record(duplicate, [make_run(duplicate)]),
        store.record(other, [make_run(other)]),
        store.record_rejection(make_rejection()),
    )
    await store.record(make_event(4, status="unrouted"), [])  # no runs: no call
    assert calls == [(["run_evt_0001_1", "run_evt_0001_2"], 2), (["run_evt_0003_1"], 3)]


async def test_a_claimant_that_fails_to_hear_of_runs_does_not_stop_writes(
    open_store: OpenStore, caplog: pytest.LogCaptureFixture
) -> None:
    class Asleep(Claims):
        def committed(self, runs: Sequence[Run]) -> None:
            raise RuntimeError("executor is asleep")

    store = await open_store()
    store.runs.attach(Asleep())
    event = make_event(1)
    assert await store.record(event, [make_run(event)]) == Recorded(event.id, (make_run(event),), False)
    assert await store.record(make_event(2), []) == Recorded("evt_0002", (), False)
    assert "store: the claimant failed to hear of 1 committed run(s)" in caplog.messages


async def test_probe_is_a_durable_write_through_the_writer(open_store: OpenStore, tmp_path: Path) -> None:
    store = await open_store(cls=FlakyStore)
    await store.probe()
    assert count(store, "meta") == 1
    assert store.stats.commits == 1
    store.failures = 1
    with pytest.raises(StoreUnavailable):
        await store.probe()


# -- close ------------------------------------------------------------------------------------------------


async def test_close_completes_writes_in_flight(open_store: OpenStore, tmp_path: Path) -> None:
    store = await open_store(max_batch=8)
    tasks = [asyncio.create_task(store.record(make_event(n), [])) for n in range(50)]
    await asyncio.sleep(0)  # every task has queued its write
    await store.close()
    assert all(t.result().duplicate is False for t in tasks)
    assert count(store, "events") == 50


async def test_writes_after_close_are_refused_at_once(open_store: OpenStore) -> None:
    store = await open_store()
    await asyncio.gather(store.close(), store.close())  # closing twice, even concurrently, is harmless
    refusal = "the store is closed; nothing was written"
    with raises_exactly(StoreUnavailable, refusal):
        await store.record(make_event(), [])
    with raises_exactly(StoreUnavailable, refusal):
        await store.record_rejection(make_rejection())
    with raises_exactly(StoreUnavailable, refusal):
        await store.probe()
    with pytest.raises(StoreError, match=r"^could not read from the database: "):
        await store.reads.get_event("evt_0001")


@pytest.mark.parametrize(
    "body, stored_as_body",
    [
        (b'{"ref": "refs/heads/main",  "n": [1, 2]}', True),
        ('\ufeff{"ref": "x"}'.encode(), False),  # a BOM: fine for json.loads(bytes), not in text
        ('{"ref": "ü"}'.encode("utf-16"), False),
    ],
)
async def test_a_run_whose_input_is_the_whole_payload_stores_it_as_the_body_text(
    open_store: OpenStore, tmp_path: Path, body: bytes, stored_as_body: bool
) -> None:
    payload = parse_payload("application/json", body)
    event = make_event(body=body, payload=payload)
    whole, mapped = make_run(event, 1, input=payload.data), make_run(event, 2, input={"ref": "x"})
    store = await open_store()
    await store.record(event, [whole, mapped])
    assert await store.reads.runs_for_event(event.id) == [whole, mapped]
    stored = dict(await peek(store, "SELECT id, input FROM runs"))
    assert (stored[whole.id] == body.decode("utf-8", "replace")) is stored_as_body
    assert stored[mapped.id] == '{"ref":"x"}'

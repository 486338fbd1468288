"""`gateway copy` (gateway/store/copy.py) from a real SQLite file, made by a real SQLiteStore and the service,
into a real PostgreSQL database: every record equal through both stores' reads, the copy then working as a
store, a resume after an interruption copying nothing twice, verification catching a difference, and the
refusals."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.errors import StoreError
from gateway.model import (
    COMPLETED,
    FAILED,
    REPLAY,
    AttemptEnd,
    EventFilter,
    Headers,
    Inbound,
    Rejection,
    RejectionKeep,
)
from gateway.records import worker as jobs
from gateway.records.service import Service
from gateway.routes.load import Config
from gateway.store.copy import Mismatch, Progress, copy
from gateway.store.postgres.store import PostgresStore
from gateway.store.sqlite.sql import MIGRATIONS
from gateway.store.sqlite.store import SQLiteStore
from tests.support.claims import claim_runs
from tests.support.clock import NOW, Clock
from tests.support.database import rows
from tests.support.records import deliver, plain_event

LoadConfig = Callable[..., Config]
TABLES = ("events", "runs", "attempts", "rejections", "jobs")
NUL_KEY = "delivery\x00with-nul"
LONG_KEY = "k" * (100 * 1024)  # past any btree row PostgreSQL indexes: its dedupe_hash is


class Interrupted(Exception):
    """Raised from on_page: the copy stops there, as Ctrl-C or a lost connection would stop it."""


def rejected(n: int, *, body: bytes = b'{"forged": true}') -> Rejection:
    request = Inbound(
        "POST",
        "https://hooks.example.com/hooks/github",
        Headers([("Content-Type", "application/json"), ("X-Hub-Signature-256", "sha256=" + "0" * 64)]),
        body,
        remote_addr="198.51.100.7",
    )
    return Rejection(
        "github",
        "bad_signature",
        "does not match",
        NOW + n,
        "198.51.100.7",
        body[:16],
        len(body),
        request=request,
    )


async def attempt(store: SQLiteStore, run_id: str, *, at: float, outcome: str, then: str) -> None:
    """Claim ``run_id`` and end that attempt with ``outcome``, moving the run to ``then``."""
    [claim] = await claim_runs(store.runs, now=at, limit=1, lease=30.0, accept=lambda run: run.id == run_id)
    error = None if outcome == COMPLETED else {"type": "RuntimeError", "message": "the API said 503"}
    await store.runs.finish_attempt(
        AttemptEnd(run_id, claim.attempt, at + 1, outcome, then, available_at=at + 2, output=[1], error=error)
    )


async def seed(db: Path, config: Config) -> dict[str, Any]:
    """A database with everything a copy carries; what the tests look up in it."""
    store = await SQLiteStore.open(db)
    try:
        t = NOW - 1000
        service = Service(store, config, clock=Clock(NOW))
        pushes = [await deliver(store, config, at=t + i) for i in range(6)]  # 2 runs each, dedupe keys
        odd = [
            dataclasses.replace(plain_event(1, at=t + 10, source="github"), dedupe_key=NUL_KEY),
            dataclasses.replace(plain_event(2, at=t + 11, source="github"), dedupe_key=LONG_KEY),
            plain_event(3, at=t + 12, body=json.dumps({"big": "x" * 100 * 1024}).encode()),
        ]
        for event in odd:
            await store.record(event, [])
        await store.jobs.add([plain_event(i, at=t + 20 + i) for i in range(10, 13)], [])
        runs = [p.runs[0].id for p in pushes]
        await attempt(store, runs[0], at=t + 100, outcome=COMPLETED, then=COMPLETED)
        await attempt(store, runs[1], at=t + 101, outcome=FAILED, then="retrying")  # a retry, then done
        await attempt(store, runs[1], at=t + 110, outcome=COMPLETED, then=COMPLETED)
        await attempt(store, runs[2], at=t + 102, outcome=FAILED, then="retrying")
        await attempt(store, runs[2], at=t + 111, outcome=FAILED, then=FAILED)
        await attempt(store, pushes[1].runs[1].id, at=t + 103, outcome=FAILED, then="retrying")  # waits
        await claim_runs(store.runs, now=t + 120, limit=1, lease=30.0, accept=lambda r: r.id == runs[3])
        await store.runs.cancel(runs[4], now=t + 121)
        replay = await service.replay(pushes[0].event_id)
        rerun = await service.rerun(runs[1])
        await store.record_rejection(rejected(1), RejectionKeep(10_000))
        await store.record_rejection(rejected(2), RejectionKeep(10_000))
        await store.record_rejection(rejected(3))  # without its request
        job = await service.bulk.start_job(
            REPLAY, EventFilter(source="open"), requested_by="ops", owner="c:1"
        )
        await jobs.work(service.bulk, job, "c:1", chunk=2)
        running = await service.bulk.start_job(
            REPLAY, EventFilter(source="github"), requested_by="ops", owner=None
        )
        return {"pushes": pushes, "queued": runs[5], "replay": replay, "rerun": rerun, "running": running}
    finally:
        await store.close()


def counted(db: Path) -> dict[str, int]:
    return {table: int(str(rows(db, f"SELECT count(*) FROM {table}")[0][0])) for table in TABLES}


async def pg_counts(dsn: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        found = {}
        for table in TABLES:
            cursor = await conn.execute(f"SELECT count(*) FROM {table}")
            found[table] = (await cursor.fetchone() or [0])[0]
        return found


async def pg(dsn: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(sql, args)
        return list(await cursor.fetchall()) if cursor.description else []


@pytest.fixture
async def source(tmp_path: Path, load_config: LoadConfig) -> tuple[Path, dict[str, Any]]:
    db = tmp_path / "gateway.db"
    return db, await seed(db, load_config())


async def test_a_copy_holds_every_record_as_the_source_reads_it(
    source: tuple[Path, dict[str, Any]], postgres_dsn: str
) -> None:
    db, _ = source
    progress: list[Progress] = []

    done = await copy(db, postgres_dsn, batch=4, on_page=progress.append)

    assert done.mismatches == ()
    assert done.counts == counted(db) == await pg_counts(postgres_dsn) == done.inserted
    assert (done.resumed, done.extra) == (False, {})
    assert rows(db, "SELECT max(attempts), count(DISTINCT status) FROM runs") == [(2, 6)]  # retries, statuses
    assert [(p.done, p.total) for p in progress if p.table == "events"][:2] == [
        (4, done.counts["events"]),
        (8, done.counts["events"]),
    ]
    assert {p.table for p in progress if p.done == p.total} == set(TABLES)
    old, new = await SQLiteStore.open(db), await PostgresStore.open(postgres_dsn)
    try:
        for (event_id,) in rows(db, "SELECT id FROM events"):
            assert await new.reads.get_event(event_id) == await old.reads.get_event(event_id)
            assert await new.reads.runs_for_event(event_id) == await old.reads.runs_for_event(event_id)
        for (run_id,) in rows(db, "SELECT id FROM runs"):
            assert await new.reads.get_run(run_id) == await old.reads.get_run(run_id)
            assert await new.reads.attempts_for_run(run_id) == await old.reads.attempts_for_run(run_id)
        for (rejection_id,) in rows(db, "SELECT id FROM rejections"):
            assert await new.reads.get_rejection(rejection_id) == await old.reads.get_rejection(rejection_id)
        for (job_id,) in rows(db, "SELECT id FROM jobs"):
            assert await new.reads.get_job(job_id) == await old.reads.get_job(job_id)
        assert await new.reads.list_rejections() == await old.reads.list_rejections()
        assert await new.reads.events_page(limit=100) == await old.reads.events_page(limit=100)
    finally:
        await old.close()
        await new.close()


async def test_the_copy_works_as_a_store_dedupe_claims_and_rejection_ids(
    source: tuple[Path, dict[str, Any]], postgres_dsn: str
) -> None:
    db, seeded = source
    await copy(db, postgres_dsn)
    store = await PostgresStore.open(postgres_dsn)
    try:
        for key in (NUL_KEY, LONG_KEY):
            [(original,)] = rows(db, "SELECT id FROM events WHERE dedupe_key = ?", key)
            again = dataclasses.replace(
                plain_event(99, at=NOW, source="github"), id=f"evt_{len(key)}", dedupe_key=key
            )
            recorded = await store.record(again, [])
            assert (recorded.duplicate, recorded.event_id) == (True, original)
        push = seeded["pushes"][0]
        [(key,)] = rows(db, "SELECT dedupe_key FROM events WHERE id = ?", push.event_id)
        recorded = await store.record(
            dataclasses.replace(plain_event(98, at=NOW, source="github"), dedupe_key=key), []
        )
        assert (recorded.duplicate, recorded.event_id) == (True, push.event_id)

        claims = await claim_runs(
            store.runs, now=NOW, limit=1, lease=30.0, accept=lambda r: r.id == seeded["queued"]
        )
        assert [c.run.id for c in claims] == [seeded["queued"]]

        copied = max(int(str(i)) for (i,) in rows(db, "SELECT id FROM rejections"))
        await store.record_rejection(rejected(9))
        [newest, *_] = await store.reads.list_rejections()
        assert newest.received_at == NOW + 9 and newest.id is not None and newest.id > copied
        # The kept requests' room was counted by the triggers as they were inserted.
        assert await pg(postgres_dsn, "SELECT source, kept_bytes FROM rejection_space") == rows(
            db, "SELECT source, kept_bytes FROM rejection_space"
        )
    finally:
        await store.close()


async def test_an_interrupted_copy_resumed_copies_the_rest_and_nothing_twice(
    source: tuple[Path, dict[str, Any]], postgres_dsn: str
) -> None:
    db, _ = source

    def stop_after_first_page(p: Progress) -> None:
        raise Interrupted(p)

    with pytest.raises(Interrupted):
        await copy(db, postgres_dsn, batch=3, on_page=stop_after_first_page)
    assert (await pg_counts(postgres_dsn))["events"] == 3  # the first page is committed, nothing more
    [(noted,)] = await pg(postgres_dsn, "SELECT value FROM meta WHERE key = 'copied_from'")
    assert json.loads(noted)["path"] == os.path.realpath(db)

    done = await copy(db, postgres_dsn, batch=3)

    assert done.resumed and done.mismatches == ()
    assert await pg_counts(postgres_dsn) == counted(db) == done.counts
    assert done.inserted == {**done.counts, "events": done.counts["events"] - 3}
    # seq keeps the source's rowid order: the copied events are in the order SQLite stored them.
    assert [i for (i,) in await pg(postgres_dsn, "SELECT id FROM events ORDER BY seq")] == [
        i for (i,) in rows(db, "SELECT id FROM events ORDER BY rowid")
    ]
    again = await copy(db, postgres_dsn)  # a finished copy run again: nothing to do, still verified
    assert again.inserted == dict.fromkeys(TABLES, 0) and again.mismatches == ()


async def test_a_gateway_writing_the_source_meanwhile_leaves_the_copy_its_snapshot(
    source: tuple[Path, dict[str, Any]], postgres_dsn: str
) -> None:
    db, _ = source
    before = counted(db)
    written: list[Progress] = []

    def a_gateway_writes(p: Progress) -> None:  # after the first page: the snapshot is already taken
        if not written:
            with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
                conn.execute("UPDATE runs SET priority = 9")
                conn.execute("DELETE FROM jobs")
            written.append(p)

    done = await copy(db, postgres_dsn, batch=2, on_page=a_gateway_writes)

    assert done.mismatches == () and done.counts == before == await pg_counts(postgres_dsn)
    assert await pg(postgres_dsn, "SELECT DISTINCT priority FROM runs") == [(0,)]
    assert rows(db, "SELECT DISTINCT priority FROM runs") == [(9,)] and counted(db)["jobs"] == 0


async def test_a_record_that_differs_in_the_copy_is_named_with_its_field(
    source: tuple[Path, dict[str, Any]], postgres_dsn: str
) -> None:
    db, _ = source
    await copy(db, postgres_dsn)
    [(first_run,)] = rows(db, "SELECT id FROM runs ORDER BY rowid LIMIT 1")
    await pg(postgres_dsn, "UPDATE runs SET priority = 7 WHERE id = %s", first_run)

    done = await copy(db, postgres_dsn)

    assert done.mismatches == (Mismatch("runs", first_run, "field priority differs"),)


async def test_rows_a_gateway_wrote_to_the_copy_since_are_said_not_refused(
    source: tuple[Path, dict[str, Any]], postgres_dsn: str
) -> None:
    db, _ = source
    await copy(db, postgres_dsn)
    store = await PostgresStore.open(postgres_dsn)
    try:
        await store.record(plain_event(500, at=store.runs.clock()), [])
    finally:
        await store.close()

    done = await copy(db, postgres_dsn)

    assert (done.extra, done.mismatches) == ({"events": 1}, ())


# -- refusals: nothing written --------------------------------------------------------------------------


async def test_a_destination_holding_other_data_is_refused_and_left_as_it_was(
    source: tuple[Path, dict[str, Any]], postgres_dsn: str
) -> None:
    db, _ = source
    store = await PostgresStore.open(postgres_dsn)
    try:
        await store.record(plain_event(1, at=NOW), [])
    finally:
        await store.close()

    with pytest.raises(StoreError) as info:
        await copy(db, postgres_dsn)

    assert str(info.value) == (
        f"{postgres_dsn} already holds 1 event and it was not copied from this source: gateway copy writes "
        "only into an empty database, or finishes its own interrupted copy. Copy into a new database "
        "(createdb), or empty this one"
    )
    assert await pg(postgres_dsn, "SELECT key FROM meta WHERE key = 'copied_from'") == []
    assert (await pg_counts(postgres_dsn))["events"] == 1


async def test_a_copy_of_another_file_is_not_resumed_from_this_one(
    source: tuple[Path, dict[str, Any]], postgres_dsn: str, tmp_path: Path, load_config: LoadConfig
) -> None:
    db, _ = source
    await copy(db, postgres_dsn)
    other = tmp_path / "other.db"
    await seed(other, load_config())

    copied_from = (
        rf"it is a copy of {re.escape(str(db))} \(first event evt_\w+\), not of {re.escape(str(other))}"
    )
    with pytest.raises(StoreError, match=copied_from):
        await copy(other, postgres_dsn)


async def test_a_source_at_an_older_schema_is_refused_and_not_migrated(
    tmp_path: Path, postgres_dsn: str
) -> None:
    db = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for migration in MIGRATIONS[:7]:
            conn.executescript(f"BEGIN; {migration.sql}; PRAGMA user_version = {migration.number}; COMMIT;")
    before = (db.read_bytes(), db.stat().st_mtime_ns)

    with pytest.raises(StoreError) as info:
        await copy(db, postgres_dsn)

    assert str(info.value) == (
        f"{db} has schema version 7, older than this gateway's ({len(MIGRATIONS)}); a copy never writes "
        f"its source: run gateway migrate --db {db} first (with its gateway stopped, or let gateway serve "
        "migrate it at start), then copy again"
    )
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db"]  # no -wal, no -shm either
    assert await pg(postgres_dsn, "SELECT to_regclass('events')") == [(None,)]  # the destination untouched


def another_programs(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (x)")
        conn.commit()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no database at {p} (--from names the gateway's SQLite file)"),
        (lambda p: p.mkdir(), "{p} is not a file (--from names the gateway's SQLite file)"),
        (
            lambda p: p.write_text("id,name\n1,x\n" * 100),
            "{p} is not a gateway database (file is not a database)",
        ),
        (another_programs, "{p} is not a gateway database (it has no schema version)"),
    ],
    ids=["missing", "a directory", "a text file", "another program's SQLite file"],
)
async def test_a_source_that_is_not_a_gateway_database_is_refused(
    tmp_path: Path, postgres_dsn: str, make: Callable[[Path], Any], message: str
) -> None:
    path = tmp_path / "gateway.db"
    make(path)
    with pytest.raises(StoreError) as info:
        await copy(path, postgres_dsn)
    assert str(info.value) == message.format(p=path)


async def test_a_destination_that_is_not_postgresql_is_refused(
    source: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    db, _ = source
    with pytest.raises(StoreError, match=r"^other\.db is not a PostgreSQL address \(postgresql://"):
        await copy(db, "other.db")

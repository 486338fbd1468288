"""A database file deleted or replaced under an open store (files.py): SQLite keeps writing the file it
opened, which no restart will find, so the commit that notices is refused, and so is every write after it;
/readyz's probe says why, the log says it once, what the store had is copied beside the path and the old
-wal and -shm are set aside. Real SQLite files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway import Context, task
from gateway.errors import StoreUnavailable
from gateway.execution.executor import Executor, ExecutorOptions
from gateway.store.sqlite.store import SQLiteStore
from tests.support.clock import Clock
from tests.support.records import enqueue, push_event, queued_run

NOW = 1_700_000_000.0


async def record(store: SQLiteStore, name: str) -> None:
    event = push_event(name, NOW)
    await store.record(replace(event, dedupe_key=name), [queued_run(name, event)])


def refusal(db: Path, change: str) -> str:
    return (
        f"{db} was deleted or replaced while the gateway was serving ({change}): nothing is acknowledged "
        "until the gateway is restarted on a database file (see the log)"
    )


def rescued(directory: Path) -> Path:
    [copy] = directory.glob("gateway.db.rescued-*")
    return copy


def events_in(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [key for (key,) in conn.execute("SELECT id FROM events ORDER BY id")]


def errors_naming(caplog: pytest.LogCaptureFixture, db: Path) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and str(db) in r.getMessage()
    ]


async def test_a_deleted_database_refuses_the_commit_that_notices_and_every_write_after_it(
    open_store: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await open_store()
    db = tmp_path / "gateway.db"
    await record(store, "first")
    inode = db.stat().st_ino
    db.unlink()  # rm gateway.db: its -wal and -shm stay

    change = f"gateway.db missing, was inode {inode}"
    for name in ("second", "third"):
        with pytest.raises(StoreUnavailable) as refused:
            await record(store, name)
        assert str(refused.value) == refusal(db, change)
    with pytest.raises(StoreUnavailable) as unready:
        await store.probe()

    copy = rescued(tmp_path)
    stamp = copy.name.removeprefix("gateway.db.rescued-")
    assert str(unready.value) == (
        f"{refusal(db, change).removesuffix(' (see the log)')}. "
        f"Everything it had stored is copied to {copy}; "
        "the old file's gateway.db-wal and gateway.db-shm, "
        f"which SQLite would read over any file put at {db}, "
        f"are renamed gateway.db-wal.old-{stamp} and gateway.db-shm.old-{stamp}. "
        f"Stop it with SIGTERM, then start it on {copy} moved to {db} (every delivery it acknowledged), "
        "or on a `gateway backup` copy (docs/operations.md#restore)"
    )
    assert errors_naming(caplog, db) == [f"store: {unready.value}"]  # once, not per write
    # The write whose commit noticed went to the unlinked file, so the copy has it; the one after never ran.
    assert events_in(copy) == ["evt_first", "evt_second"]
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600  # it holds every stored payload
    assert sorted(path.name for path in tmp_path.glob("gateway.db*")) == [
        "gateway.db-shm.old-" + stamp,
        "gateway.db-wal.old-" + stamp,
        copy.name,
    ]  # nothing made a new, empty database at the path meanwhile

    await store.close()  # SIGTERM, then the move the message says
    copy.rename(db)
    again = await open_store(check=10.0)
    assert [await again.reads.count_events(), await again.probe()] == [2, None]


async def test_a_database_replaced_by_another_file_is_refused_and_the_new_file_left_as_it_was_put(
    open_store: Callable[..., Any], tmp_path: Path
) -> None:
    store = await open_store()
    db = tmp_path / "gateway.db"
    await record(store, "first")
    other = await open_store("other.db")
    await record(other, "other")
    await other.close()
    before, after = db.stat().st_ino, (tmp_path / "other.db").stat().st_ino
    os.replace(tmp_path / "other.db", db)  # mv other.db gateway.db

    with pytest.raises(StoreUnavailable) as refused:
        await record(store, "second")
    assert str(refused.value) == refusal(db, f"gateway.db now inode {after}, was {before}")
    with pytest.raises(StoreUnavailable) as unready:
        await store.probe()
    assert f"or on the file now at {db}, or on a `gateway backup` copy" in str(unready.value)
    assert events_in(rescued(tmp_path)) == ["evt_first", "evt_second"]
    # The old -wal is set aside: left beside the new file, whatever opens the path reads it over the new file
    # (SQLite does not checkpoint a moved file's -wal at close, so it stays even after a clean stop).
    assert events_in(db) == ["evt_other"]
    await store.close()
    assert events_in(db) == ["evt_other"]


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
async def test_a_deleted_wal_or_shm_file_is_a_lost_database_too(
    open_store: Callable[..., Any], tmp_path: Path, suffix: str
) -> None:
    """Commits go to the -wal: deleted, they are in no file a restart reads. A deleted -shm splits the WAL
    index: a `gateway replay` would open a new one and write frames over the gateway's."""
    store = await open_store()
    await record(store, "first")
    side = tmp_path / f"gateway.db{suffix}"
    inode = side.stat().st_ino
    side.unlink()

    with pytest.raises(StoreUnavailable) as refused:
        await record(store, "second")
    assert str(refused.value) == refusal(
        tmp_path / "gateway.db", f"gateway.db{suffix} missing, was inode {inode}"
    )
    assert events_in(rescued(tmp_path)) == ["evt_first", "evt_second"]
    assert not list(tmp_path.glob("*.old-*"))  # the database is still at its path: its side files stay


async def test_a_symlink_pointed_at_another_database_is_a_replaced_database(
    open_store: Callable[..., Any], tmp_path: Path
) -> None:
    first = await open_store("first.db")
    await first.close()
    second = await open_store("second.db")
    await second.close()
    link = tmp_path / "gateway.db"
    link.symlink_to(tmp_path / "first.db")
    store = await open_store()
    await record(store, "first")
    was = (tmp_path / "first.db").stat().st_ino
    link.unlink()
    link.symlink_to(tmp_path / "second.db")  # a restart would open second.db

    with pytest.raises(StoreUnavailable) as refused:
        await record(store, "second")
    now = (tmp_path / "second.db").stat().st_ino
    assert str(refused.value) == refusal(link, f"gateway.db now inode {now}, was {was}")


async def test_when_no_copy_can_be_saved_the_message_says_so_and_why(
    open_store: Callable[..., Any], tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    store = await open_store("data/gateway.db")
    await record(store, "first")
    for path in (tmp_path / "data").iterdir():  # rm -r data
        path.unlink()
    (tmp_path / "data").rmdir()

    with pytest.raises(StoreUnavailable):
        await record(store, "second")
    with pytest.raises(StoreUnavailable) as unready:
        await store.probe()
    db = tmp_path / "data" / "gateway.db"
    assert str(unready.value).startswith(
        f"{db} was deleted or replaced while the gateway was serving (gateway.db missing, was inode "
    )
    assert (
        ": nothing is acknowledged until the gateway is restarted on a database file. No copy of what it had "
        "stored could be saved ([Errno 2] No such file or directory: "
    ) in str(unready.value)
    assert str(unready.value).endswith(
        "; it is lost once it stops. Stop it with SIGTERM, then start it on a `gateway backup` copy "
        "(docs/operations.md#restore)"
    )


async def test_a_run_that_ends_after_the_database_was_deleted_keeps_its_end_and_never_runs_again(
    open_store: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store: SQLiteStore = await open_store()
    calls: list[int] = []

    @task(id="ship")
    async def ship(payload: dict[str, int], ctx: Context) -> dict[str, int]:
        calls.append(ctx.attempt)
        (tmp_path / "gateway.db").unlink()  # while the task runs: its end cannot reach the database
        return {"shipped": payload["n"]}

    options = ExecutorOptions(poll=0.05, drain_timeout=0.2)
    executor = Executor(store.runs, {ship.id: ship}, options, clock=Clock())
    run = await enqueue(store, Clock(), ship, {"n": 7})
    stop = asyncio.Event()
    runner = asyncio.create_task(executor.run(stop))
    held = f"could not record the end of run {run.id} attempt 1 ("
    for _ in range(500):
        if caplog.text.count(held) >= 3:  # refused, and tried again
            break
        await asyncio.sleep(0.01)
    assert caplog.text.count(held) >= 3
    assert executor.busy() == {"ship": 1}  # the end is kept, in this process's slots, not reported as done
    with pytest.raises(StoreUnavailable):
        await store.runs.recover(now=NOW)
    stop.set()
    await asyncio.wait_for(runner, timeout=10)
    assert calls == [1]


async def test_the_heartbeat_never_creates_a_database_where_one_was_deleted(
    open_store: Callable[..., Any], tmp_path: Path
) -> None:
    store = await open_store()
    (tmp_path / "gateway.db").unlink()
    assert store.runs.heartbeat_blocking(["run_x"], NOW) == 0
    assert not (tmp_path / "gateway.db").exists()

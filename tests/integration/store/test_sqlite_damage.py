"""A damaged database file: found at open by PRAGMA quick_check (`gateway serve` passes a time budget), and
while serving, where writes touching the damaged pages fail and others still commit: /readyz's probe then
fails until a restart, however many writes commit meanwhile. Real SQLite files, damaged on disk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import StoreError, StoreUnavailable
from gateway.store.sqlite import schema
from gateway.store.sqlite.store import SQLiteStore
from tests.support.database import damage
from tests.support.records import push_event, queued_run

NOW = 1_700_000_000.0
DEDUPE_INDEX = "sqlite_autoindex_events_2"  # UNIQUE (source, dedupe_key)


async def record(store: SQLiteStore, key: str) -> None:
    event = push_event(key, NOW)
    await store.record(replace(event, dedupe_key=key), [queued_run(key, event)])


async def filled(open_store: Callable[..., Any]) -> SQLiteStore:
    """A store whose dedupe index spans several leaf pages: keys k-0000 to k-0599."""
    store: SQLiteStore = await open_store()
    await asyncio.gather(*(record(store, f"k-{n:04d}") for n in range(600)))
    return store


def fix(db: Path) -> str:
    return (
        "restore a `gateway backup` copy (docs/operations.md#restore), "
        f"or salvage what SQLite can still read: sqlite3 {db} .recover | sqlite3 {db}.recovered, "
        f"check it with PRAGMA quick_check, and move it to {db}"
    )


async def test_a_damaged_page_keeps_the_probe_failing_while_writes_elsewhere_still_commit(
    open_store: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await filled(open_store)
    db = tmp_path / "gateway.db"
    damage(db, DEDUPE_INDEX, leaf=0)  # the page holding k-0000, k-0001, ...

    for key in ("k-0000a", "k-0001a"):  # their index entries belong on the damaged page
        with pytest.raises(StoreUnavailable, match="database disk image is malformed"):
            await record(store, key)
    await record(store, "z-0")  # the last page: it commits, and so would a probe's row
    await record(store, "z-1")

    with pytest.raises(StoreUnavailable) as unready:
        await store.probe()
    assert str(unready.value) == (
        f"{db} is corrupted (database disk image is malformed): "
        "writes that touch the damaged pages fail, and /readyz answers 503 until the gateway is restarted "
        f"on a sound file; stop it, then {fix(db)}"
    )
    said = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "is corrupted" in r.message
    ]
    assert said == [f"store: {unready.value}"]  # once, though two batches met it


async def test_serve_refuses_a_damaged_file_at_open_naming_the_file_the_problem_and_the_fix(
    open_store: Callable[..., Any], tmp_path: Path
) -> None:
    await (await filled(open_store)).close()
    db = tmp_path / "gateway.db"
    page = damage(db, DEDUPE_INDEX, leaf=1)

    with pytest.raises(StoreError) as refused:
        await SQLiteStore.open(db, check=10.0)
    message = str(refused.value)
    assert message.startswith(f"{db} is corrupted: PRAGMA quick_check found ")
    assert f"Page {page}" in message  # SQLite's own words for what is wrong, and where
    assert message.endswith(f". Nothing was served; {fix(db)}")
    # Commands that only read or fix records (gateway events, backup) still open it: no check there.
    await (await SQLiteStore.open(db)).close()


async def test_a_file_that_is_not_a_database_is_called_corrupted_with_the_fix(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    db.write_bytes(bytes(range(256)) * 64)  # its header page included
    with pytest.raises(StoreError) as refused:
        await SQLiteStore.open(db, check=10.0)
    assert str(refused.value) == f"{db} is corrupted (file is not a database): {fix(db)}"


async def test_a_sound_file_passes_the_check_and_the_log_says_how_long_it_took(
    open_store: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await (await filled(open_store)).close()
    caplog.set_level(logging.INFO, logger="gateway.store")
    store = await open_store(check=10.0)
    await store.probe()
    [said] = [r.getMessage() for r in caplog.records if "quick_check" in r.getMessage()]
    assert said.startswith(f"store: {tmp_path / 'gateway.db'} passed PRAGMA quick_check (")


def test_a_check_cut_short_is_logged_and_the_file_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What happens once the budget's timer interrupts the check: here an interrupt during the statement
    stands in for the timer, which fires after ``budget`` seconds on a file too large to read by then."""
    db = tmp_path / "big.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.set_progress_handler(conn.interrupt, 1)  # interrupt from inside the running statement
        schema.quick_check(conn, str(db), budget=10.0)
    [said] = [r for r in caplog.records if r.name == "gateway.store"]
    assert (said.levelno, said.getMessage()) == (
        logging.WARNING,
        f"store: PRAGMA quick_check of {db} (0 MB) was stopped after 10 s, part of the file unchecked; the "
        f"gateway serves on it. Check it while the gateway is stopped: sqlite3 {db} 'PRAGMA quick_check'",
    )

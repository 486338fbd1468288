"""`gateway serve` when its database file itself goes wrong: deleted (`rm gateway.db`) or replaced
(`mv other.db gateway.db`) while serving, whereupon SQLite would go on writing a file no restart finds, and
damaged, at start or while serving. Deliveries get 503 + Retry-After instead of a 202 that a restart loses,
/readyz says why, and the log says it once; a damaged file stops start-up with exit 1 and the fix."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.database import damage, on_disk, stored
from tests.support.deliveries import github_headers, push
from tests.support.process import Gateway, free_port

pytestmark = pytest.mark.acceptance

PUSH = push("abc")
UNSTORED = {"error": "store_unavailable", "detail": "the event could not be stored; retry later"}
DEDUPE_INDEX = "sqlite_autoindex_events_2"  # UNIQUE (source, dedupe_key): GitHub's X-GitHub-Delivery


def deliver(gw: Gateway, delivery: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery=delivery), timeout=30
    )


def refused(gw: Gateway, delivery: str) -> None:
    answer = deliver(gw, delivery)
    assert (answer.status_code, answer.headers.get("retry-after"), answer.json()) == (503, "5", UNSTORED)


def unready(gw: Gateway) -> str:
    """/readyz's reason, which must be a 503 store_unavailable."""
    answer = httpx.get(f"{gw.url}/readyz", timeout=30)
    assert (answer.status_code, answer.headers.get("retry-after"), answer.json()["error"]) == (
        503,
        "5",
        "store_unavailable",
    )
    detail: str = answer.json()["detail"]
    return detail.removeprefix("the database is not writable: ")


def errors(gw: Gateway, naming: str) -> list[str]:
    """The gateway.store ERROR lines of the gateway's JSON log that name ``naming``; and, as the only other
    ERROR line naming it, at most the executor's one line saying it pauses."""
    lines = [json.loads(line) for line in gw.log.read_text().splitlines() if line.startswith("{")]
    named = [x for x in lines if x["level"] == "error" and naming in x["message"]]
    others = [x["message"] for x in named if x["logger"] != "gateway.store"]
    assert len(others) <= 1 and all(m.startswith("executor paused: the store failed (") for m in others)
    return [x["message"] for x in named if x["logger"] == "gateway.store"]


def statuses(db: Path) -> list[str]:
    """The runs' statuses, on a connection closed at once: one left open would keep the gateway's last
    connection from checkpointing its -wal into the file when it stops."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return [status for (status,) in conn.execute("SELECT DISTINCT status FROM runs")]


def settled(gw: Gateway) -> None:
    """Wait until every stored run has completed: nothing is in flight on the file."""
    deadline = time.monotonic() + 20
    while statuses(gw.db) != ["completed"]:
        assert time.monotonic() < deadline, statuses(gw.db)
        time.sleep(0.05)


def stop(gw: Gateway) -> None:
    gw.signal(signal.SIGTERM)
    assert gw.wait(timeout=30) == 0, gw.log.read_text()


def test_rm_of_the_database_while_serving_stops_the_202s_says_so_once_and_loses_nothing_acknowledged(
    gateway: Callable[..., Gateway],
) -> None:
    gw = gateway()
    assert deliver(gw, "before-0").status_code == 202
    settled(gw)
    inode = gw.db.stat().st_ino
    gw.db.unlink()  # rm gateway.db, as an operator or a cleanup script would

    refused(gw, "after-0")  # its commit went to the unlinked file: refused, not acknowledged
    refused(gw, "after-1")
    said = unready(gw)
    assert said.startswith(
        f"{gw.db} was deleted or replaced while the gateway was serving (gateway.db missing, was inode "
        f"{inode}): nothing is acknowledged until the gateway is restarted on a database file. Everything it "
        f"had stored is copied to {gw.db}.rescued-"
    )
    assert errors(gw, str(gw.db)) == [f"store: {said}"]
    for n in range(5):  # more deliveries and probes: no more ERROR lines naming the file
        refused(gw, f"after-{n}")
        unready(gw)
    assert errors(gw, str(gw.db)) == [f"store: {said}"]
    assert healthy(gw)

    stop(gw)
    [copy] = gw.db.parent.glob("gateway.db.rescued-*")
    copy.rename(gw.db)  # what the message says to do
    gw.start()
    assert deliver(gw, "after-0").status_code == 200  # stored once, in the copy: a duplicate now
    assert deliver(gw, "after-1").status_code == 202
    settled(gw)
    stop(gw)
    assert on_disk(gw.db) == stored("before-0", "after-0", "after-1")


def test_a_database_replaced_while_serving_is_refused_and_the_new_file_is_served_as_it_was_put(
    gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    gw = gateway()
    other = Gateway(gw.routes, tmp_path / "other.db", tmp_path / "other.log")
    try:  # another gateway's database, with one delivery of its own
        other.start()
        assert deliver(other, "other-0").status_code == 202
        settled(other)
        stop(other)
    finally:
        other.stop()
    assert deliver(gw, "before-0").status_code == 202
    settled(gw)
    was, now = gw.db.stat().st_ino, other.db.stat().st_ino
    other.db.replace(gw.db)  # mv other.db gateway.db

    refused(gw, "after-0")
    said = unready(gw)
    assert said.startswith(
        f"{gw.db} was deleted or replaced while the gateway was serving (gateway.db now inode {now}, was "
        f"{was}): nothing is acknowledged until the gateway is restarted on a database file."
    )
    assert f"or on the file now at {gw.db}, or on a `gateway backup` copy" in said
    assert errors(gw, str(gw.db)) == [f"store: {said}"]

    stop(gw)
    gw.start()  # on the file now at the path: the old file's -wal was set aside, so it is read as it was put
    assert deliver(gw, "after-0").status_code == 202
    settled(gw)
    stop(gw)
    assert on_disk(gw.db) == stored("other-0", "after-0")


def healthy(gw: Gateway) -> bool:
    return httpx.get(f"{gw.url}/healthz", timeout=10).json() == {"status": "ok"}


async def _fill(gw: Gateway, keys: list[str]) -> None:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        gate = asyncio.Semaphore(16)

        async def one(key: str) -> None:
            async with gate:
                answer = await client.post(
                    "/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery=key)
                )
                assert answer.status_code == 202, answer.text

        await asyncio.gather(*(one(key) for key in keys))


def filled(gw: Gateway) -> None:
    """Deliveries k-0000 to k-0599: their dedupe index spans several leaf pages."""
    asyncio.run(_fill(gw, [f"k-{n:04d}" for n in range(600)]))
    settled(gw)


def fix(db: Path) -> str:
    return (
        "restore a `gateway backup` copy (docs/operations.md#restore), "
        f"or salvage what SQLite can still read: sqlite3 {db} .recover | sqlite3 {db}.recovered, "
        f"check it with PRAGMA quick_check, and move it to {db}"
    )


def test_a_database_damaged_while_serving_makes_readyz_503_until_a_restart_though_other_deliveries_commit(
    gateway: Callable[..., Gateway],
) -> None:
    gw = gateway()
    filled(gw)
    assert httpx.get(f"{gw.url}/readyz", timeout=10).status_code == 200
    damage(gw.db, DEDUPE_INDEX, leaf=0)  # the page holding k-0000, k-0001, ...

    refused(gw, "k-0000a")  # its index entry belongs on the damaged page
    assert deliver(gw, "z-0").status_code == 202  # the last page is sound: a delivery commits
    said = unready(gw)
    assert said == (
        f"{gw.db} is corrupted (database disk image is malformed): writes that touch the damaged pages fail, "
        f"and /readyz answers 503 until the gateway is restarted on a sound file; stop it, then {fix(gw.db)}"
    )
    assert deliver(gw, "z-1").status_code == 202
    assert unready(gw) == said  # still: a damaged file does not heal
    assert errors(gw, "is corrupted") == [f"store: {said}"]


def test_a_database_damaged_before_start_stops_serve_with_exit_1_before_it_listens(
    gateway: Callable[..., Gateway],
) -> None:
    gw = gateway()
    filled(gw)
    stop(gw)
    page = damage(gw.db, DEDUPE_INDEX, leaf=1)

    port = free_port()
    argv = ["serve", "--routes", str(gw.routes), "--db", str(gw.db), "--port", str(port)]
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *argv], capture_output=True, text=True, timeout=60, cwd=gw.db.parent
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"gateway serve: {gw.db} is corrupted: PRAGMA quick_check found ")
    assert f"Page {page}" in last
    assert last.endswith(f". Nothing was served; {fix(gw.db)}")
    assert "Traceback" not in done.stderr
    with socket.socket() as s:  # nothing listened
        assert s.connect_ex(("127.0.0.1", port)) != 0

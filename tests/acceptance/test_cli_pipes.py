"""`gateway` as a real process whose reader goes away early (`gateway events | head`, `| true`): it exits
quietly, as Unix tools do, with no traceback and no "Exception ignored" on stderr."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.model import Event, Headers, Payload
from gateway.store.sqlite.store import SQLiteStore

pytestmark = pytest.mark.acceptance


def seed(db: Path, count: int) -> None:
    async def go() -> None:
        store = await SQLiteStore.open(db)
        try:
            for n in range(count):
                body = b'{"n": %d}' % n
                await store.record(
                    Event(
                        f"evt_{n:06d}",
                        "open",
                        "ping",
                        None,
                        "unrouted",
                        1_800_000_000.0 + n,
                        "POST",
                        "http://gw/hooks/open",
                        Headers(),
                        (),
                        body,
                        Payload("json", {"n": n}),
                        "unverified",
                    ),
                    [],
                )
        finally:
            await store.close()

    asyncio.run(go())


@pytest.mark.parametrize("limit", ["3", "500"])  # a few lines (flushed at exit) and many (a full pipe)
def test_a_listing_whose_reader_closes_at_once_exits_quietly(tmp_path: Path, limit: str) -> None:
    db = tmp_path / "gateway.db"
    seed(db, 500)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "events", "--db", str(db), "--limit", limit, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line: `| true`
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141  # 128 + SIGPIPE, as a Unix tool killed by it
    assert err == ""


def test_a_reader_that_takes_the_first_lines_then_leaves_sees_them(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    seed(db, 500)
    # ~150 KB of JSON: more than a pipe holds, so the writer is still writing when `head` leaves.
    shell = f"{sys.executable} -m gateway events --db {db} --limit 500 --json | head -n 3"
    done = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["{", '  "data": [', "    {"]
    assert done.stderr == ""

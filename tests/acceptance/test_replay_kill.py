"""A bulk replay killed with SIGKILL mid-way and resumed replays every event exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.model import Headers, Inbound, Verdict
from gateway.routes import load as config_mod
from gateway.routes.ingest import admit
from gateway.store.sqlite.store import SQLiteStore
from tests.support.routes import ROUTES

pytestmark = pytest.mark.acceptance
EVENTS = 4000


async def _populate(config: config_mod.Config, db: Path, n: int) -> None:
    store = await SQLiteStore.open(db)
    try:
        now = time.time() - 60
        writes = []
        for i in range(n):
            body = json.dumps({"ref": "refs/heads/main", "after": str(i), "repository": {"full_name": "o/r"}})
            request = Inbound(
                "POST", "http://gw/hooks/github", Headers([("X-GitHub-Event", "push")]), body.encode()
            )
            admission = admit(
                config, config.sources["github"], request, Verdict(True, "github"), now + i / 1e4
            )
            writes.append(store.record(admission.event, admission.runs))
        await asyncio.gather(*writes)  # group-committed: a few transactions, not one per event
    finally:
        await store.close()


def _gateway(*argv: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_a_bulk_replay_killed_mid_way_and_resumed_replays_each_event_once(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    routes = write_routes(ROUTES)
    config = config_mod.load(routes, {})
    db = tmp_path / "gw.db"
    asyncio.run(_populate(config, db, EVENTS))

    argv = ("replay", "--source", "github", "--routes", str(routes), "--db", str(db))
    with _gateway(*argv, cwd=tmp_path) as proc:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # "job job_…: replay of 4000 event(s)"
        progress = proc.stderr.readline()  # after the first chunk: "job job_…: 100/4000 item(s), …"
        os.kill(proc.pid, signal.SIGKILL)
        _, rest = proc.communicate(timeout=10)
    assert first.startswith("job job_") and f"replay of {EVENTS} event(s)" in first, first + rest
    assert "item(s)" in progress, progress
    job_id = first.split()[1].rstrip(":")

    with sqlite3.connect(db) as conn:
        status, done = conn.execute("SELECT status, done FROM jobs WHERE id = ?", (job_id,)).fetchone()
        replays = conn.execute("SELECT count(*) FROM events WHERE replay_of IS NOT NULL").fetchone()[0]
    assert status == "running" and 0 < done < EVENTS
    assert replays == done  # each chunk's events were committed with the job's progress, or not at all

    # The killed holder's lease has not lapsed, but its process is gone: --resume takes the job at once.
    with _gateway(
        "jobs", job_id, "--resume", "--routes", str(routes), "--db", str(db), cwd=tmp_path
    ) as resumed:
        out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert out.strip() == f"job {job_id} completed: {EVENTS} item(s), {2 * EVENTS} run(s) queued"
    with sqlite3.connect(db) as conn:
        counts = conn.execute(
            "SELECT count(*), min(n), max(n) FROM "
            "(SELECT count(*) AS n FROM events WHERE replay_of IS NOT NULL GROUP BY replay_of)"
        ).fetchone()
        originals = conn.execute("SELECT count(*) FROM events WHERE replay_of IS NULL").fetchone()[0]
    assert counts == (EVENTS, 1, 1) and originals == EVENTS

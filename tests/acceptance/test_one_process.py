"""Two `gateway serve` processes on one database file, the second through a symlink: both serve, and neither
runs the other's running runs again. (Before the workers table, a lock allowed one process per file; now a
live worker's runs are never recovered: its process runs and its leases are renewed.)"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.deliveries import github_headers
from tests.support.process import Gateway

pytestmark = pytest.mark.acceptance

ROUTES = """
tasks: [{module}]
sources:
  github: {verify: github, secret: gh-secret}
routes:
  - {id: slow, source: github, event: push, task: slow}
"""

TASKS = """
import asyncio
from gateway import task

@task(id="slow")
async def slow(payload, ctx):
    await asyncio.sleep(3)
    return "done"
"""


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return conn.execute(sql).fetchall()


def wait_for(db: Path, sql: str, expected: list[tuple[object, ...]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while query(db, sql) != expected:
        assert time.monotonic() < deadline, query(db, sql)
        time.sleep(0.05)


def test_a_second_gateway_through_a_symlink_serves_too_and_never_reruns_the_first_ones_run(
    gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    first = gateway(ROUTES, TASKS)
    body = b'{"ref": "refs/heads/main"}'
    answer = httpx.post(f"{first.url}/hooks/github", content=body, headers=github_headers(body), timeout=10)
    assert answer.status_code == 202
    wait_for(first.db, "SELECT status FROM runs", [("executing",)])

    link = tmp_path / "elsewhere" / "alias.db"
    link.parent.mkdir()
    link.symlink_to(first.db)
    second = Gateway(first.routes, link, tmp_path / "second.log")
    try:
        second.start()  # its start-up recovery leaves the first one's running run alone
        other = b'{"ref": "refs/heads/dev"}'
        headers = github_headers(other, delivery="d-2")
        assert (
            httpx.post(f"{second.url}/hooks/github", content=other, headers=headers, timeout=10).status_code
            == 202
        )
        wait_for(first.db, "SELECT status FROM runs ORDER BY rowid", [("completed",), ("completed",)])
    finally:
        second.stop()
    attempts = query(first.db, "SELECT run_id, number, outcome FROM attempts ORDER BY run_id, number")
    assert [(n, outcome) for _, n, outcome in attempts] == [(1, "completed"), (1, "completed")]
    kinds = query(first.db, "SELECT kind, COUNT(*) FROM workers GROUP BY kind")
    assert kinds == [("serve", 2)]

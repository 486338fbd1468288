"""What a task logged before `gateway serve` was killed (SIGKILL, mid-attempt) stays with its crashed attempt:
the heartbeat saves running attempts' logs in batches, not a write per line."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import httpx
import pytest

from tests.support.database import rows
from tests.support.process import Gateway

pytestmark = pytest.mark.acceptance

TASKS = """
import asyncio
from gateway import task

@task(id="long-haul", timeout=None)
async def long_haul(payload, ctx):
    if ctx.attempt == 1:
        for n in range(200):
            ctx.log.info("copied batch %d", n)
        ctx.log.warning("halfway")
        await asyncio.sleep(3600)  # the process is killed here
    ctx.log.info("resumed")
    return "done"
"""

ROUTES = """
tasks: [{module}]
sources:
  open: {verify: none}
routes:
  - {id: haul, source: open, task: long-haul}
"""


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def logged(gw: Gateway, run_id: str, number: int) -> list[str]:
    found = rows(gw.db, "SELECT logs FROM attempts WHERE run_id = ? AND number = ?", run_id, number)
    return [line["message"] for line in json.loads(str(found[0][0]))] if found else []


def test_a_killed_attempt_keeps_what_it_logged(gateway: Callable[..., Gateway]) -> None:
    gw = gateway(ROUTES, TASKS)
    answer = httpx.post(f"{gw.url}/hooks/open", content=b"{}", headers={"Content-Type": "application/json"})
    [run] = answer.json()["runs"]
    # Saved while the attempt runs (within about a second), before anything ends it.
    wait_for(lambda: "halfway" in logged(gw, run["id"], 1), "the running attempt's logs on disk")
    [(outcome,)] = rows(gw.db, "SELECT outcome FROM attempts WHERE run_id = ? AND number = 1", run["id"])
    assert outcome is None

    gw.signal(signal.SIGKILL)
    gw.wait()
    gw.start()
    wait_for(
        lambda: rows(gw.db, "SELECT status FROM runs WHERE id = ?", run["id"]) == [("completed",)],
        "the recovered run to complete",
    )
    attempts = rows(gw.db, "SELECT number, outcome FROM attempts WHERE run_id = ? ORDER BY number", run["id"])
    assert attempts == [(1, "crashed"), (2, "completed")]
    assert logged(gw, run["id"], 1) == [f"copied batch {n}" for n in range(200)] + ["halfway"]
    assert logged(gw, run["id"], 2) == ["resumed"]

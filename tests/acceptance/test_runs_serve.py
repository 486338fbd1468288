"""`gateway serve` runs tasks: retries end in success, a kill -9 mid-task is recovered, sync work never blocks
ingest."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.database import rows
from tests.support.process import Gateway

pytestmark = pytest.mark.acceptance

TASKS = """
import asyncio, time
from pathlib import Path
from gateway import task

@task(id="flaky", retry={"max_attempts": 3, "min_timeout": 0.05, "max_timeout": 0.1})
async def flaky(payload, ctx):
    ctx.log.info("attempt %d", ctx.attempt)
    if ctx.attempt < 3:
        raise ConnectionError(f"upstream unavailable on attempt {ctx.attempt}")
    return {"ok": True, "attempt": ctx.attempt}

@task(id="survivor", timeout=None)
async def survivor(payload, ctx):
    if ctx.attempt == 1:
        Path(payload["marker"]).write_text("started")
        await asyncio.sleep(3600)
    return "recovered"

@task(id="sleepy-sync")
def sleepy_sync(payload, ctx):
    Path(payload["marker"]).write_text("started")
    time.sleep(2)
    return "slept"

@task(id="noop")
async def noop(payload, ctx):
    return None

@task(id="blocking-sync", timeout=None)
def blocking_sync(payload, ctx):
    Path(payload["marker"]).write_text("started")
    release = Path(payload["release"])
    for _ in range(600):  # blocking sync code holding its worker thread, up to 30 s
        if release.exists():
            return "released"
        time.sleep(0.05)
    return "gave up"

@task(id="blocking-async", timeout=None)
async def blocking_async(payload, ctx):
    Path(payload["marker"]).write_text("started")
    release = Path(payload["release"])
    for _ in range(600):  # sync code inside an async task: its event loop is held, up to 30 s
        if release.exists():
            return "released"
        time.sleep(0.05)
    return "gave up"
"""

ROUTES = """
tasks: [{module}]
sources:
  open:
    verify: none
    event_type: body.kind
routes:
  - {id: flaky, source: open, event: flaky, task: flaky}
  - {id: survivor, source: open, event: survivor, task: survivor}
  - {id: sleepy, source: open, event: sleepy, task: sleepy-sync}
  - {id: noop, source: open, event: noop, task: noop}
  - {id: blocking, source: open, event: blocking, task: blocking-sync}
  - {id: blocking-async, source: open, event: blocking-async, task: blocking-async}
"""


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def post(gw: Gateway, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/hooks/open", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )


@pytest.fixture
def serve(gateway: Callable[..., Gateway]) -> Callable[[], Gateway]:
    def start() -> Gateway:
        return gateway(ROUTES, TASKS)

    return start


def run_status(db: Path, run_id: str) -> str:
    return str(rows(db, "SELECT status FROM runs WHERE id = ?", run_id)[0][0])


def test_a_task_that_fails_twice_then_succeeds_ends_completed_with_three_attempts(
    serve: Callable[[], Gateway],
) -> None:
    gw = serve()
    answer = post(gw, {"kind": "flaky"})
    assert answer.status_code == 202
    [run] = answer.json()["runs"]
    wait_for(lambda: run_status(gw.db, run["id"]) == "completed", "the flaky run to complete")
    [(attempts, output)] = rows(gw.db, "SELECT attempts, output FROM runs WHERE id = ?", run["id"])
    assert (attempts, json.loads(str(output))) == (3, {"ok": True, "attempt": 3})
    outcomes = rows(gw.db, "SELECT outcome FROM attempts WHERE run_id = ? ORDER BY number", run["id"])
    assert outcomes == [("failed",), ("failed",), ("completed",)]


def test_kill_9_while_a_task_executes_is_recovered_after_restart(
    serve: Callable[[], Gateway], tmp_path: Path
) -> None:
    gw = serve()
    marker = tmp_path / "survivor-started"
    answer = post(gw, {"kind": "survivor", "marker": str(marker)})
    [run] = answer.json()["runs"]
    wait_for(marker.exists, "the task to start")
    assert run_status(gw.db, run["id"]) == "executing"
    gw.signal(signal.SIGKILL)
    gw.wait()
    gw.start()
    wait_for(lambda: run_status(gw.db, run["id"]) == "completed", "the recovered run to complete")
    assert rows(gw.db, "SELECT crashes, attempts FROM runs WHERE id = ?", run["id"]) == [(1, 1)]
    outcomes = rows(gw.db, "SELECT outcome FROM attempts WHERE run_id = ? ORDER BY number", run["id"])
    assert outcomes == [("crashed",), ("completed",)]


def test_a_blocking_sync_task_does_not_hold_up_ingest(serve: Callable[[], Gateway], tmp_path: Path) -> None:
    gw = serve()
    marker, release = tmp_path / "blocking", tmp_path / "release"
    [blocker] = post(gw, {"kind": "blocking", "marker": str(marker), "release": str(release)}).json()["runs"]
    wait_for(marker.exists, "the sync task to start blocking")
    answers = [post(gw, {"kind": "noop", "n": i}) for i in range(20)]
    # All twenty were acknowledged, and their runs executed, while the sync task still held its thread.
    assert [a.status_code for a in answers] == [202] * 20
    noop_ids = [a.json()["runs"][0]["id"] for a in answers]
    wait_for(lambda: all(run_status(gw.db, i) == "completed" for i in noop_ids), "the no-op runs to complete")
    assert run_status(gw.db, blocker["id"]) == "executing"
    release.write_text("go")
    wait_for(lambda: run_status(gw.db, blocker["id"]) == "completed", "the sync task to finish")


def test_an_async_task_blocking_its_loop_does_not_hold_up_ingest_and_is_named_in_the_log(
    serve: Callable[[], Gateway], tmp_path: Path
) -> None:
    gw = serve()
    marker, release = tmp_path / "blocking", tmp_path / "release"
    body = {"kind": "blocking-async", "marker": str(marker), "release": str(release)}
    [blocker] = post(gw, body).json()["runs"]
    wait_for(marker.exists, "the async task to start blocking")
    # Acknowledged while the tasks' loop is held: ingest runs on the gateway's own loop.
    answers = [post(gw, {"kind": "noop", "n": i}) for i in range(20)]
    assert [a.status_code for a in answers] == [202] * 20
    assert httpx.get(f"{gw.url}/healthz").status_code == 200
    named = f"run {blocker['id']} (task blocking-async) has blocked the tasks' event loop"
    wait_for(lambda: named in gw.log.read_text(), "the watchdog to name the blocking run")
    noop_ids = [a.json()["runs"][0]["id"] for a in answers]
    assert run_status(gw.db, blocker["id"]) == "executing"
    release.write_text("go")
    wait_for(lambda: run_status(gw.db, blocker["id"]) == "completed", "the blocking task to finish")
    wait_for(lambda: all(run_status(gw.db, i) == "completed" for i in noop_ids), "the no-op runs to complete")


def test_sigterm_lets_a_running_task_finish_within_the_drain_deadline(
    serve: Callable[[], Gateway], tmp_path: Path
) -> None:
    gw = serve()
    marker = tmp_path / "draining"
    [run] = post(gw, {"kind": "sleepy", "marker": str(marker)}).json()["runs"]
    wait_for(marker.exists, "the task to start")
    gw.signal(signal.SIGTERM)
    assert gw.wait(timeout=40) == 0
    assert run_status(gw.db, run["id"]) == "completed"

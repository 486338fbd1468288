"""Task execution in its own processes, as users run it: `gateway serve --executor off` (intake only) beside
real `gateway worker` processes on one SQLite file, and `gateway serve --workers N` supervising its
children. Deliveries are signed and posted over HTTP; what ran is read back from the database."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.deliveries import github_headers
from tests.support.process import Gateway

pytestmark = pytest.mark.acceptance

ROUTES = """
tasks: [{module}]
queues:
  one-at-a-time: {concurrency: 1}
sources:
  github: {verify: github, secret: gh-secret}
routes:
  - id: work
    source: github
    event: push
    task: work
    input: {ms: body.ms, key: body.key, mode: body.mode}
  - id: serial
    source: github
    event: serial
    task: serial
    input: {ms: body.ms}
"""

# A task returns when it ran by this host's one clock: the judge of overlaps. An attempt's started_at is its
# claim's time, taken when the claim was asked for, which can come before the commit that freed the slot.
TASKS = """
import asyncio, ctypes, os, time
from gateway import task

@task(id="work", retry={"max_attempts": 3, "min_timeout": 0.1, "factor": 1}, concurrency_key="payload.key")
async def work(payload, ctx):
    mode = payload.get("mode")
    if mode == "exit" and ctx.attempt == 1:
        os._exit(1)
    if mode == "segfault" and ctx.attempt == 1:
        ctypes.string_at(0)
    if mode == "memory" and ctx.attempt == 1:
        hog = bytearray(1 << 31)  # past the worker's --memory-limit: MemoryError
    start = time.time()
    await asyncio.sleep((payload.get("ms") or 0) / 1000)
    return {"pid": os.getpid(), "start": start, "end": time.time()}

@task(id="serial", queue="one-at-a-time")
async def serial(payload, ctx):
    start = time.time()
    await asyncio.sleep((payload.get("ms") or 0) / 1000)
    return {"pid": os.getpid(), "start": start, "end": time.time()}
"""


class Worker:
    """One `gateway worker` process on the gateway's database."""

    def __init__(self, gw: Gateway, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.log = gw.log.with_name(f"{name}.log")
        argv = [sys.executable, "-m", "gateway", "worker", "--routes", str(gw.routes), "--db", str(gw.db)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*argv, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                cwd=gw.routes.parent,
            )
        self.db = gw.db

    def registered(self, timeout: float = 20.0) -> str:
        """Wait until the worker's row is in the workers table; its id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            with contextlib.suppress(sqlite3.OperationalError):
                found = query(
                    self.db, "SELECT id FROM workers WHERE pid = ? AND stopped_at IS NULL", self.proc.pid
                )
                if found:
                    return str(found[0][0])
            time.sleep(0.05)
        raise AssertionError(f"worker did not register:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(timeout=10)


def query(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return conn.execute(sql, params).fetchall()


def post(gw: Gateway, n: int, *, event: str = "push", **body: object) -> httpx.Response:
    payload = httpx.Request("POST", "/", json={"ref": "refs/heads/main", **body}).content
    headers = github_headers(payload, delivery=f"{event}-{n}", event=event)
    return httpx.post(f"{gw.url}/hooks/github", content=payload, headers=headers, timeout=30)


def settled(db: Path, runs: int, timeout: float = 60.0) -> list[tuple[object, ...]]:
    """Wait until ``runs`` runs exist and all are final; (id, status, worker_id) of each."""
    deadline = time.monotonic() + timeout
    rows: list[tuple[object, ...]] = []
    while time.monotonic() < deadline:
        rows = query(db, "SELECT id, status, worker_id FROM runs ORDER BY rowid")
        if len(rows) == runs and all(r[1] in ("completed", "failed", "crashed") for r in rows):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"runs did not settle: {rows}")


ATTEMPTS = (
    "SELECT run_id, number, outcome, worker_id, started_at, finished_at, error_message FROM attempts "
    "ORDER BY run_id, number"
)


def attempts(db: Path) -> list[tuple[object, ...]]:
    return query(db, ATTEMPTS)


def ran(db: Path) -> list[tuple[float, float]]:
    """(start, end) of each completed run's task, as the task itself said, in arrival order."""
    outputs = query(db, "SELECT output FROM runs WHERE status = 'completed' ORDER BY rowid")
    return [(float(o["start"]), float(o["end"])) for o in (json.loads(str(out)) for (out,) in outputs)]


def test_intake_with_the_executor_off_and_two_workers_runs_every_run_and_names_its_worker(
    gateway: Callable[..., Gateway], workers: list[Worker]
) -> None:
    gw = gateway(ROUTES, TASKS, args=["--executor", "off"])
    assert "task(s)" in gw.log.read_text()
    workers += [Worker(gw, "w1"), Worker(gw, "w2")]
    ids = {w.registered() for w in workers}
    answers = [post(gw, n, ms=150, key=f"k{n}").status_code for n in range(20)]
    assert answers == [202] * 20
    rows = settled(gw.db, 20)
    assert {r[1] for r in rows} == {"completed"}
    ran_by = {r[3] for r in attempts(gw.db)}
    assert ran_by == ids  # both workers ran some; every attempt names its worker
    kinds = query(gw.db, "SELECT DISTINCT kind FROM workers")
    assert kinds == [("worker",)]  # intake registered no executor of its own
    assert [w.stop() for w in workers] == [0, 0]
    assert query(gw.db, "SELECT COUNT(*) FROM workers WHERE stopped_at IS NULL") == [(0,)]


def test_a_worker_killed_mid_run_loses_nothing_the_other_worker_finishes_it_after_one_crash(
    gateway: Callable[..., Gateway], workers: list[Worker]
) -> None:
    gw = gateway(ROUTES, TASKS, args=["--executor", "off"])
    first = Worker(gw, "w1")
    workers.append(first)
    victim = first.registered()
    assert post(gw, 0, ms=4000, key="long").status_code == 202
    deadline = time.monotonic() + 20
    while not query(gw.db, "SELECT 1 FROM runs WHERE status = 'executing' AND worker_id = ?", victim):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = Worker(gw, "w2")
    workers.append(second)
    survivor = second.registered()
    non_2xx: list[int] = []
    sending = threading.Event()

    def send() -> None:  # intake answers throughout
        n = 1
        while not sending.is_set():
            code = post(gw, n, ms=0, key=f"other-{n}").status_code
            if not 200 <= code < 300:
                non_2xx.append(code)
            n += 1
            time.sleep(0.05)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        deadline = time.monotonic() + 40
        while query(gw.db, "SELECT status FROM runs ORDER BY rowid LIMIT 1") != [("completed",)]:
            assert time.monotonic() < deadline, attempts(gw.db)
            time.sleep(0.1)
    finally:
        sending.set()
        sender.join()
    assert non_2xx == []
    [run_id] = query(gw.db, "SELECT id FROM runs ORDER BY rowid LIMIT 1")[0]
    history = [a for a in attempts(gw.db) if a[0] == run_id]
    assert [(a[1], a[2], a[3]) for a in history] == [(1, "crashed", victim), (2, "completed", survivor)]
    assert str(history[0][6]).startswith(f"worker {victim} (gateway worker, pid {first.proc.pid} on ")
    assert query(gw.db, "SELECT crashes, attempts FROM runs WHERE id = ?", run_id) == [(1, 1)]


def test_a_queue_limit_of_one_holds_across_three_workers(
    gateway: Callable[..., Gateway], workers: list[Worker]
) -> None:
    gw = gateway(ROUTES, TASKS, args=["--executor", "off"])
    workers += [Worker(gw, f"w{n}") for n in range(3)]
    for w in workers:
        w.registered()
    # A burst: each commit wakes all three workers at once, so each tries to claim while another runs one.
    # With limits kept in each process's memory (as before the store held them) each would take one.
    assert [post(gw, n, event="serial", ms=100).status_code for n in range(12)] == [202] * 12
    settled(gw.db, 12)
    spans = sorted(ran(gw.db))
    assert len(spans) == 12
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), spans


def test_per_key_order_holds_across_workers(gateway: Callable[..., Gateway], workers: list[Worker]) -> None:
    gw = gateway(ROUTES, TASKS, args=["--executor", "off"])
    workers += [Worker(gw, f"w{n}") for n in range(2)]
    for w in workers:
        w.registered()
    for n in range(8):  # one key: one at a time, in arrival order, whichever worker runs each
        assert post(gw, n, ms=50, key="same").status_code == 202
    settled(gw.db, 8)
    rows = ran(gw.db)  # in arrival order
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(rows)), rows


def test_a_worker_with_a_broken_task_module_exits_1_naming_the_file_and_line_and_intake_goes_on(
    gateway: Callable[..., Gateway], workers: list[Worker], tmp_path: Path
) -> None:
    gw = gateway(ROUTES, TASKS, args=["--executor", "off"])
    module = next(tmp_path.glob("tasks_*.py"))
    module.write_text(module.read_text() + "\ndef broken(:\n")
    broken = Worker(gw, "broken")
    workers.append(broken)
    assert broken.proc.wait(timeout=30) == 1
    said = broken.log.read_text()
    assert f"{module}" in said and ":" + str(len(module.read_text().splitlines())) in said, said
    assert post(gw, 0, ms=0, key="k").status_code == 202  # the running intake is unaffected
    assert query(gw.db, "SELECT status FROM runs") == [("queued",)]


@pytest.mark.parametrize("mode", ["exit", "segfault", "memory"])
def test_serve_with_workers_survives_a_task_that_kills_its_worker_and_retries_the_run(
    gateway: Callable[..., Gateway], mode: str
) -> None:
    env = {"GATEWAY_MEMORY_LIMIT": "1GiB"}
    gw = gateway(ROUTES, TASKS, args=["--workers", "2"], env=env)
    deadline = time.monotonic() + 30
    while len(query(gw.db, "SELECT id FROM workers WHERE stopped_at IS NULL")) < 2:
        assert time.monotonic() < deadline, gw.log.read_text()
        time.sleep(0.1)
    assert post(gw, 0, ms=0, key="k0", mode=mode).status_code == 202
    answers = [post(gw, n, ms=0, key=f"k{n}").status_code for n in range(1, 11)]
    assert answers == [202] * 10
    rows = settled(gw.db, 11)
    assert {r[1] for r in rows} == {"completed"}, attempts(gw.db)
    first = [a for a in attempts(gw.db) if a[0] == rows[0][0]]
    outcome = "failed" if mode == "memory" else "crashed"
    assert [a[2] for a in first] == [outcome, "completed"]
    if mode != "memory":
        assert first[0][3] != first[1][3]  # the dead child's id; the restarted one has a new id
    gw.signal(signal.SIGTERM)
    assert gw.wait(60) == 0
    # Every child stopped cleanly at SIGTERM; only a dead one is left unstopped (`gateway workers`: lost).
    dead = [] if mode == "memory" else [(first[0][3],)]
    assert query(gw.db, "SELECT id FROM workers WHERE stopped_at IS NULL") == dead
    said = {"exit": "exited with status 1", "segfault": "was killed by SIGSEGV (a crash in native code)"}
    if mode in said:  # the supervisor says how the child died, and that it restarts it
        assert f"{said[mode]} after " in gw.log.read_text() and "restarting in 1 s" in gw.log.read_text()


def test_children_stop_when_serve_with_workers_is_killed(gateway: Callable[..., Gateway]) -> None:
    """A SIGKILL of the supervising intake leaves no orphan worker running on beside the next serve's."""
    gw = gateway(ROUTES, TASKS, args=["--workers", "2"])
    deadline = time.monotonic() + 30
    while len(pids := [int(str(p)) for (p,) in query(gw.db, "SELECT pid FROM workers")]) < 2:
        assert time.monotonic() < deadline, gw.log.read_text()
        time.sleep(0.1)
    gw.signal(signal.SIGKILL)
    gw.wait(10)
    deadline = time.monotonic() + 30
    while any(
        Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]
        for pid in pids
    ):
        assert time.monotonic() < deadline, "a worker outlived its supervisor"
        time.sleep(0.1)
    # They drained and said so: each stopped cleanly.
    assert query(gw.db, "SELECT COUNT(*) FROM workers WHERE stopped_at IS NULL") == [(0,)]

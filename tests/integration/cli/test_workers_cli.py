"""`gateway worker`, `gateway workers`, `gateway runs --waiting-for-worker` and serve's --executor and
--workers, called as main(argv): bad input is a usage error naming the flag, and the listings read the
workers table of a real database."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.execution import liveness
from gateway.model import SERVE, WORKER, TaskWorker
from gateway.store.sqlite.store import SQLiteStore
from tests.support.cli import run
from tests.support.records import push_event, queued_run


def registered(db: Path, *workers: TaskWorker, runs: int = 0, task: str = "deploy-preview") -> None:
    async def go() -> None:
        store = await SQLiteStore.open(db)
        try:
            for worker in workers:
                await store.runs.register(worker)
            for n in range(runs):
                event = push_event(f"e{n}", at=time.time() - 100 + n)
                await store.record(event, [dataclasses.replace(queued_run(f"e{n}", event), task_id=task)])
        finally:
            await store.close()

    asyncio.run(go())


def worker(
    name: str, *, kind: str = WORKER, tasks: tuple[str, ...] = ("deploy-preview",), age: float = 0
) -> TaskWorker:
    now = time.time() - age
    return liveness.this_worker(name, kind, tasks, None, 10, "0.1.0", now)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["serve", "--workers", "-1"], "argument --workers: expected a whole number >= 0, got '-1'"),
        (["serve", "--workers", "two"], "argument --workers: expected a whole number >= 0, got 'two'"),
        (["serve", "--executor", "maybe"], "argument --executor: invalid choice: 'maybe'"),
        (
            ["worker", "--memory-limit", "10MiB"],
            "expected a size of at least 64MiB, such as 2GiB, got '10MiB'",
        ),
        (["worker", "--memory-limit", "lots"], "expected a size of at least 64MiB, such as 2GiB, got 'lots'"),
    ],
)
def test_bad_flags_are_usage_errors_naming_the_flag(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(*argv)
    assert code == 2 and out == "" and said in capsys.readouterr().err  # argparse writes to sys.stderr


def test_a_worker_with_an_empty_queue_name_is_a_usage_error(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    routes = write_routes()
    code, _, err = run("worker", "--routes", str(routes), "--db", str(tmp_path / "g.db"), "--queues", "a,,b")
    assert (code, err.strip()) == (2, "gateway worker: --queues: an empty queue name in 'a,,b'")


def test_a_worker_for_queues_no_task_uses_refuses_to_start(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    routes = write_routes()
    code, _, err = run("worker", "--routes", str(routes), "--db", str(tmp_path / "g.db"), "--queues", "nope")
    assert code == 1
    assert "gateway worker: --queues nope: no task of routes.yaml is in these queues (its queues: " in err


def test_gateway_workers_lists_live_and_lost_workers_and_hides_stopped_ones(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    registered(db, worker("wrk_live"), worker("wrk_serve", kind=SERVE), worker("wrk_lost", age=300))
    code, out, _ = run("workers", "--db", str(db))
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == [
        "ID", "KIND", "HOST", "PID", "STATUS", "RUNNING", "HEARTBEAT", "TASKS"
    ]  # fmt: skip
    statuses = {line.split()[0]: line.split()[4] for line in lines[1:]}
    assert statuses == {"wrk_live": "live", "wrk_serve": "live", "wrk_lost": "lost"}
    code, out, _ = run("workers", "--db", str(db), "--json")
    listed = json.loads(out)["workers"]
    assert {w["id"]: (w["kind"], w["pid"], w["tasks"]) for w in listed}["wrk_live"] == (
        "worker",
        os.getpid(),
        ["deploy-preview"],
    )


def test_gateway_workers_on_a_missing_database_says_where_to_start(tmp_path: Path) -> None:
    code, _, err = run("workers", "--db", str(tmp_path / "none.db"))
    assert code == 1 and "no database at" in err


def test_runs_waiting_for_worker_names_the_tasks_no_live_worker_serves(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    registered(db, worker("wrk_other", tasks=("record-payment",)), runs=3)
    code, out, _ = run("runs", "--db", str(db), "--waiting-for-worker")
    assert code == 0
    head, row, hint = out.splitlines()
    assert head.split() == ["TASK", "QUEUE", "WAITING", "OLDEST_CREATED_AT"]
    assert row.split()[:3] == ["deploy-preview", "default", "3"]
    assert hint.startswith("start a worker that serves them")
    registered(db, worker("wrk_deploys"))
    code, out, _ = run("runs", "--db", str(db), "--waiting-for-worker", "--json")
    assert json.loads(out) == {"waiting_for_worker": []}

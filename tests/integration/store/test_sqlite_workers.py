"""Several workers on one SQLite file, each with a store of its own (as separate processes have): the store's
claim holds the queue and task limits across them, claims carry the worker's id to the run and its attempt,
a dead worker's runs are recovered by another naming it, and the workers table says who is live."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.execution import liveness
from gateway.model import EXECUTING, LIVE, LOST, QUEUED, STOPPED, WORKER, Claim, TaskWorker
from gateway.store.interface import ClaimRequest
from gateway.store.sqlite.store import SQLiteStore
from tests.integration.store.test_sqlite_runs import LEASE, NOW, enqueue
from tests.support.claims import Claims
from tests.support.database import peek

pytestmark = pytest.mark.both_stores

OpenStore = Callable[..., Any]


def worker(
    name: str, *, at: float = NOW, tasks: tuple[str, ...] = ("deploy-preview",), **changes: Any
) -> TaskWorker:
    values: dict[str, Any] = {
        "id": name,
        "kind": WORKER,
        "host": liveness.host(),
        "pid": os.getpid(),
        "process": liveness.process_identity(os.getpid()),
        "tasks": tasks,
        "queues": None,
        "concurrency": 10,
        "version": "test",
        "started_at": at,
        "heartbeat_at": at,
    }
    return TaskWorker(**{**values, **changes})


async def claim(store: SQLiteStore, worker_id: str, *, limit: int = 10, **request: Any) -> list[Claim]:
    store.runs.attach(Claims())
    return await store.runs.claim(ClaimRequest(NOW, limit, LEASE, worker=worker_id, **request))


async def two_stores(open_store: OpenStore) -> tuple[SQLiteStore, SQLiteStore]:
    return await open_store(), await open_store()


async def test_a_queue_limit_holds_across_stores_on_one_file(open_store: OpenStore) -> None:
    a, b = await two_stores(open_store)
    for n in range(4):
        await enqueue(a, f"r{n}", at=NOW - 10 + n, queue="deploys")
    limits = {"queue_limits": {"deploys": 1}}
    assert [c.run.id for c in await claim(a, "wrk_a", **limits)] == ["r0"]
    assert await claim(b, "wrk_b", **limits) == []  # the other process sees the slot taken
    assert await claim(a, "wrk_a", **limits) == []


async def test_a_task_limit_from_the_run_options_holds_across_stores(open_store: OpenStore) -> None:
    a, b = await two_stores(open_store)
    for n in range(5):
        await enqueue(a, f"r{n}", at=NOW - 10 + n, options={"concurrency": 2})
    taken = [c.run.id for c in await claim(a, "wrk_a", limit=1)]
    taken += [c.run.id for c in await claim(b, "wrk_b")]
    taken += [c.run.id for c in await claim(a, "wrk_a")]
    assert taken == ["r0", "r1"]


async def test_a_claim_takes_only_the_tasks_and_queues_it_serves(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "deploy", at=NOW - 3)
    await enqueue(store, "triage", at=NOW - 2, task_id="triage-issue", queue="triage")
    await enqueue(store, "payment", at=NOW - 1, task_id="record-payment", queue="payments")
    assert [c.run.id for c in await claim(store, "w1", tasks=frozenset({"triage-issue"}))] == ["triage"]
    assert [c.run.id for c in await claim(store, "w2", queues=frozenset({"payments"}))] == ["payment"]
    assert [c.run.id for c in await claim(store, "w3", tasks=frozenset({"deploy-preview", "x"}))] == [
        "deploy"
    ]


async def test_the_claiming_worker_is_named_on_the_run_and_its_attempt(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "r1")
    [claimed] = await claim(store, "wrk_a")
    assert claimed.run.worker_id == "wrk_a"
    run = await store.reads.get_run("r1")
    [attempt] = await store.reads.attempts_for_run("r1")
    assert run is not None and (run.status, run.worker_id, attempt.worker_id) == (EXECUTING, "wrk_a", "wrk_a")


async def test_another_store_recovers_a_dead_workers_runs_at_once_naming_the_worker(
    open_store: OpenStore,
) -> None:
    a, b = await two_stores(open_store)
    await a.runs.register(worker("wrk_dead", pid=4_000_000, process="boot:1"))
    await enqueue(a, "r1", at=NOW - 2)
    await enqueue(a, "r2", at=NOW - 1)
    await claim(a, "wrk_dead")
    await a.runs.register(worker("wrk_alive"))
    # Within the lease, without the dead worker named, nothing is taken from it.
    assert await b.runs.recover(now=NOW + 1) == []
    recovered = await b.runs.recover(now=NOW + 1, dead=["wrk_dead"])
    assert [(r.id, r.status, r.crashes) for r in recovered] == [("r1", QUEUED, 1), ("r2", QUEUED, 1)]
    [attempt] = await b.reads.attempts_for_run("r1")
    assert (attempt.outcome, attempt.worker_id) == ("crashed", "wrk_dead")
    assert attempt.error_message == (
        f"worker wrk_dead (gateway worker, pid 4000000 on {liveness.host()}) stopped while this attempt "
        "was executing"
    )


async def test_a_lapsed_lease_is_recovered_by_any_store(open_store: OpenStore) -> None:
    a, b = await two_stores(open_store)
    await enqueue(a, "r1")
    await claim(a, "wrk_frozen")
    assert await b.runs.recover(now=NOW + LEASE - 1) == []
    [run] = await b.runs.recover(now=NOW + LEASE + 1)
    assert (run.id, run.status) == ("r1", QUEUED)


async def test_a_heartbeat_renews_only_its_own_leases_and_its_workers_heartbeat(
    open_store: OpenStore, tmp_path: Path
) -> None:
    a, b = await two_stores(open_store)
    await a.runs.register(worker("wrk_a"))
    await a.runs.register(worker("wrk_b"))
    await enqueue(a, "mine", at=NOW - 2)
    await enqueue(a, "theirs", at=NOW - 1)
    await claim(a, "wrk_a", limit=1)
    await claim(b, "wrk_b", limit=1)
    renewed = a.runs.heartbeat_blocking(["mine", "theirs"], NOW + 100, worker="wrk_a", now=NOW + 5)
    assert renewed == 1
    leases = dict(await peek(a, "SELECT id, lease_until FROM runs"))
    beats = dict(await peek(a, "SELECT id, heartbeat_at FROM workers"))
    assert leases == {"mine": NOW + 100, "theirs": NOW + LEASE}
    assert beats == {"wrk_a": NOW + 5, "wrk_b": NOW}


async def test_the_workers_table_says_live_lost_and_stopped_with_running_counts(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    await store.runs.register(worker("wrk_live", at=NOW))
    await store.runs.register(worker("wrk_lost", at=NOW - 100))
    await store.runs.register(worker("wrk_stopped", at=NOW - 50))
    await store.runs.unregister("wrk_stopped", now=NOW - 40)
    await enqueue(store, "r1")
    await claim(store, "wrk_live")
    listed = await store.reads.workers(live_since=NOW - LEASE)
    assert [(w.id, w.status, w.running) for w in listed] == [
        ("wrk_live", LIVE, 1),
        ("wrk_stopped", STOPPED, 0),
        ("wrk_lost", LOST, 0),
    ]
    assert listed[0].serves("deploy-preview", "anything") and not listed[0].serves("other", "q")


async def test_registering_forgets_workers_gone_a_week_unless_they_hold_a_run(open_store: OpenStore) -> None:
    store = await open_store()
    old = NOW - 8 * 86400
    await store.runs.register(worker("wrk_old", at=old))
    await store.runs.register(worker("wrk_old_busy", at=old))
    await enqueue(store, "r1", at=old)
    store.runs.attach(Claims())
    await store.runs.claim(ClaimRequest(old, 1, LEASE, worker="wrk_old_busy"))
    await store.runs.register(worker("wrk_new"))
    listed = {w.id for w in await store.reads.workers(live_since=NOW - LEASE)}
    assert listed == {"wrk_new", "wrk_old_busy"}


def test_a_worker_whose_process_is_gone_or_whose_pid_was_reused_is_found_gone() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(done.stdout)
    me = os.getpid()
    here = liveness.host()
    workers = [
        worker("wrk_self", status=LIVE),
        worker("wrk_exited", pid=dead_pid, process=None),
        worker("wrk_reused", process="another-boot:1"),  # this pid, but not the process that registered
        worker("wrk_elsewhere", host=f"not-{here}", pid=dead_pid),  # judged by its lease alone
        worker("wrk_stopped", pid=dead_pid, status=STOPPED),
        worker("wrk_running"),
    ]
    assert liveness.process_identity(me) is not None
    assert liveness.gone(workers, here, besides="wrk_self") == ["wrk_exited", "wrk_reused"]

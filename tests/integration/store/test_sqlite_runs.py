"""The store's run side on a real SQLite file: claims, key order, attempt ends, recovery, leases, cancels."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import NotFound, StoreError, StoreUnavailable
from gateway.model import (
    CANCELED,
    COMPLETED,
    CRASHED,
    EXECUTING,
    FAILED,
    QUEUED,
    RETRYING,
    TIMED_OUT,
    Attempt,
    AttemptEnd,
    Event,
    Headers,
    Payload,
    Run,
    RunFilter,
)
from gateway.store.interface import AttemptLog, ClaimRequest, Store
from gateway.store.ops.db import Db
from gateway.store.sqlite.heartbeat import Heartbeat
from gateway.store.sqlite.sql import MIGRATIONS, QUERIES
from gateway.store.sqlite.store import SQLiteStore
from tests.support.claims import Claims, claim_runs, take_all
from tests.support.database import peek

pytestmark = pytest.mark.both_stores
NOW = 1_800_000_000.0
LEASE = 30.0
OpenStore = Callable[..., Any]


def make_event(name: str, *, source: str = "github", at: float = NOW) -> Event:
    return Event(
        id=f"evt_{name}",
        source=source,
        event_type="push",
        dedupe_key=None,
        status="routed",
        received_at=at,
        method="POST",
        url=f"https://hooks.example.com/hooks/{source}",
        headers=Headers([("X-GitHub-Event", "push"), ("X-Trace", "a"), ("X-Trace", "b")]),
        query=(),
        body=b"{}",
        payload=Payload("json", {}),
        verification="verified:github",
    )


def make_run(name: str, event: Event, **changes: Any) -> Run:
    run = Run(
        id=name,
        event_id=event.id,
        route_id="route-1",
        task_id="deploy-preview",
        input={"name": name},
        status=QUEUED,
        created_at=event.received_at,
        options={"max_attempts": 3},
    )
    return dataclasses.replace(run, **changes)


async def enqueue(
    store: SQLiteStore, name: str, *, at: float = NOW, source: str = "github", **changes: Any
) -> Run:
    """Record one event at ``at`` with one run called ``name``."""
    event = make_event(name, source=source, at=at)
    run = make_run(name, event, **changes)
    await store.record(event, [run])
    return run


async def claim_ids(store: SQLiteStore, now: float = NOW, limit: int = 10, **kwargs: Any) -> list[str]:
    claims = await claim_runs(
        store.runs, now=now, limit=limit, lease=LEASE, accept=kwargs.pop("accept", take_all), **kwargs
    )
    return [c.run.id for c in claims]


def end(run_id: str, attempt: int, at: float, outcome: str, status: str, **changes: Any) -> AttemptEnd:
    return AttemptEnd(run_id, attempt, at, outcome, status, **changes)


def boom(message: str = "the API said 503") -> dict[str, Any]:
    return {"type": "RuntimeError", "message": message, "traceback": "Traceback (most recent call last): ..."}


async def column(store: Store, run_id: str, name: str) -> Any:
    [(value,)] = await peek(store, f"SELECT {name} FROM runs WHERE id = ?", run_id)
    return value


async def blocked(store: Store) -> dict[str, int]:
    """Every run's blocked flag."""
    return {str(run_id): int(str(flag)) for run_id, flag in await peek(store, "SELECT id, blocked FROM runs")}


async def line_up(store: SQLiteStore, *names: str, key: str = "repo:1") -> None:
    """One run per name on one concurrency key, in arrival order, all ready at NOW."""
    for n, name in enumerate(names):
        await enqueue(store, name, at=NOW - 10 + n, concurrency_key=key)


class BatchSizes:
    """A store (mixed over either: see open_store) that records how many writes each of its batches held, and
    can fail its next batch as a disk error at COMMIT would (``fail_next``)."""

    sizes: list[int]
    fail_next = False

    async def write(self, conn: Db, batch: list[Any]) -> None:
        self.sizes = [*getattr(self, "sizes", []), len(batch)]
        await super().write(conn, batch)  # type: ignore[misc]
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk I/O error")


# -- claim ------------------------------------------------------------------------------------------------


async def test_claim_returns_ready_runs_in_sort_key_order_with_priority_as_seconds_of_advantage(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    await enqueue(store, "old", at=NOW - 50)  # sort key NOW-50
    await enqueue(store, "urgent", at=NOW - 10, priority=60)  # arrived later, but 60 s of advantage
    await enqueue(store, "recent", at=NOW - 5)
    await enqueue(store, "lagging", at=NOW - 5, priority=-10)  # 10 s of disadvantage
    await enqueue(store, "future", at=NOW + 1)  # not ready yet
    assert await claim_ids(store) == ["urgent", "old", "recent", "lagging"]


async def test_a_claim_marks_runs_executing_with_an_attempt_row_and_a_lease(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = await open_store()
    run = await enqueue(store, "r1", at=NOW - 1)
    [claim] = await claim_runs(store.runs, now=NOW, limit=5, lease=LEASE, accept=take_all)
    assert claim.run == dataclasses.replace(run, status=EXECUTING, started_at=NOW)
    assert (claim.attempt, claim.source, claim.event_type) == (1, "github", "push")
    assert claim.headers.get_all("x-trace") == ["a", "b"]
    assert await store.reads.get_run("r1") == claim.run
    assert await store.reads.attempts_for_run("r1") == [Attempt("r1", 1, started_at=NOW)]
    assert await column(store, "r1", "lease_until") == NOW + LEASE


async def test_a_claimed_run_is_never_claimed_again(open_store: OpenStore) -> None:
    store = await open_store()
    for n in range(6):
        await enqueue(store, f"r{n}", at=NOW - 10 + n)
    first, second = await asyncio.gather(claim_ids(store, limit=4), claim_ids(store, limit=4))
    assert first == ["r0", "r1", "r2", "r3"]
    assert second == ["r4", "r5"]
    assert await claim_ids(store) == []


async def test_claim_skips_full_queues_and_tasks(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "slow-queue", at=NOW - 4, queue="slow")
    await enqueue(store, "payments", at=NOW - 3, task_id="record-payment")
    await enqueue(store, "plain", at=NOW - 2)
    assert await claim_ids(store, skip_queues={"slow"}, skip_tasks=["record-payment"]) == ["plain"]
    assert await claim_ids(store) == ["slow-queue", "payments"]


async def test_claim_keeps_only_what_accept_takes_and_stops_at_the_limit(open_store: OpenStore) -> None:
    store = await open_store()
    for n in range(3):
        await enqueue(store, f"deploy{n}", at=NOW - 10 + n)
        await enqueue(store, f"pay{n}", at=NOW - 10 + n + 0.5, task_id="record-payment")
    asked: list[str] = []
    taken: dict[str, int] = {}

    def two_deploys(run: Run) -> bool:
        asked.append(run.id)
        if run.task_id == "deploy-preview" and taken.get(run.task_id, 0) >= 2:
            return False
        taken[run.task_id] = taken.get(run.task_id, 0) + 1
        return True

    assert await claim_ids(store, limit=4, accept=two_deploys) == ["deploy0", "pay0", "deploy1", "pay1"]
    assert asked == ["deploy0", "pay0", "deploy1", "pay1"]  # the limit was reached: nobody else was asked
    taken.clear()
    asked.clear()
    taken["deploy-preview"] = 2  # still full
    assert await claim_ids(store, accept=two_deploys) == ["pay2"]
    assert asked == ["deploy2", "pay2"]
    refused = await store.reads.get_run("deploy2")
    assert refused is not None and refused.status == QUEUED


@pytest.mark.sqlite_only  # SQLite's own file, plans or migrations
async def test_a_run_without_its_event_is_claimed_with_an_empty_source_and_headers(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = await open_store()
    with contextlib.closing(sqlite3.connect(tmp_path / "gateway.db")) as conn:  # foreign keys off here
        conn.execute(
            "INSERT INTO runs (id, event_id, task_id, input, status, created_at, available_at, sort_key) "
            "VALUES ('orphan', 'evt_gone', 'deploy-preview', '{}', 'queued', ?, ?, ?)",
            (NOW, NOW, NOW),
        )
        conn.commit()
    [claim] = await claim_runs(store.runs, now=NOW, limit=1, lease=LEASE, accept=take_all)
    assert (claim.run.id, claim.source, claim.event_type, claim.headers) == ("orphan", "", None, Headers())


async def test_a_refused_write_in_the_same_batch_does_not_ask_accept_twice(open_store: OpenStore) -> None:
    store = await open_store(cls=BatchSizes)
    await enqueue(store, "r1", at=NOW - 1)
    asked: list[str] = []

    def accept(run: Run) -> bool:
        asked.append(run.id)
        return True

    clash = make_event("r1")  # its id is taken: the database refuses it, the batch is retried one by one
    results = await asyncio.gather(
        store.record(clash, []),
        claim_runs(store.runs, now=NOW, limit=5, lease=LEASE, accept=accept),
        return_exceptions=True,
    )
    assert store.sizes[1] == 2  # both writes really were in one batch
    assert type(results[0]) is StoreError
    assert [c.run.id for c in results[1]] == ["r1"]  # type: ignore[union-attr]
    assert asked == ["r1"]


# -- per-key FIFO -----------------------------------------------------------------------------------------


async def test_runs_with_one_concurrency_key_run_one_at_a_time_in_arrival_order(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    await enqueue(store, "k1", at=NOW - 30, concurrency_key="repo:1")
    await enqueue(store, "k2", at=NOW - 20, concurrency_key="repo:1", priority=100)  # priority cannot jump
    await enqueue(store, "k3", at=NOW - 10, concurrency_key="repo:1")
    await enqueue(store, "other-key", at=NOW - 9, concurrency_key="repo:2")
    await enqueue(store, "other-task", at=NOW - 8, concurrency_key="repo:1", task_id="record-payment")
    await enqueue(store, "no-key", at=NOW - 7)

    assert await claim_ids(store) == ["k1", "other-key", "other-task", "no-key"]
    assert await claim_ids(store) == []  # k2 waits while k1 executes
    await store.runs.finish_attempt(end("k1", 1, NOW + 1, "completed", COMPLETED))
    assert await claim_ids(store, now=NOW + 1) == ["k2"]
    assert await claim_ids(store, now=NOW + 1) == []


async def test_a_retrying_run_holds_back_later_runs_of_its_key(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "k1", at=NOW - 2, concurrency_key="repo:1")
    await enqueue(store, "k2", at=NOW - 1, concurrency_key="repo:1")
    assert await claim_ids(store) == ["k1"]
    await store.runs.finish_attempt(
        end("k1", 1, NOW + 1, "failed", RETRYING, available_at=NOW + 60, error=boom())
    )
    assert await claim_ids(store, now=NOW + 30) == []  # k1 is not ready, and k2 must not overtake it
    assert await claim_ids(store, now=NOW + 60) == ["k1"]


# -- blocked runs: only a key's head is a claim candidate ------------------------------------------------


async def test_a_run_recorded_behind_an_unfinished_run_of_its_key_is_blocked(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = await open_store()
    await enqueue(store, "finished", at=NOW - 20, concurrency_key="repo:3")
    assert await claim_ids(store) == ["finished"]
    await store.runs.finish_attempt(end("finished", 1, NOW, "completed", COMPLETED))
    event = make_event("e1", at=NOW - 10)
    runs = [
        make_run("k1", event, concurrency_key="repo:1"),
        make_run("k2", event, concurrency_key="repo:1"),  # behind k1, in the same batch
        make_run("other-key", event, concurrency_key="repo:2"),
        make_run("other-task", event, concurrency_key="repo:1", task_id="record-payment"),
        make_run("no-key", event),
        make_run("after-finished", event, concurrency_key="repo:3"),  # a final run holds nobody back
    ]
    await store.record(event, runs)
    await enqueue(store, "k3", at=NOW - 5, concurrency_key="repo:1")  # behind k1, in a later batch
    assert await blocked(store) == {
        "finished": 0,
        "k1": 0,
        "k2": 1,
        "other-key": 0,
        "other-task": 0,
        "no-key": 0,
        "after-finished": 0,
        "k3": 1,
    }


async def end_completed(store: SQLiteStore) -> None:
    assert await claim_ids(store, limit=1) == ["k1"]
    await store.runs.finish_attempt(end("k1", 1, NOW, "completed", COMPLETED))


async def end_failed(store: SQLiteStore) -> None:
    assert await claim_ids(store, limit=1) == ["k1"]
    await store.runs.finish_attempt(end("k1", 1, NOW, "failed", FAILED, error=boom()))


async def end_timed_out(store: SQLiteStore) -> None:
    assert await claim_ids(store, limit=1) == ["k1"]
    await store.runs.finish_attempt(end("k1", 1, NOW, "timed_out", TIMED_OUT, error=boom("took 30 s")))


async def end_canceled(store: SQLiteStore) -> None:
    assert await store.runs.cancel("k1", now=NOW) is not None  # the head, still queued


async def end_crashed(store: SQLiteStore) -> None:
    assert await claim_ids(store, limit=1) == ["k1"]
    [run] = await store.runs.recover(now=NOW, max_crashes=0, only_expired=False)
    assert run.status == CRASHED


@pytest.mark.parametrize(
    ("end_head", "status"),
    [
        (end_completed, COMPLETED),
        (end_failed, FAILED),
        (end_timed_out, TIMED_OUT),
        (end_canceled, CANCELED),
        (end_crashed, CRASHED),
    ],
)
async def test_a_head_that_reaches_a_final_status_unblocks_the_next_run_of_its_key(
    open_store: OpenStore, tmp_path: Path, end_head: Callable[[Store], Awaitable[None]], status: str
) -> None:
    store = await open_store()
    await line_up(store, "k1", "k2", "k3")
    await end_head(store)
    k1 = await store.reads.get_run("k1")
    assert k1 is not None and k1.status == status
    assert await blocked(store) == {"k1": 0, "k2": 0, "k3": 1}
    assert await claim_ids(store, now=NOW + 1) == ["k2"]


async def back_off(store: SQLiteStore) -> None:
    await store.runs.finish_attempt(
        end("k1", 1, NOW, "failed", RETRYING, available_at=NOW + 60, error=boom())
    )


async def interrupt(store: SQLiteStore) -> None:
    interrupted = {"type": "Interrupted", "message": "the gateway shut down", "traceback": None}
    await store.runs.finish_attempt(
        end("k1", 1, NOW, "interrupted", QUEUED, counts=False, available_at=NOW, error=interrupted)
    )


async def recover_once(store: SQLiteStore) -> None:
    [run] = await store.runs.recover(now=NOW, max_crashes=3, only_expired=False)
    assert run.status == QUEUED


@pytest.mark.parametrize("send_back", [back_off, interrupt, recover_once])
async def test_a_head_that_goes_back_to_waiting_keeps_its_key(
    open_store: OpenStore, tmp_path: Path, send_back: Callable[[Store], Awaitable[None]]
) -> None:
    store = await open_store()
    await line_up(store, "k1", "k2", "k3")
    assert await claim_ids(store) == ["k1"]
    await send_back(store)
    assert await blocked(store) == {"k1": 0, "k2": 1, "k3": 1}
    assert await claim_ids(store, now=NOW + 100) == ["k1"]


async def test_cancelling_a_blocked_run_leaves_the_head_and_the_line_alone(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = await open_store()
    await line_up(store, "k1", "k2", "k3")
    canceled = await store.runs.cancel("k2", now=NOW)
    assert canceled is not None and canceled.status == CANCELED
    assert await blocked(store) == {"k1": 0, "k2": 1, "k3": 1}
    assert await claim_ids(store) == ["k1"]
    await store.runs.finish_attempt(end("k1", 1, NOW + 1, "completed", COMPLETED))
    assert await claim_ids(store, now=NOW + 1) == ["k3"]  # the canceled k2 is passed over


async def test_a_run_recorded_in_the_batch_that_ends_its_keys_head_becomes_the_head(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = await open_store(cls=BatchSizes)
    await line_up(store, "k1")
    assert await claim_ids(store) == ["k1"]
    event = make_event("k2", at=NOW)
    await asyncio.gather(
        store.record(event, [make_run("k2", event, concurrency_key="repo:1")]),
        store.runs.finish_attempt(end("k1", 1, NOW + 1, "completed", COMPLETED)),
    )
    assert store.sizes[-1] == 2  # both writes really were in one batch
    assert await blocked(store) == {"k1": 0, "k2": 0}
    assert await claim_ids(store, now=NOW + 1) == ["k2"]


# -- finish_attempt ---------------------------------------------------------------------------------------


async def test_a_completed_attempt_stores_output_logs_and_duration(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "r1", at=NOW - 1)
    await claim_ids(store)
    logs = ({"at": NOW + 1, "level": "info", "message": "deployed ✓"},)
    await store.runs.finish_attempt(
        end("r1", 1, NOW + 2.5, "completed", COMPLETED, output={"url": "https://pr-1.example"}, logs=logs)
    )
    run = await store.reads.get_run("r1")
    assert run is not None
    assert (run.status, run.output, run.error) == (COMPLETED, {"url": "https://pr-1.example"}, None)
    assert (run.attempts, run.crashes, run.duration, run.started_at, run.finished_at) == (
        1,
        0,
        2.5,
        NOW,
        NOW + 2.5,
    )
    assert await store.reads.attempts_for_run("r1") == [
        Attempt("r1", 1, NOW, NOW + 2.5, "completed", logs=logs)
    ]
    assert await store.reads.count_runs(RunFilter(status=EXECUTING)) == 0


async def test_a_failed_attempt_that_retries_keeps_its_error_until_a_later_one_completes(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    await enqueue(store, "r1", at=NOW - 1)
    await claim_ids(store)
    await store.runs.finish_attempt(
        end("r1", 1, NOW + 1, "failed", RETRYING, available_at=NOW + 10, error=boom())
    )
    run = await store.reads.get_run("r1")
    assert run is not None
    assert (run.status, run.attempts, run.error, run.finished_at, run.duration) == (
        RETRYING,
        1,
        boom(),
        None,
        1.0,
    )
    assert await store.runs.next_available_at(after=NOW + 1) == NOW + 10
    assert await claim_ids(store, now=NOW + 9) == []

    [claim] = await claim_runs(store.runs, now=NOW + 10, limit=1, lease=LEASE, accept=take_all)
    assert (claim.attempt, claim.run.started_at) == (2, NOW)  # started_at is the first attempt's
    await store.runs.finish_attempt(end("r1", 2, NOW + 13, "completed", COMPLETED, output=None))
    run = await store.reads.get_run("r1")
    assert run is not None
    assert (run.status, run.attempts, run.error, run.output, run.duration) == (COMPLETED, 2, None, None, 4.0)
    attempts = await store.reads.attempts_for_run("r1")
    assert [(a.number, a.outcome, a.error_type, a.error_message, a.duration) for a in attempts] == [
        (1, "failed", "RuntimeError", "the API said 503", 1.0),
        (2, "completed", None, None, 3.0),
    ]
    assert attempts[0].traceback == "Traceback (most recent call last): ..."


async def test_a_final_failure_ends_the_run_with_its_error(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "r1", at=NOW - 1)
    await claim_ids(store)
    await store.runs.finish_attempt(end("r1", 1, NOW + 3, "aborted", FAILED, error=boom("customer deleted")))
    run = await store.reads.get_run("r1")
    assert run is not None
    assert (run.status, run.attempts, run.error, run.finished_at) == (
        FAILED,
        1,
        boom("customer deleted"),
        NOW + 3,
    )
    assert await claim_ids(store, now=NOW + 1000) == []


async def test_an_interrupted_attempt_requeues_the_run_without_using_a_retry(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "r1", at=NOW - 1)
    await claim_ids(store)
    interrupted = {"type": "Interrupted", "message": "the gateway shut down", "traceback": None}
    await store.runs.finish_attempt(
        end("r1", 1, NOW + 5, "interrupted", QUEUED, counts=False, available_at=NOW + 5, error=interrupted)
    )
    run = await store.reads.get_run("r1")
    assert run is not None
    assert (run.status, run.attempts, run.finished_at, run.error) == (QUEUED, 0, None, interrupted)
    [claim] = await claim_runs(store.runs, now=NOW + 5, limit=1, lease=LEASE, accept=take_all)
    assert claim.attempt == 2


async def test_ending_an_attempt_of_a_run_that_was_recovered_and_canceled_changes_nothing(
    open_store: OpenStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = await open_store()
    await enqueue(store, "r1", at=NOW - 1)
    await claim_ids(store)
    await store.runs.recover(now=NOW + 1, only_expired=False)
    canceled = await store.runs.cancel("r1", now=NOW + 2)
    await store.runs.finish_attempt(end("r1", 1, NOW + 3, "completed", COMPLETED, output=1))
    assert await store.reads.get_run("r1") == canceled
    assert [a.outcome for a in await store.reads.attempts_for_run("r1")] == ["crashed"]
    # Only this store's warnings: an earlier test may have left the gateway's loggers at INFO.
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == [
        "store: run r1 attempt 1 ended (completed) after the run stopped executing it "
        "(canceled or recovered meanwhile); the end was not recorded"
    ]


async def test_a_stale_attempt_end_does_not_finish_the_runs_newer_attempt(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "r1", at=NOW - 1)
    await claim_ids(store)
    await store.runs.recover(now=NOW + 1, only_expired=False)
    assert await claim_ids(store, now=NOW + 1) == ["r1"]  # attempt 2 executes
    await store.runs.finish_attempt(end("r1", 1, NOW + 3, "completed", COMPLETED, output="late"))
    run = await store.reads.get_run("r1")
    assert run is not None and (run.status, run.output) == (EXECUTING, None)
    assert [a.outcome for a in await store.reads.attempts_for_run("r1")] == ["crashed", None]


async def test_an_attempt_end_with_a_status_a_run_cannot_take_is_refused(open_store: OpenStore) -> None:
    store = await open_store()
    with pytest.raises(ValueError) as raised:
        await store.runs.finish_attempt(end("r1", 1, NOW, "completed", EXECUTING))
    assert str(raised.value) == (
        "run r1 attempt 1: cannot end with run status 'executing'; expected one of "
        "['canceled', 'completed', 'crashed', 'failed', 'queued', 'retrying', 'timed_out']"
    )


# -- recover ----------------------------------------------------------------------------------------------


async def test_recover_requeues_only_runs_whose_lease_expired(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "dead", at=NOW - 2)
    await enqueue(store, "alive", at=NOW - 1)
    assert await claim_ids(store, limit=1) == ["dead"]  # lease until NOW+30
    assert await claim_ids(store, now=NOW + 20) == ["alive"]  # lease until NOW+50

    [recovered] = await store.runs.recover(now=NOW + 40)
    assert (recovered.id, recovered.status, recovered.crashes, recovered.attempts) == ("dead", QUEUED, 1, 0)
    assert await store.reads.get_run("dead") == recovered
    [attempt] = await store.reads.attempts_for_run("dead")
    assert (attempt.outcome, attempt.finished_at, attempt.error_type, attempt.error_message) == (
        "crashed",
        NOW + 40,
        "Crashed",
        "the gateway process stopped while this attempt was executing",
    )
    assert await claim_ids(store, now=NOW + 40) == ["dead"]


async def test_recover_everything_executing_except_what_is_kept(open_store: OpenStore) -> None:
    store = await open_store()
    for name in ("a", "b", "c"):
        await enqueue(store, name, at=NOW - 1)
    await claim_ids(store)
    recovered = await store.runs.recover(now=NOW + 1, only_expired=False, keep={"b"})
    assert [r.id for r in recovered] == ["a", "c"]
    assert await store.reads.count_runs(RunFilter(status=EXECUTING)) == 1
    assert await store.reads.count_runs(RunFilter(status=QUEUED)) == 2


async def test_the_crash_after_max_crashes_ends_the_run_crashed(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "r1", at=NOW - 1)
    for n in range(1, 5):
        assert await claim_ids(store, now=NOW + n) == ["r1"]
        [run] = await store.runs.recover(now=NOW + n + 0.5, max_crashes=3, only_expired=False)
        assert (run.status, run.crashes) == ((QUEUED, n) if n <= 3 else (CRASHED, 4))
    assert run == await store.reads.get_run("r1")
    assert (run.attempts, run.finished_at) == (0, NOW + 4.5)
    assert run.error == {
        "type": "Crashed",
        "message": "the process died during 4 attempts; giving up after 3 recoveries",
    }
    assert [(a.number, a.outcome) for a in await store.reads.attempts_for_run("r1")] == [
        (1, "crashed"),
        (2, "crashed"),
        (3, "crashed"),
        (4, "crashed"),
    ]
    assert await claim_ids(store, now=NOW + 100) == []


# -- heartbeat --------------------------------------------------------------------------------------------


async def test_a_heartbeat_from_a_thread_keeps_a_lease_alive(open_store: OpenStore, tmp_path: Path) -> None:
    store = await open_store()
    await enqueue(store, "busy", at=NOW - 2)
    await enqueue(store, "waiting", at=NOW + 500)
    await claim_ids(store)
    renewed = await asyncio.to_thread(
        store.runs.heartbeat_blocking, ["busy", "waiting", "run_gone"], NOW + 100
    )
    assert renewed == 1  # only executing runs hold a lease
    assert await column(store, "busy", "lease_until") == NOW + 100
    assert await column(store, "waiting", "lease_until") is None
    assert await store.runs.recover(now=NOW + 60) == []
    assert [r.id for r in await store.runs.recover(now=NOW + 101)] == ["busy"]


async def test_the_logs_of_a_running_attempt_are_kept_until_it_ends_and_then_its_end_has_the_say(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    await enqueue(store, "busy", at=NOW - 2)
    await enqueue(store, "other", at=NOW - 1)
    await claim_ids(store)
    lines = ({"ts": NOW, "level": "info", "message": "half done"},)
    saved = await asyncio.to_thread(
        store.runs.keep_logs_blocking, [AttemptLog("busy", 1, lines), AttemptLog("other", 1, lines)]
    )
    assert saved == 2
    [first] = await store.reads.attempts_for_run("busy")
    assert (first.outcome, first.logs) == (None, lines)
    # A crash keeps them: recovery ends the attempt without touching its logs.
    await store.runs.recover(now=NOW, only_expired=False, keep={"other"})
    [crashed] = await store.reads.attempts_for_run("busy")
    assert (crashed.outcome, crashed.logs) == ("crashed", lines)
    # An attempt that ended holds its whole log: a late save changes nothing.
    await store.runs.finish_attempt(end("other", 1, NOW + 1, "completed", COMPLETED))
    assert await asyncio.to_thread(store.runs.keep_logs_blocking, [AttemptLog("other", 1, lines)]) == 0
    [ended] = await store.reads.attempts_for_run("other")
    assert ended.logs == ()
    assert await asyncio.to_thread(store.runs.keep_logs_blocking, []) == 0


async def test_a_heartbeat_that_cannot_write_logs_and_answers_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    beats = Heartbeat(
        str(tmp_path / "missing" / "gateway.db"), QUERIES["heartbeat_pragmas"], QUERIES["renew_leases"]
    )
    assert beats.beat(["r1", "r2"], NOW) == 0
    assert caplog.messages == ["store: could not renew the leases of 2 run(s): unable to open database file"]
    beats.close()


async def test_a_heartbeat_after_close_answers_zero(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "r1", at=NOW - 1)
    await claim_ids(store)
    assert await asyncio.to_thread(store.runs.heartbeat_blocking, ["r1"], NOW + 100) == 1
    await store.close()
    assert store.runs.heartbeat_blocking(["r1"], NOW + 200) == 0


# -- cancel -----------------------------------------------------------------------------------------------


async def test_cancel_ends_queued_and_retrying_runs_only(open_store: OpenStore) -> None:
    store = await open_store()
    waiting = await enqueue(store, "waiting", at=NOW + 50)
    for name in ("backing-off", "done", "busy"):
        await enqueue(store, name, at=NOW - 1)
    await claim_ids(store, limit=2)
    await store.runs.finish_attempt(
        end("backing-off", 1, NOW, "failed", RETRYING, available_at=NOW + 9, error=boom())
    )
    await store.runs.finish_attempt(end("done", 1, NOW, "completed", COMPLETED))
    assert await claim_ids(store) == ["busy"]

    canceled = await store.runs.cancel("waiting", now=NOW + 1)
    assert canceled == dataclasses.replace(waiting, status=CANCELED, finished_at=NOW + 1)
    assert await store.reads.get_run("waiting") == canceled
    backed_off = await store.runs.cancel("backing-off", now=NOW + 2)
    assert backed_off is not None and (backed_off.status, backed_off.error) == (CANCELED, boom())

    for name in ("busy", "done", "waiting"):
        before = await store.reads.get_run(name)
        assert await store.runs.cancel(name, now=NOW + 3) is None
        assert await store.reads.get_run(name) == before
    with pytest.raises(NotFound) as raised:
        await store.runs.cancel("run_missing", now=NOW)
    assert str(raised.value) == "no run with id 'run_missing'"
    assert await claim_ids(store, now=NOW + 100) == []


async def test_cancelling_a_queued_run_keeps_it_from_being_claimed(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "r1", at=NOW - 1)
    await enqueue(store, "r2", at=NOW - 1)
    canceled, claimed = await asyncio.gather(store.runs.cancel("r1", now=NOW), claim_ids(store))
    assert canceled is not None and canceled.status == CANCELED
    assert claimed == ["r2"]


# -- a large backlog --------------------------------------------------------------------------------------


@pytest.mark.sqlite_only  # SQLite's own file, plans or migrations
async def test_a_claim_on_a_large_backlog_reads_only_its_limit_in_index_order(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = await open_store()
    event = make_event("bulk", at=NOW - 20_000)
    runs = [
        make_run(
            f"r{n:05d}",
            event,
            created_at=NOW - 20_000 + n,
            priority=n % 7,
            concurrency_key=f"k{n % 50}" if n % 2 == 0 else None,  # 25 keys, and half without one
        )
        for n in range(10_000)
    ]
    await store.record(event, runs)
    asked: list[str] = []

    def refuse(run: Run) -> bool:
        asked.append(run.id)
        return False

    assert await claim_ids(store, limit=10, accept=refuse) == []
    assert len(asked) == 64  # max(4 * limit, 64) candidates, not the backlog

    heads = {r.concurrency_key: r for r in reversed(runs)}  # the first run of each key
    ready = [r for r in runs if r.concurrency_key is None or heads[r.concurrency_key] is r]
    expected = sorted(ready, key=lambda r: (r.created_at - r.priority, r.id))[:10]
    assert await claim_ids(store, limit=10) == [r.id for r in expected]

    with contextlib.closing(sqlite3.connect(tmp_path / "gateway.db")) as conn:
        params = {
            "now": NOW,
            "limit": 40,
            "skip_queues": "[]",
            "skip_tasks": "[]",
            "tasks": None,
            "queues": None,
        }
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + QUERIES["claim_candidates"], params)]
    assert "SCAN r USING INDEX runs_claim" in plan
    assert not any("TEMP B-TREE" in step for step in plan)


@pytest.mark.sqlite_only  # SQLite's own file, plans or migrations
async def test_a_claim_never_walks_the_runs_waiting_behind_a_keys_head(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = await open_store()
    event = make_event("bulk", at=NOW - 30_000)
    line = [
        make_run(f"k{n:05d}", event, created_at=NOW - 30_000 + n, concurrency_key="repo:1")
        for n in range(20_000)
    ]
    unkeyed = [make_run(f"n{n:03d}", event, created_at=NOW - 100 + n) for n in range(100)]  # behind the line
    await store.record(event, [*line, *unkeyed])
    asked: list[str] = []

    def refuse(run: Run) -> bool:
        asked.append(run.id)
        return False

    assert await claim_ids(store, limit=10, accept=refuse) == []
    assert asked == ["k00000"] + [f"n{n:03d}" for n in range(63)]  # its LIMIT of 64, not 20,064

    with contextlib.closing(sqlite3.connect(tmp_path / "gateway.db")) as conn:
        params = {
            "now": NOW,
            "limit": 64,
            "skip_queues": "[]",
            "skip_tasks": "[]",
            "tasks": None,
            "queues": None,
        }
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + QUERIES["claim_candidates"], params)]
        steps = 0

        def count_step() -> int:
            nonlocal steps
            steps += 1
            return 0  # go on

        conn.set_progress_handler(count_step, 1)  # called on every SQLite VM instruction
        assert len(conn.execute(QUERIES["claim_candidates"], params).fetchall()) == 64
        conn.set_progress_handler(None, 1)
    assert "SCAN r USING INDEX runs_claim" in plan
    assert not any("runs_concurrency_key" in step or "TEMP B-TREE" in step for step in plan)
    # A walk past the 19,999 blocked runs would take several instructions each (the NOT EXISTS of
    # schema v2 took about 825,000 here); reading 64 candidates takes about 5,000.
    assert steps < 20_000

    assert await claim_ids(store, limit=1) == ["k00000"]
    await store.runs.finish_attempt(end("k00000", 1, NOW, "completed", COMPLETED))
    assert await claim_ids(store, limit=1) == ["k00001"]


# -- reads ------------------------------------------------------------------------------------------------


async def test_a_runs_page_is_newest_first_filtered_and_bounded(open_store: OpenStore) -> None:
    store = await open_store()
    await enqueue(store, "a", at=NOW + 1)
    await enqueue(store, "b", at=NOW + 2, source="stripe", task_id="record-payment")
    await enqueue(store, "c", at=NOW + 3, source="stripe")
    await enqueue(store, "d", at=NOW + 3)
    assert await claim_ids(store, now=NOW + 1) == ["a"]

    async def ids(limit: int = 50, **filters: Any) -> list[str]:
        return [r.id for r in await store.reads.runs_page(RunFilter(**filters), limit=limit)]

    assert await ids() == ["d", "c", "b", "a"]
    assert await ids(status=EXECUTING) == ["a"]
    assert await ids(task="record-payment") == ["b"]
    assert await ids(source="stripe") == ["c", "b"]
    assert await ids(source="stripe", task="deploy-preview") == ["c"]
    assert await ids(since=NOW + 2) == ["d", "c", "b"]
    assert await ids(limit=2) == ["d", "c"]
    assert (
        await store.reads.count_runs(RunFilter(status=QUEUED)),
        await store.reads.count_runs(RunFilter(status=EXECUTING)),
    ) == (3, 1)
    with pytest.raises(ValueError, match=r"^limit must be at least 1, not 0$"):
        await store.reads.runs_page(limit=0)


async def test_next_available_at_is_the_next_waiting_run_after_a_time(open_store: OpenStore) -> None:
    store = await open_store()
    assert await store.runs.next_available_at(after=NOW) is None
    await enqueue(store, "ready", at=NOW - 5)
    await enqueue(store, "soon", at=NOW + 7)
    await enqueue(store, "later", at=NOW + 9)
    assert await store.runs.next_available_at(after=NOW) == NOW + 7
    await store.runs.cancel("soon", now=NOW)
    assert await store.runs.next_available_at(after=NOW) == NOW + 9


async def test_unknown_runs_have_no_attempts(open_store: OpenStore) -> None:
    store = await open_store()
    assert await store.reads.attempts_for_run("run_missing") == []


async def test_the_new_run_fields_round_trip(open_store: OpenStore) -> None:
    store = await open_store()
    event = make_event("e1")
    rerun = make_run("r2", event, duration=12.5, idempotency_key="idem-1", rerun_of="r1")
    await store.record(event, [rerun])
    assert await store.reads.get_run("r2") == rerun
    assert await store.reads.runs_for_event(event.id) == [rerun]
    assert await store.reads.runs_page() == [rerun]


# -- migration --------------------------------------------------------------------------------------------


@pytest.mark.sqlite_only  # SQLite's own file, plans or migrations
async def test_a_version_1_file_upgrades_with_sort_keys_backfilled(
    open_store: OpenStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.store")
    path = tmp_path / "gateway.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(MIGRATIONS[0].sql)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO events (id, source, status, received_at, method, url, headers, query, body, "
            "payload_kind, payload, verification) VALUES ('evt_1', 'github', 'routed', ?, 'POST', "
            "'https://h/hooks/github', '[]', '[]', x'', 'json', '{}', 'unverified')",
            (NOW,),
        )
        conn.executemany(
            "INSERT INTO runs (id, event_id, task_id, input, status, priority, created_at, available_at) "
            "VALUES (?, 'evt_1', 'deploy-preview', '{}', 'queued', ?, ?, ?)",
            [("low", 0, NOW - 10, NOW - 10), ("high", 30, NOW - 5, NOW - 5)],
        )
        conn.commit()

    store = await open_store()
    steps = ", ".join(m.name for m in MIGRATIONS[1:])
    assert caplog.messages == [f"store: migrated {path} from schema version 1 to {len(MIGRATIONS)} ({steps})"]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        assert conn.execute("SELECT id, sort_key FROM runs ORDER BY id").fetchall() == [
            ("high", NOW - 35),
            ("low", NOW - 10),
        ]
    low = await store.reads.get_run("low")
    assert low is not None and (low.duration, low.idempotency_key, low.rerun_of) == (0.0, None, None)
    assert (low.traceparent, low.span_id) == (None, None)
    assert await claim_ids(store) == ["high", "low"]


@pytest.mark.sqlite_only  # SQLite's own file, plans or migrations
async def test_a_version_2_file_upgrades_with_all_but_each_keys_head_blocked(
    open_store: OpenStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.store")
    path = tmp_path / "gateway.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(MIGRATIONS[0].sql + MIGRATIONS[1].sql)
        conn.execute("PRAGMA user_version = 2")
        conn.execute(
            "INSERT INTO events (id, source, status, received_at, method, url, headers, query, body, "
            "payload_kind, payload, verification) VALUES ('evt_1', 'github', 'routed', ?, 'POST', "
            "'https://h/hooks/github', '[]', '[]', x'', 'json', '{}', 'unverified')",
            (NOW,),
        )
        runs = [  # id, task, key, status; in arrival order
            ("a1", "deploy-preview", "repo:a", "completed"),
            ("a2", "deploy-preview", "repo:a", "retrying"),  # the head of repo:a
            ("a3", "deploy-preview", "repo:a", "queued"),
            ("b1", "deploy-preview", "repo:b", "queued"),
            ("a4", "deploy-preview", "repo:a", "queued"),
            ("b2", "deploy-preview", "repo:b", "queued"),
            ("c1", "record-payment", "repo:a", "queued"),  # another task: another line
            ("n1", "deploy-preview", None, "queued"),
        ]
        conn.executemany(
            "INSERT INTO runs (id, event_id, task_id, concurrency_key, status, input, created_at, "
            "available_at, sort_key) VALUES (?, 'evt_1', ?, ?, ?, '{}', ?, ?, ?)",
            [(*run, NOW - 20 + n, NOW - 20 + n, NOW - 20 + n) for n, run in enumerate(runs)],
        )
        conn.commit()

    store = await open_store()
    steps = ", ".join(m.name for m in MIGRATIONS[2:])
    assert caplog.messages == [f"store: migrated {path} from schema version 2 to {len(MIGRATIONS)} ({steps})"]
    assert await blocked(store) == {"a1": 0, "a2": 0, "a3": 1, "b1": 0, "a4": 1, "b2": 1, "c1": 0, "n1": 0}
    assert await claim_ids(store) == ["a2", "b1", "c1", "n1"]
    await store.runs.finish_attempt(end("a2", 1, NOW + 1, "completed", COMPLETED))
    assert await claim_ids(store, now=NOW + 1) == ["a3"]
    await store.runs.finish_attempt(end("b1", 1, NOW + 1, "failed", FAILED, error=boom()))
    assert await claim_ids(store, now=NOW + 1) == ["b2"]


async def test_a_claimant_rides_only_batches_that_create_runs_and_claims_them_in_that_commit(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    claimant = Claims()
    store.runs.attach(claimant)
    claimant.riding = ClaimRequest(NOW, 5, LEASE)
    await store.record(make_event("alone"), [])  # no runs: the claimant is not asked to ride
    assert claimant.riding is not None and claimant.asked == []
    before = store.stats.commits
    first = await enqueue(store, "first")
    assert claimant.riding is None and store.stats.commits == before + 1
    await asyncio.sleep(0)  # rode() is called back once the commit's answers are out
    assert [[(c.run.id, c.attempt) for c in claims] for claims in claimant.rode_with] == [[(first.id, 1)]]
    assert claimant.committed_runs == [[first]]  # heard of the new run, in the same commit
    claimed = await store.reads.get_run(first.id)
    assert claimed is not None and claimed.status == "executing"


async def test_a_claimant_whose_ride_fails_or_passes_leaves_the_batch_and_its_runs_queued(
    open_store: OpenStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = await open_store()

    class Broken(Claims):
        def ride(self) -> ClaimRequest | None:
            raise RuntimeError("claimant bug")

    store.runs.attach(Broken())
    with caplog.at_level(logging.ERROR, logger="gateway.store"):
        run = await enqueue(store, "one")
    assert "the claimant failed to ride a batch" in caplog.text
    store.runs.attach(Claims())  # passes: rides nothing
    other = await enqueue(store, "two")
    for r in (run, other):
        stored = await store.reads.get_run(r.id)
        assert stored is not None and stored.status == QUEUED
    assert await claim_ids(store) == [run.id, other.id]


async def test_a_ride_in_a_batch_that_cannot_commit_is_reported_failed_and_claims_nothing(
    open_store: OpenStore,
) -> None:
    store: BatchSizes = await open_store(cls=BatchSizes)
    claimant = Claims()
    store.runs.attach(claimant)
    claimant.riding = ClaimRequest(NOW, 5, LEASE)
    store.fail_next = True
    with pytest.raises(StoreUnavailable):
        await enqueue(store, "lost")
    await asyncio.sleep(0)
    assert (claimant.failed_rides, claimant.rode_with, claimant.committed_runs) == (1, [], [])


async def test_a_claim_without_an_attached_claimant_is_refused(open_store: OpenStore) -> None:
    store = await open_store()
    with pytest.raises(RuntimeError, match="no claimant is attached"):
        await store.runs.claim(ClaimRequest(NOW, 1, LEASE))

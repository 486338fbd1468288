"""Store faults with SQLite's own messages (disk full, read-only, I/O error), in a batch's statements or at
its COMMIT: deliveries get 503 + Retry-After and never 2xx, nothing is half-written, the store recovers by
itself once the fault clears; and what the executor and the admin API do meanwhile. Real SQLite files."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway import Context, task
from gateway.execution.executor import Executor, ExecutorOptions
from gateway.model import Secret
from gateway.records.service import Service
from gateway.store.sqlite.store import SQLiteStore
from gateway.web.api import create_api
from gateway.web.auth import AdminKey
from tests.support.admin import SECRET, bearer, token
from tests.support.clock import Clock
from tests.support.database import on_disk, stored
from tests.support.deliveries import PUSH, github_headers
from tests.support.records import enqueue, push_event, queued_run

# What SQLite says for each fault (sqlite3_errstr of SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR).
FAULTS = {
    "disk-full": "database or disk is full",
    "read-only": "attempt to write a readonly database",
    "io-error": "disk I/O error",
}
PLACES = ("statement", "commit")
CASES = [pytest.param(message, at, id=f"{name}-at-{at}") for name, message in FAULTS.items() for at in PLACES]
UNSTORED = {"error": "store_unavailable", "detail": "the event could not be stored; retry later"}


class _Disk:
    """The writer connection, failing while its store's ``fault`` is set: at ``statement``, the batch's first
    write runs (its rows are in the open transaction) and then raises; at ``commit``, every statement runs and
    COMMIT raises. Either way the store must roll back what the transaction holds."""

    def __init__(self, conn: Any, store: FaultyStore) -> None:
        self._conn, self._store = conn, store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def execute(self, sql: str, *args: Any) -> Any:
        if sql in ("BEGIN IMMEDIATE", "ROLLBACK"):
            return await self._conn.execute(sql, *args)
        if sql == "COMMIT":
            self._strike("commit")
            return await self._conn.execute(sql, *args)
        return await self._wrote(await self._conn.execute(sql, *args))

    async def executemany(self, sql: str, *args: Any) -> Any:
        return await self._wrote(await self._conn.executemany(sql, *args))

    async def _wrote(self, cursor: Any) -> Any:
        self._strike("statement")
        return cursor

    def _strike(self, place: str) -> None:
        if self._store.fault is not None and self._store.at == place:
            self._store.refused += 1
            raise sqlite3.OperationalError(self._store.fault)


class FaultyStore(SQLiteStore):
    """A real store on a real file whose disk fails with ``fault`` (SQLite's message) while it is set."""

    def __init__(self, writer: Any, reader: Any, **kwargs: Any) -> None:
        self.fault: str | None = None
        self.at = "statement"
        self.refused = 0  # writes or commits that failed
        super().__init__(_Disk(writer, self), reader, **kwargs)


async def deliver(client: httpx.AsyncClient, delivery: str) -> httpx.Response:
    return await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery=delivery))


@pytest.fixture
async def faulty(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> tuple[FaultyStore, httpx.AsyncClient]:
    store = await open_store(cls=FaultyStore)
    return store, await client_for(load_config(), store)


@pytest.mark.parametrize(("message", "at"), CASES)
async def test_a_store_fault_answers_503_with_retry_after_and_leaves_nothing_half_written(
    faulty: tuple[FaultyStore, httpx.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    message: str,
    at: str,
) -> None:
    store, client = faulty
    assert (await deliver(client, "d-0")).status_code == 202
    store.fault, store.at = message, at

    # Sent together, so the writer commits several of them in one batch: the whole batch is refused.
    answers = await asyncio.gather(*(deliver(client, f"d-{n}") for n in range(1, 6)))
    assert [(a.status_code, a.headers["retry-after"], a.json()) for a in answers] == [
        (503, "5", UNSTORED)
    ] * 5
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.headers["retry-after"], ready.json()["error"]) == (
        503,
        "5",
        "store_unavailable",
    )
    assert re.fullmatch(
        r"the database is not writable: a write could not be committed \d+ s ago \(see the log\)",
        ready.json()["detail"],
    )
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    # A forged delivery is still the sender's fault (401), even though its rejection cannot be kept.
    forged = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH, secret="wrong"))
    assert (forged.status_code, forged.json()["error"]) == (401, "bad_signature")

    assert on_disk(tmp_path / "gateway.db") == stored("d-0")
    assert store.stats.events == 1
    rolled_back = [r.getMessage() for r in caplog.records if r.name == "gateway.store"]
    assert rolled_back and all(
        m.startswith("store: rolled back a batch of ") and m.endswith(f" writes: {message}")
        for m in rolled_back
    )
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.app"]
    assert said.count("store unavailable: answering 503 for a github delivery") == 5
    assert "could not record a rejection for source github (bad_signature): store unavailable" in said


@pytest.mark.parametrize(("message", "at"), CASES)
async def test_the_store_recovers_without_a_restart_once_the_fault_clears(
    faulty: tuple[FaultyStore, httpx.AsyncClient], tmp_path: Path, message: str, at: str
) -> None:
    store, client = faulty
    store.fault, store.at = message, at
    assert [(await deliver(client, "d-1")).status_code for _ in range(3)] == [503] * 3  # the sender retries
    refused = store.refused

    store.fault = None
    retried = await deliver(client, "d-1")
    assert retried.status_code == 202
    again = await deliver(client, "d-1")
    assert (again.status_code, again.json()["event_id"]) == (200, retried.json()["event_id"])
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    assert on_disk(tmp_path / "gateway.db") == stored("d-1")
    assert (refused, store.stats.failed_batches) == (3, 3)


async def until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(("message", "at"), CASES)
async def test_a_run_that_ends_while_the_store_cannot_commit_is_recorded_once_it_can(
    open_store: Callable[..., Any], caplog: pytest.LogCaptureFixture, message: str, at: str
) -> None:
    store: FaultyStore = await open_store(cls=FaultyStore)
    store.at = at
    calls: list[int] = []

    @task(id="ship")
    async def ship(payload: dict[str, int], ctx: Context) -> dict[str, int]:
        calls.append(ctx.attempt)
        store.fault = message  # the disk fails while the task runs: its end cannot be committed
        return {"shipped": payload["n"]}

    clock = Clock()
    executor = Executor(store.runs, {ship.id: ship}, ExecutorOptions(lease=30.0), clock=clock)
    run = await enqueue(store, clock, ship, {"n": 7})
    stepping = asyncio.create_task(executor.run_once())
    await until(lambda: store.refused > 0, "the end of the attempt to be refused")
    store.fault = None
    assert await asyncio.wait_for(stepping, timeout=10) == 1

    done = await store.reads.get_run(run.id)
    assert done is not None
    assert (done.status, done.output, done.attempts, done.crashes) == ("completed", {"shipped": 7}, 1, 0)
    assert [(a.number, a.outcome) for a in await store.reads.attempts_for_run(run.id)] == [(1, "completed")]
    assert calls == [1]  # the task did not run again
    unkept = f"the write could not be committed ({message}); nothing of it was kept"
    assert f"could not record the end of run {run.id} attempt 1 ({unkept}); trying again" in caplog.text


async def test_a_store_fault_longer_than_the_lease_keeps_the_end_until_the_store_takes_it(
    open_store: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    store: FaultyStore = await open_store(cls=FaultyStore)
    calls: list[int] = []

    @task(id="ship")
    async def ship(payload: dict[str, int], ctx: Context) -> dict[str, int]:
        calls.append(ctx.attempt)
        store.fault = FAULTS["disk-full"]
        return {"shipped": payload["n"]}

    options = ExecutorOptions(lease=0.2, heartbeat=0.05, poll=0.05)
    executor = Executor(store.runs, {ship.id: ship}, options, clock=time.time)
    run = await enqueue(store, Clock(time.time()), ship, {"n": 7})
    stop = asyncio.Event()
    runner = asyncio.create_task(executor.run(stop))
    await until(lambda: store.refused >= 12, "refusals for well over a lease (0.2 s)")
    on_hold = await store.reads.get_run(run.id)
    assert on_hold is not None and on_hold.status == "executing"
    store.fault = None
    for _ in range(200):
        done = await store.reads.get_run(run.id)
        if done is not None and done.status == "completed":
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(runner, timeout=10)
    assert done is not None
    assert (done.status, done.output, done.attempts, done.crashes) == ("completed", {"shipped": 7}, 1, 0)
    assert [a.outcome for a in await store.reads.attempts_for_run(run.id)] == ["completed"]
    assert calls == [1]  # never run again, however long the fault lasted
    assert "crash" not in caplog.text


@pytest.mark.parametrize(("message", "at"), CASES)
async def test_admin_reads_work_during_a_store_fault_and_writes_get_503(
    load_config: Callable[..., Any], open_store: Callable[..., Any], tmp_path: Path, message: str, at: str
) -> None:
    store: FaultyStore = await open_store(cls=FaultyStore)
    clock = Clock()
    api = create_api(
        Service(store, load_config(), clock=clock), AdminKey("HS256", Secret(SECRET)), clock=clock
    )
    app = Starlette(routes=[Mount("/api", app=api)])
    event = push_event("seed", clock.now - 60, content_type="application/json")
    run = queued_run("seed", event)
    await store.record(event, [run])
    store.fault, store.at = message, at
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test", headers=bearer(token())
    ) as client:
        listed = await client.get("/api/events")
        assert (listed.status_code, [e["id"] for e in listed.json()["data"]]) == (200, [event.id])
        assert (await client.get(f"/api/events/{event.id}")).status_code == 200
        assert (await client.get(f"/api/runs/{run.id}")).json()["status"] == "queued"
        unavailable = (
            503,
            "5",
            {"error": "store_unavailable", "detail": "the database could not answer; retry later"},
        )
        for path in (
            f"/api/events/{event.id}/replay",
            f"/api/runs/{run.id}/rerun",
            f"/api/runs/{run.id}/cancel",
        ):
            answer = await client.post(path, json={} if path.endswith("rerun") else None)
            assert (answer.status_code, answer.headers.get("retry-after"), answer.json()) == unavailable, path

        assert on_disk(tmp_path / "gateway.db") == {**stored(), "deliveries": [None], "runs": 1}
        store.fault = None
        replayed = await client.post(f"/api/events/{event.id}/replay")
        assert replayed.status_code == 202
        assert (await client.post(f"/api/runs/{run.id}/cancel")).json()["status"] == "canceled"

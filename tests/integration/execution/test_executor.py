"""The executor on a real store: outcomes, retries on a fake clock, limits, key order, crashes, shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from gateway import AbortRun, Context, RetryAfter, task
from gateway.execution.executor import Executor, ExecutorOptions
from gateway.execution.tasks import Task
from gateway.records import serving
from gateway.store.sqlite.store import SQLiteStore
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.logs import Scrub
from tests.support.claims import claim_runs
from tests.support.clock import Clock
from tests.support.database import elsewhere
from tests.support.records import enqueue

pytestmark = pytest.mark.both_stores


@pytest.fixture
async def setup(open_store: Callable[..., Any]) -> Callable[..., Any]:
    async def make(*tasks: Task, **options: Any) -> tuple[SQLiteStore, Executor, Clock]:
        clock = Clock()
        store = await open_store()
        executor = Executor(
            store.runs, {t.id: t for t in tasks}, ExecutorOptions(**options), clock=clock, rand=lambda: 0.0
        )
        return store, executor, clock

    return make


async def test_a_completed_run_keeps_output_attempt_logs_and_duration(setup: Callable[..., Any]) -> None:
    seen: list[Context] = []

    @task(id="echo")
    async def echo(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
        seen.append(ctx)
        ctx.log.info("got %s", payload["n"])
        return {"doubled": payload["n"] * 2}

    store, executor, clock = await setup(echo)
    run = await enqueue(store, clock, echo, {"n": 21})
    assert await executor.run_once() == 1
    done = await store.reads.get_run(run.id)
    assert done is not None
    assert (done.status, done.output, done.attempts, done.error) == ("completed", {"doubled": 42}, 1, None)
    assert done.finished_at is not None and done.duration >= 0
    [attempt] = await store.reads.attempts_for_run(run.id)
    assert (attempt.number, attempt.outcome) == (1, "completed")
    assert [line["message"] for line in attempt.logs] == ["got 21"]
    [ctx] = seen
    assert (ctx.run_id, ctx.event_id, ctx.source, ctx.event_type, ctx.attempt) == (
        run.id,
        run.event_id,
        "test",
        "thing.happened",
        1,
    )
    assert ctx.idempotency_key == run.id
    assert ctx.headers["x-trace"] == "abc"


async def test_fails_twice_then_succeeds_with_backoff_on_the_clock(setup: Callable[..., Any]) -> None:
    calls: list[tuple[int, str]] = []

    @task(id="flaky", retry={"max_attempts": 3, "min_timeout": 1, "factor": 2})
    async def flaky(payload: Any, ctx: Context) -> str:
        calls.append((ctx.attempt, ctx.idempotency_key))
        if ctx.attempt < 3:
            raise ConnectionError(f"upstream down ({ctx.attempt})")
        return "ok"

    store, executor, clock = await setup(flaky)
    run = await enqueue(store, clock, flaky)
    assert await executor.run_once() == 1
    waiting = await store.reads.get_run(run.id)
    assert waiting is not None
    assert (waiting.status, waiting.attempts) == ("retrying", 1)
    assert waiting.error is not None and waiting.error["message"] == "upstream down (1)"
    assert (
        await store.runs.next_available_at(after=clock()) == clock() + 1
    )  # rand pinned to 0: exactly min_timeout

    assert await executor.run_once() == 0  # not before its time
    clock.advance(1)
    assert await executor.run_once() == 1
    assert await store.runs.next_available_at(after=clock()) == clock() + 2  # factor 2
    clock.advance(2)
    assert await executor.run_once() == 1

    done = await store.reads.get_run(run.id)
    assert done is not None
    assert (done.status, done.attempts, done.output) == ("completed", 3, "ok")
    assert [c[0] for c in calls] == [1, 2, 3]
    assert {c[1] for c in calls} == {run.id}  # one idempotency key across attempts
    history = await store.reads.attempts_for_run(run.id)
    assert [(a.outcome, a.error_type) for a in history] == [
        ("failed", "ConnectionError"),
        ("failed", "ConnectionError"),
        ("completed", None),
    ]
    assert history[0].traceback is not None and "upstream down (1)" in history[0].traceback


async def test_retries_run_out_and_the_run_fails_with_the_last_error(setup: Callable[..., Any]) -> None:
    @task(id="broken", retry={"max_attempts": 2, "min_timeout": 0})
    async def broken(payload: Any, ctx: Context) -> None:
        raise ValueError("bad input")

    store, executor, clock = await setup(broken)
    run = await enqueue(store, clock, broken)
    await executor.run_once()
    await executor.run_once()
    assert await executor.run_once() == 0
    done = await store.reads.get_run(run.id)
    assert done is not None
    assert (done.status, done.attempts) == ("failed", 2)
    assert done.error is not None and (done.error["type"], done.error["message"]) == (
        "ValueError",
        "bad input",
    )


async def test_abort_run_fails_at_once(setup: Callable[..., Any]) -> None:
    @task(id="aborts")
    async def aborts(payload: Any, ctx: Context) -> None:
        raise AbortRun("customer deleted")

    store, executor, clock = await setup(aborts)
    run = await enqueue(store, clock, aborts)
    await executor.run_once()
    done = await store.reads.get_run(run.id)
    assert done is not None
    assert (done.status, done.attempts) == ("failed", 1)
    assert done.error is not None and done.error["type"] == "AbortRun"
    assert [a.outcome for a in await store.reads.attempts_for_run(run.id)] == ["aborted"]


async def test_retry_after_schedules_the_next_attempt_exactly(setup: Callable[..., Any]) -> None:
    @task(id="limited")
    async def limited(payload: Any, ctx: Context) -> str:
        if ctx.attempt == 1:
            raise RetryAfter(30)
        return "second time lucky"

    store, executor, clock = await setup(limited)
    run = await enqueue(store, clock, limited)
    await executor.run_once()
    assert await store.runs.next_available_at(after=clock()) == clock() + 30
    clock.advance(29.9)
    assert await executor.run_once() == 0
    clock.advance(0.1)
    assert await executor.run_once() == 1
    done = await store.reads.get_run(run.id)
    assert done is not None and (done.status, done.attempts) == ("completed", 2)


async def test_an_attempt_over_its_timeout_is_cancelled_and_counted(setup: Callable[..., Any]) -> None:
    cancelled = asyncio.Event()

    @task(id="hangs", timeout=0.05, retry={"max_attempts": 1})
    async def hangs(payload: Any, ctx: Context) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    store, executor, clock = await setup(hangs)
    run = await enqueue(store, clock, hangs)
    await executor.run_once()
    assert cancelled.is_set()
    done = await store.reads.get_run(run.id)
    assert done is not None and (done.status, done.attempts) == ("timed_out", 1)
    assert done.error is not None and done.error["message"] == "the attempt ran past its timeout of 0.05 s"


async def test_a_route_override_of_the_timeout_wins(setup: Callable[..., Any]) -> None:
    @task(id="slowish", timeout=None, retry={"max_attempts": 1})
    async def slowish(payload: Any, ctx: Context) -> None:
        await asyncio.sleep(3600)

    store, executor, clock = await setup(slowish)
    run = await enqueue(store, clock, slowish, options={"timeout": 0.05})
    await executor.run_once()
    done = await store.reads.get_run(run.id)
    assert done is not None and done.status == "timed_out"


async def test_unserialisable_output_fails_the_attempt_naming_the_type(setup: Callable[..., Any]) -> None:
    @task(id="returns-a-set", retry={"max_attempts": 1})
    async def returns_a_set(payload: Any, ctx: Context) -> set[int]:
        return {1, 2}

    store, executor, clock = await setup(returns_a_set)
    run = await enqueue(store, clock, returns_a_set)
    await executor.run_once()
    done = await store.reads.get_run(run.id)
    assert done is not None and done.status == "failed"
    assert done.error == {
        "type": "TypeError",
        "message": "task 'returns-a-set' returned a value that is not JSON-serialisable: "
        "Object of type set is not JSON serializable",
        "traceback": None,
    }


async def test_sync_tasks_run_in_worker_threads_and_one_argument_tasks_work(
    setup: Callable[..., Any],
) -> None:
    threads: list[str] = []

    @task(id="sync")
    def sync(payload: Any, ctx: Context) -> str:
        threads.append(threading.current_thread().name)
        ctx.log("from a thread")
        return "done"

    @task(id="payload-only")
    async def payload_only(payload: Any) -> Any:
        return payload

    store, executor, clock = await setup(sync, payload_only)
    a = await enqueue(store, clock, sync)
    b = await enqueue(store, clock, payload_only, {"x": 1})
    assert await executor.run_once() == 2
    assert threads[0].startswith("gateway-task")
    assert [
        (r.status, r.output) for r in [await store.reads.get_run(a.id), await store.reads.get_run(b.id)] if r
    ] == [
        ("completed", "done"),
        ("completed", {"x": 1}),
    ]


async def test_a_run_for_a_task_this_executor_does_not_have_waits_queued_for_a_worker_that_has_it(
    setup: Callable[..., Any],
) -> None:
    """Workers may serve different tasks (or versions, mid-deploy): one that lacks a run's task leaves it
    queued, never fails it, and the run is listed as waiting for a worker."""

    @task(id="gone")
    async def gone(payload: Any, ctx: Context) -> None: ...

    store, executor, clock = await setup()  # the task is not loaded (renamed, or served by other workers)
    run = await enqueue(store, clock, gone)
    assert await executor.run_once() == 0
    left = await store.reads.get_run(run.id)
    assert left is not None and (left.status, left.attempts) == ("queued", 0)
    await store.runs.register(executor.describe())
    workers = await store.reads.workers(live_since=clock() - 30)
    rows = serving.waiting(workers, await store.reads.waiting_by_task())
    assert serving.unserved(rows) == {"gone": 1}


class Gauge:
    """Counts how many holders are inside at once; tasks wait on `release` so overlap is certain."""

    def __init__(self) -> None:
        self.inside = 0
        self.peak = 0
        self.release = asyncio.Event()
        self.entered = 0

    async def hold(self) -> None:
        self.inside += 1
        self.entered += 1
        self.peak = max(self.peak, self.inside)
        try:
            await asyncio.wait_for(self.release.wait(), timeout=0.2)
        except TimeoutError:
            pass
        finally:
            self.inside -= 1


@pytest.mark.parametrize(
    ("task_concurrency", "queue", "queue_limit", "global_limit", "expected_peak"),
    [
        (2, None, None, 100, 2),  # per-task limit
        (None, "shared", 3, 100, 3),  # per-queue limit across two tasks
        (None, None, None, 4, 4),  # global limit
    ],
)
async def test_concurrency_limits_hold_under_load(
    setup: Callable[..., Any],
    task_concurrency: int | None,
    queue: str | None,
    queue_limit: int | None,
    global_limit: int,
    expected_peak: int,
) -> None:
    gauge = Gauge()

    @task(id="a", concurrency=task_concurrency, queue=queue)
    async def a(payload: Any, ctx: Context) -> None:
        await gauge.hold()

    @task(id="b", concurrency=task_concurrency, queue=queue)
    async def b(payload: Any, ctx: Context) -> None:
        await gauge.hold()

    queues = {queue: queue_limit} if queue and queue_limit else {}
    store, executor, clock = await setup(a, b, concurrency=global_limit, queues=queues)
    for _ in range(8):
        await enqueue(store, clock, a)
    if queue:
        for _ in range(4):
            await enqueue(store, clock, b)
    total = 12 if queue else 8
    while gauge.entered < total:
        assert await executor.run_once() > 0
    assert gauge.peak == expected_peak


async def test_one_key_runs_in_arrival_order_one_at_a_time_while_other_keys_proceed(
    setup: Callable[..., Any],
) -> None:
    order: list[tuple[str, int]] = []
    inside: dict[str, int] = {}
    overlap: list[str] = []

    @task(id="per-customer", concurrency_key="payload.customer")
    async def per_customer(payload: dict[str, Any], ctx: Context) -> None:
        customer = payload["customer"]
        inside[customer] = inside.get(customer, 0) + 1
        if inside[customer] > 1:
            overlap.append(customer)
        await asyncio.sleep(0.01)
        order.append((customer, payload["n"]))
        inside[customer] -= 1

    store, executor, clock = await setup(per_customer)
    for n in range(4):
        await enqueue(store, clock, per_customer, {"customer": "A", "n": n}, key="A")
    for n in range(2):
        await enqueue(store, clock, per_customer, {"customer": "B", "n": n}, key="B")
    started = []
    while len(order) < 6:
        started.append(await executor.run_once())
    assert started == [2, 2, 1, 1]  # A needs four rounds; B ran beside A's first two
    assert [n for c, n in order if c == "A"] == [0, 1, 2, 3]
    assert [n for c, n in order if c == "B"] == [0, 1]
    assert overlap == []


async def test_a_retrying_run_holds_back_later_runs_of_its_key(setup: Callable[..., Any]) -> None:
    ran: list[int] = []

    @task(id="ordered", concurrency_key="payload.k", retry={"min_timeout": 10})
    async def ordered(payload: dict[str, Any], ctx: Context) -> None:
        ran.append(payload["n"])
        if payload["n"] == 0 and ctx.attempt == 1:
            raise RuntimeError("first one fails once")

    store, executor, clock = await setup(ordered)
    for n in range(2):
        await enqueue(store, clock, ordered, {"k": "x", "n": n}, key="x")
    await executor.run_once()
    assert await executor.run_once() == 0  # run 1 waits behind run 0's retry
    clock.advance(10)
    await executor.run_once()
    await executor.run_once()
    assert ran == [0, 0, 1]


async def test_a_crashed_run_is_recovered_without_using_a_retry(
    setup: Callable[..., Any], open_store: Callable[..., Any]
) -> None:
    @task(id="work", retry={"max_attempts": 1})
    async def work(payload: Any, ctx: Context) -> int:
        return ctx.attempt

    store, executor, clock = await setup(work)
    run = await enqueue(store, clock, work)
    dying = await open_store()  # another process on the same file claims the run, then dies
    claimed = await claim_runs(dying.runs, now=clock(), limit=1, lease=30)
    assert [c.run.id for c in claimed] == [run.id]
    await executor.recover(only_expired=False)
    assert await executor.run_once() == 1
    done = await store.reads.get_run(run.id)
    assert done is not None
    assert (done.status, done.attempts, done.crashes, done.output) == ("completed", 1, 1, 2)
    assert [a.outcome for a in await store.reads.attempts_for_run(run.id)] == ["crashed", "completed"]


async def test_shutdown_interrupts_after_the_deadline_and_requeues(setup: Callable[..., Any]) -> None:
    started = asyncio.Event()

    @task(id="long", timeout=None, retry={"max_attempts": 1})
    async def long(payload: Any, ctx: Context) -> None:
        started.set()
        await asyncio.sleep(3600)

    store, executor, clock = await setup(long, drain_timeout=0.05, poll=0.05)
    run = await enqueue(store, clock, long)
    stop = asyncio.Event()
    runner = asyncio.create_task(executor.run(stop))
    await asyncio.wait_for(started.wait(), timeout=10)
    stop.set()
    await asyncio.wait_for(runner, timeout=10)
    after = await store.reads.get_run(run.id)
    assert after is not None
    assert (after.status, after.attempts, after.crashes) == ("queued", 0, 0)  # no retry used, not a crash
    assert [a.outcome for a in await store.reads.attempts_for_run(run.id)] == ["interrupted"]


async def test_a_commit_wakes_the_running_executor(open_store: Callable[..., Any]) -> None:
    finished = asyncio.Event()

    @task(id="quick")
    async def quick(payload: Any, ctx: Context) -> None:
        finished.set()

    store = await open_store()
    clock = Clock()
    executor = Executor(store.runs, {"quick": quick}, ExecutorOptions(poll=3600), clock=clock)
    stop = asyncio.Event()
    runner = asyncio.create_task(executor.run(stop))
    await asyncio.sleep(0)
    await enqueue(store, clock, quick)
    await asyncio.wait_for(finished.wait(), timeout=10)  # woken by the commit, not by the hour-long poll
    stop.set()
    await asyncio.wait_for(runner, timeout=10)


async def test_a_run_starts_after_the_one_commit_that_records_it(open_store: Callable[..., Any]) -> None:
    # The executor's claim rides the batch that inserts the run: one transaction, then the task starts.
    commits_at_start: list[int] = []
    stores: list[SQLiteStore] = []

    @task(id="quick")
    async def quick(payload: Any, ctx: Context) -> None:
        commits_at_start.append(stores[0].stats.commits)

    store = await open_store()
    stores.append(store)
    clock = Clock()
    executor = Executor(store.runs, {"quick": quick}, ExecutorOptions(poll=3600), clock=clock)
    stop = asyncio.Event()
    runner = asyncio.create_task(executor.run(stop))

    async def idle() -> None:
        for _ in range(1000):
            if executor.idle:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the executor did not idle")

    await enqueue(store, clock, quick)  # the first: start-up recovery and claims settle meanwhile
    await idle()
    before = store.stats.commits
    run = await enqueue(store, clock, quick)
    await idle()
    assert commits_at_start[1:] == [before + 1]
    stop.set()
    await asyncio.wait_for(runner, timeout=10)
    after = await store.reads.get_run(run.id)
    assert after is not None and (after.status, after.attempts) == ("completed", 1)


async def test_a_canceled_run_never_executes(setup: Callable[..., Any]) -> None:
    @task(id="never")
    async def never(payload: Any, ctx: Context) -> None:
        raise AssertionError("must not run")

    store, executor, clock = await setup(never)
    run = await enqueue(store, clock, never)
    canceled = await store.runs.cancel(run.id, now=clock())
    assert canceled is not None and canceled.status == "canceled"
    assert await executor.run_once() == 0


async def test_a_sync_task_that_blocks_does_not_stall_other_runs(setup: Callable[..., Any]) -> None:
    gate = threading.Event()
    quick_done = asyncio.Event()

    @task(id="blocker")
    def blocker(payload: Any, ctx: Context) -> None:
        gate.wait(timeout=30)  # holds a worker thread, never the event loop

    @task(id="quick")
    async def quick(payload: Any, ctx: Context) -> None:
        quick_done.set()

    store, executor, clock = await setup(blocker, quick, poll=0.05)
    await enqueue(store, clock, blocker)
    await enqueue(store, clock, quick)
    stop = asyncio.Event()
    runner = asyncio.create_task(executor.run(stop))
    await asyncio.wait_for(quick_done.wait(), timeout=10)  # would hang if the blocker held the loop
    gate.set()
    stop.set()
    await asyncio.wait_for(runner, timeout=10)


async def test_the_heartbeat_renews_the_lease_while_task_code_blocks_the_event_loop(
    setup: Callable[..., Any], tmp_path: Any
) -> None:
    import time as _time

    leases: list[float] = []

    def watch(stop: threading.Event) -> None:  # another connection, as another process would look
        while not stop.wait(0.05):
            for (lease,) in elsewhere(store, "SELECT lease_until FROM runs WHERE status = 'executing'"):
                if lease is not None:
                    leases.append(float(str(lease)))

    @task(id="hog", timeout=None)
    async def hog(payload: Any, ctx: Context) -> str:
        _time.sleep(1.0)  # sync code inside an async task: the event loop is stuck for a second
        return "done"

    store, executor, _ = await setup(hog, lease=0.5, heartbeat=0.1, poll=0.05)
    executor.clock = _time.time  # real time: the lease is real here
    run = await enqueue(store, Clock(_time.time()), hog)
    stop_watch = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop_watch,))
    watcher.start()
    stop = asyncio.Event()
    runner = asyncio.create_task(executor.run(stop))
    while (current := await store.reads.get_run(run.id)) is None or current.status != "completed":
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(runner, timeout=10)
    stop_watch.set()
    watcher.join()
    assert len(set(leases)) >= 3  # renewed several times while the loop was blocked
    assert (current.attempts, current.crashes) == (1, 0)
    assert [a.outcome for a in await store.reads.attempts_for_run(run.id)] == ["completed"]


async def test_a_secret_a_task_puts_into_its_error_or_log_is_stored_redacted(
    open_store: Callable[..., Any],
) -> None:
    secret = "whsec_do-not-store-me"

    @task(id="careless", retry={"max_attempts": 1})
    async def careless(payload: Any, ctx: Context) -> None:
        ctx.log.info("calling with key %s", secret)
        raise RuntimeError(f"upstream refused key {secret}")

    clock = Clock()
    store = await open_store()
    telemetry = Telemetry(scrub=Scrub([secret]))
    executor = Executor(store.runs, {careless.id: careless}, clock=clock, telemetry=telemetry)
    run = await enqueue(store, clock, careless)
    await executor.run_once()
    done = await store.reads.get_run(run.id)
    assert done is not None and done.error is not None
    assert done.error["message"] == "upstream refused key [redacted]"
    [attempt] = await store.reads.attempts_for_run(run.id)
    assert attempt.error_message == "upstream refused key [redacted]"
    assert attempt.traceback is not None and secret not in attempt.traceback
    assert [line["message"] for line in attempt.logs] == ["calling with key [redacted]"]

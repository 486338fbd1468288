"""The tasks' own loop: results, errors and context cross it; cancelling reaches the task; a task blocking it
stalls neither the caller's loop nor the executor, and the watchdog names it; the executor keeps a finished
attempt while the store cannot commit."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway import Context, task
from gateway.errors import StoreUnavailable
from gateway.execution.executor import Executor, ExecutorOptions
from gateway.execution.taskloop import TaskLoop
from gateway.model import AttemptEnd
from gateway.store.sqlite.store import SQLiteStore
from tests.support.clock import Clock
from tests.support.records import enqueue

WHO = contextvars.ContextVar("who", default="nobody")


@pytest.fixture
def loop() -> Iterator[TaskLoop]:
    tasks = TaskLoop(stall=0.2)
    yield tasks
    tasks.close()


async def test_a_result_an_exception_and_the_callers_context_cross_the_loop(loop: TaskLoop) -> None:
    async def whoami() -> tuple[str, str]:
        return WHO.get(), threading.current_thread().name

    async def fail() -> None:
        raise KeyError("missing")

    WHO.set("the attempt")
    assert await loop.call(whoami(), "run r1") == ("the attempt", "gateway-tasks")
    with pytest.raises(KeyError, match="missing"):
        await loop.call(fail(), "run r2")


async def test_cancelling_the_caller_cancels_the_task_at_its_next_await(loop: TaskLoop) -> None:
    started, stopped = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.set()
            raise

    waiting = asyncio.create_task(loop.call(forever(), "run r1"))
    await asyncio.to_thread(started.wait, 5)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await asyncio.to_thread(stopped.wait, 5)


async def test_a_task_blocking_its_loop_leaves_the_callers_loop_free_and_is_named(
    loop: TaskLoop, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    async def hog() -> str:
        release.wait(10)  # sync code inside an async task
        return "released"

    ticks = 0
    held = asyncio.create_task(loop.call(hog(), "run r9 (task hog)"))
    with caplog.at_level(logging.WARNING, logger="gateway.executor"):
        while "has blocked" not in caplog.text:  # the caller's loop turns while the tasks' loop is held
            ticks += 1
            await asyncio.sleep(0.01)
    assert ticks > 1 and not held.done()
    assert "run r9 (task hog) has blocked the tasks' event loop for" in caplog.text
    assert "declare the task with `def`" in caplog.text
    release.set()
    assert await held == "released"


async def test_close_leaves_a_loop_stuck_in_sync_code_behind_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stuck, release = threading.Event(), threading.Event()

    async def hog() -> None:
        stuck.set()
        release.wait(10)

    tasks = TaskLoop(stall=60)
    waiting = asyncio.create_task(tasks.call(hog(), "run r1"))
    await asyncio.to_thread(stuck.wait, 5)
    with caplog.at_level(logging.WARNING, logger="gateway.executor"):
        await asyncio.to_thread(tasks.close, 0.2)
    assert "did not stop within 0 s" in caplog.text
    release.set()
    assert await waiting is None  # it ran to its end once free; the loop then stopped


async def test_an_async_task_stuck_in_sync_code_times_out_and_other_runs_go_on(
    open_store: Callable[..., Any],
) -> None:
    release = threading.Event()

    @task(id="hog", timeout=0.3, retry={"max_attempts": 1})
    async def hog(payload: Any, ctx: Context) -> None:
        release.wait(10)

    @task(id="sync-echo")
    def echo(payload: Any, ctx: Context) -> Any:
        return payload

    clock = Clock(time.time())  # the executor runs on real time here
    store = await open_store()
    executor = Executor(
        store.runs, {"hog": hog, "sync-echo": echo}, ExecutorOptions(own_loop=True, poll=0.05)
    )
    stuck = await enqueue(store, clock, hog)
    other = await enqueue(store, clock, echo, {"n": 1})
    stop = asyncio.Event()
    runner = asyncio.create_task(executor.run(stop))
    try:
        for _ in range(200):
            runs = [await store.reads.get_run(stuck.id), await store.reads.get_run(other.id)]
            if all(r is not None and r.status in ("timed_out", "completed") for r in runs):
                break
            await asyncio.sleep(0.05)
        timed_out, completed = runs
        assert timed_out is not None and completed is not None
        assert (timed_out.status, completed.status, completed.output) == ("timed_out", "completed", {"n": 1})
        assert not release.is_set()  # abandoned while still stuck: the timeout did not wait for it
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(runner, timeout=10)


class FlakyFinishStore(SQLiteStore):
    """A store whose first ``failures`` attempt ends cannot be committed (a disk full for a moment)."""

    failures = 2
    tried = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        commit = self.runs.finish_attempt

        async def finish_attempt(end: AttemptEnd) -> None:
            self.tried += 1
            if self.tried <= self.failures:
                raise StoreUnavailable("the write could not be committed (database or disk is full)")
            await commit(end)

        self.runs.finish_attempt = finish_attempt  # type: ignore[method-assign]


async def test_a_finished_attempt_is_kept_and_written_once_the_store_takes_writes_again(
    open_store: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    executions: list[float] = []

    @task(id="once")
    async def once(payload: Any, ctx: Context) -> str:
        executions.append(time.time())
        return "done"

    clock = Clock()
    store = await open_store(cls=FlakyFinishStore)
    executor = Executor(store.runs, {"once": once}, ExecutorOptions(), clock=clock)
    run = await enqueue(store, clock, once)
    with caplog.at_level(logging.WARNING, logger="gateway.executor"):
        assert await executor.run_once() == 1
    done = await store.reads.get_run(run.id)
    assert done is not None and (done.status, done.output, done.attempts) == ("completed", "done", 1)
    assert len(executions) == 1 and store.tried == 3
    assert caplog.text.count(f"could not record the end of run {run.id} attempt 1") == 2

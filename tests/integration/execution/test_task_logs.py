"""`gateway serve --task-logs`: what a task logs (ctx.log) also goes to the process log (logger gateway.task),
with its run, task and attempt; it is stored with the attempt either way."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from gateway import Context, task
from gateway.execution.executor import Executor, ExecutorOptions
from tests.support.clock import Clock
from tests.support.records import enqueue


@task(id="chatty")
async def chatty(payload: Any, ctx: Context) -> None:
    ctx.log.info("fetched %d rows", 3)
    ctx.log.warning("slow upstream")


@pytest.mark.parametrize("echo", [True, False])
async def test_task_lines_reach_the_process_log_only_when_asked_and_are_stored_either_way(
    open_store: Callable[..., Any], caplog: pytest.LogCaptureFixture, echo: bool
) -> None:
    store = await open_store()
    clock = Clock()
    executor = Executor(store.runs, {"chatty": chatty}, ExecutorOptions(task_logs=echo), clock=clock)
    run = await enqueue(store, clock, chatty)
    with caplog.at_level(logging.DEBUG, logger="gateway.task"):
        assert await executor.run_once() == 1
    said = [r for r in caplog.records if r.name == "gateway.task"]
    if echo:
        assert [(r.levelname, r.getMessage(), r.run_id, r.task, r.attempt) for r in said] == [  # type: ignore[attr-defined]
            ("INFO", "fetched 3 rows", run.id, "chatty", 1),
            ("WARNING", "slow upstream", run.id, "chatty", 1),
        ]
    else:
        assert said == []
    [attempt] = await store.reads.attempts_for_run(run.id)
    assert [line["message"] for line in attempt.logs] == ["fetched 3 rows", "slow upstream"]

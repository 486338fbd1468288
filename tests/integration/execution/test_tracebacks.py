"""A failed attempt's traceback (what `gateway show RUN_ID` prints) starts at the task author's own frame,
with the usual header, not at the gateway and asyncio frames that called the task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway import Context, task
from gateway.execution.executor import Executor, ExecutorOptions
from tests.support.clock import Clock
from tests.support.records import enqueue


def charge(amount: int) -> None:
    raise ValueError(f"card declined for {amount}")


@task(id="async-charge", retry={"max_attempts": 1})
async def async_charge(payload: Any, ctx: Context) -> None:
    charge(42)


@task(id="sync-charge", retry={"max_attempts": 1})
def sync_charge(payload: Any, ctx: Context) -> None:
    charge(42)


@pytest.mark.parametrize("own_loop", [False, True])
@pytest.mark.parametrize("failing", [async_charge, sync_charge], ids=["async", "sync"])
async def test_the_stored_traceback_starts_at_the_tasks_own_frame(
    open_store: Callable[..., Any], failing: Any, own_loop: bool
) -> None:
    store = await open_store()
    clock = Clock()
    executor = Executor(store.runs, {failing.id: failing}, ExecutorOptions(own_loop=own_loop), clock=clock)
    run = await enqueue(store, clock, failing)
    await executor.run_once()
    [attempt] = await store.reads.attempts_for_run(run.id)
    assert attempt.traceback is not None
    lines = attempt.traceback.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].startswith(f'  File "{__file__}", line ') and lines[1].endswith(
        f", in {failing.fn.__name__}"
    )
    assert lines[-1] == "ValueError: card declined for 42"
    assert "gateway/execution" not in attempt.traceback and "asyncio" not in attempt.traceback

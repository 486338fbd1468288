"""One attempt of one run: call the task (async on the tasks' loop, sync on the worker pool) within its
timeout, and decide how the attempt ends: output or error, the run's next status and, for a retry, when
(gateway/execution/retry.py). I/O: the task's own code.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import os
import sysconfig
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from gateway.errors import AbortRun, RetryAfter
from gateway.execution.context import Context, RunLog
from gateway.execution.retry import next_attempt_at, policy_from
from gateway.execution.taskloop import TaskLoop
from gateway.execution.tasks import Task
from gateway.model import (
    ABORTED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RETRYING,
    TIMED_OUT,
    AttemptEnd,
    Claim,
    Run,
)
from gateway.report import AttemptReport
from gateway.telemetry.traceparent import current_traceparent, trace_id_of

_encode = json.JSONEncoder(allow_nan=False).encode  # what a task returns must be JSON as stored: no NaN


class Attempts:
    """Runs attempts for the executor. ``scrub`` takes the configured secrets out of what a failure stores;
    async tasks run on ``loop`` when given (gateway serve), else on the caller's own loop."""

    def __init__(
        self,
        tasks: Mapping[str, Task],
        pool: ThreadPoolExecutor,
        *,
        clock: Callable[[], float],
        rand: Callable[[], float],
        scrub: Callable[[str], str],
        loop: TaskLoop | None = None,
    ) -> None:
        self.tasks, self.pool, self.clock, self.rand, self.scrub = tasks, pool, clock, rand, scrub
        self.loop = loop
        self._params: dict[str, int] = {}

    def interrupted(self, run: Run, ctx: Context) -> AttemptEnd:
        """The end of an attempt cut short by shutdown: the run is queued again without using a retry."""
        ctx.log.warning("interrupted by shutdown; the run is queued again")
        return AttemptEnd(
            run.id,
            ctx.attempt,
            self.clock(),
            INTERRUPTED,
            QUEUED,
            counts=False,
            available_at=self.clock(),
            error=error_of("Interrupted", "the gateway shut down before this attempt finished"),
            logs=ctx.log.lines(),
        )

    async def run(self, run: Run, ctx: Context) -> AttemptEnd:
        """Call the run's task within its timeout; how the attempt ended, and what that does to the run."""
        task = self.tasks.get(run.task_id)
        if task is None:
            message = f"no task with id {run.task_id!r} is loaded (was it renamed or removed from tasks/?)"
            return self._end(run, ctx, ABORTED, FAILED, error_of("UnknownTask", message))
        timeout = run.options.get("timeout", task.timeout)
        try:
            async with asyncio.timeout(timeout) as deadline:
                output = await self._call(task, run.input, ctx)
        except TimeoutError as exc:
            if deadline.expired():
                ctx.log.error("timed out after %s s", timeout)
                error = error_of("TimeoutError", f"the attempt ran past its timeout of {timeout} s")
                return self._failure(run, ctx, TIMED_OUT, error)
            return self._failure(run, ctx, FAILED, error_from(exc))
        except AbortRun as exc:
            return self._end(run, ctx, ABORTED, FAILED, error_from(exc))
        except RetryAfter as exc:
            return self._failure(run, ctx, FAILED, error_from(exc), retry_at=exc.when(self.clock()))
        except Exception as exc:
            return self._failure(run, ctx, FAILED, error_from(exc))
        try:
            stored = None if output is None else json.loads(_encode(output))
        except (TypeError, ValueError) as exc:
            message = f"task {task.id!r} returned a value that is not JSON-serialisable: {exc}"
            return self._failure(run, ctx, FAILED, error_of("TypeError", message))
        return self._end(run, ctx, COMPLETED, COMPLETED, None, output=stored)

    async def _call(self, task: Task, payload: Any, ctx: Context) -> Any:
        args = (payload, ctx) if self._arity(task) >= 2 else (payload,)
        if task.is_async:
            if self.loop is not None:
                return await self.loop.call(task.fn(*args), f"run {ctx.run_id} (task {task.id})")
            return await task.fn(*args)
        loop = asyncio.get_running_loop()
        # The copied context carries the attempt's span into the worker thread (ctx.span nests under it).
        context = contextvars.copy_context()
        return await loop.run_in_executor(self.pool, lambda: context.run(task.fn, *args))

    def _arity(self, task: Task) -> int:
        if task.id not in self._params:
            try:
                params = inspect.signature(task.fn).parameters.values()
                positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
                varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
                self._params[task.id] = 2 if varargs else len(positional)
            except (TypeError, ValueError):
                self._params[task.id] = 2
        return self._params[task.id]

    def _failure(
        self, run: Run, ctx: Context, outcome: str, error: dict[str, Any], retry_at: float | None = None
    ) -> AttemptEnd:
        now = self.clock()
        at = next_attempt_at(
            policy_from(run.options),
            attempts_used=run.attempts + 1,
            now=now,
            rand=self.rand(),
            retry_at=retry_at,
        )
        if at is None:
            final = TIMED_OUT if outcome == TIMED_OUT else FAILED
            return self._end(run, ctx, outcome, final, error)
        ctx.log.info("attempt %d failed; next attempt in %.1f s", ctx.attempt, at - now)
        return self._end(run, ctx, outcome, RETRYING, error, available_at=at)

    def _end(
        self,
        run: Run,
        ctx: Context,
        outcome: str,
        status: str,
        error: dict[str, Any] | None,
        *,
        output: Any = None,
        available_at: float | None = None,
    ) -> AttemptEnd:
        scrub = self.scrub
        if error is not None:  # a task may put a secret into its exception: keep it out of the record
            error = {k: scrub(v) if isinstance(v, str) else v for k, v in error.items()}
        return AttemptEnd(
            run.id,
            ctx.attempt,
            self.clock(),
            outcome,
            status,
            available_at=available_at,
            output=output,
            error=error,
            logs=tuple({**line, "message": scrub(str(line["message"]))} for line in ctx.log.lines()),
        )


def context_for(claim: Claim, clock: Callable[[], float], tracer: Any, *, echo: bool = False) -> Context:
    """What the task gets beside its payload; made inside the attempt's span, which it can extend. With
    ``echo``, what the task logs also goes to the process log (logger ``gateway.task``)."""
    run = claim.run
    said = partial(_echo, {"run_id": run.id, "task": run.task_id, "attempt": claim.attempt}) if echo else None
    return Context(
        run_id=run.id,
        event_id=run.event_id,
        task_id=run.task_id,
        source=claim.source,
        event_type=claim.event_type,
        attempt=claim.attempt,
        idempotency_key=run.idempotency_key or run.id,
        headers=claim.headers,
        log=RunLog(clock, echo=said),
        trace_id=trace_id_of(run.traceparent),
        traceparent=current_traceparent() or run.traceparent,
        span_factory=lambda name, attributes: tracer.start_as_current_span(name, attributes=dict(attributes)),
    )


_task_log = logging.getLogger("gateway.task")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _echo(fields: dict[str, Any], level: str, text: str) -> None:
    """One ctx.log line in the process log, with its run (secrets are scrubbed by the log's handler)."""
    _task_log.log(_LEVELS.get(level, logging.INFO), "%s", text, extra=fields)


def report_of(end: AttemptEnd, run: Run, started: float) -> AttemptReport:
    """What telemetry hears of an attempt that began at ``started`` (``time.perf_counter()``)."""
    retry_in = None if end.available_at is None else max(0.0, end.available_at - end.finished_at)
    return AttemptReport(
        run_id=run.id,
        event_id=run.event_id,
        task_id=run.task_id,
        queue=run.queue,
        attempt=end.attempt,
        outcome=end.outcome,
        status=end.run_status,
        seconds=time.perf_counter() - started,
        trace_id=trace_id_of(run.traceparent),
        error_type=None if end.error is None else str(end.error.get("type")),
        retry_in=retry_in if end.run_status == RETRYING else None,
    )


def error_of(kind: str, message: str) -> dict[str, Any]:
    return {"type": kind, "message": message, "traceback": None}


def error_from(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc), "traceback": _traceback(exc)[-20_000:]}


# Frames of the gateway and of the machinery between it and a task (asyncio, threads): not the user's code.
_GATEWAY = os.path.join(str(Path(__file__).resolve().parents[1]), "")
_STDLIB = os.path.join(sysconfig.get_paths()["stdlib"], "")
_INSTALLED = tuple(os.path.join(sysconfig.get_paths()[k], "") for k in ("purelib", "platlib"))


def _machinery(filename: str) -> bool:
    if filename.startswith(_GATEWAY):
        return True
    return filename.startswith(_STDLIB) and not filename.startswith(_INSTALLED)


def _traceback(exc: BaseException) -> str:
    """The traceback as the task's author wants it: from the first frame of their own code (with the usual
    "Traceback (most recent call last):" header), not from the gateway frames that called it. An error
    raised inside the gateway itself keeps every frame."""
    tb = exc.__traceback__
    while tb is not None and _machinery(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))

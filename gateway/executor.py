"""The local executor: claim queued runs, run their tasks with limits and timeouts, record every attempt.

I/O: the store, a thread pool for sync tasks, a heartbeat thread. ``run_once()`` steps it (tests);
``run(stop)`` runs it beside the HTTP server until ``stop`` is set, then drains with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import logging
import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gateway.context import Context, RunLog
from gateway.errors import AbortRun, RetryAfter, StoreError
from gateway.model import (
    COMPLETED,
    FAILED,
    FINAL_STATUSES,
    QUEUED,
    RETRYING,
    TIMED_OUT,
    AttemptEnd,
    AttemptReport,
    Claim,
    Run,
)
from gateway.retry import next_attempt_at, policy_from
from gateway.store import Store
from gateway.tasks import Task
from gateway.telemetry import Telemetry
from gateway.tracing import current_traceparent, trace_id_of

log = logging.getLogger("gateway.executor")


@dataclass(frozen=True, slots=True)
class ExecutorOptions:
    concurrency: int = 100  # runs executing at once, all tasks together
    threads: int = 8  # worker threads for sync tasks (their own pool: never the event loop)
    queues: Mapping[str, int] = field(default_factory=dict)  # per-queue limits from routes.yaml
    lease: float = 30.0  # a claimed run is someone's for this long unless its heartbeat renews it
    heartbeat: float = 10.0  # how often the heartbeat thread renews the leases of running runs
    drain_timeout: float = 30.0  # on shutdown, how long running attempts get before being interrupted
    max_crashes: int = 3  # crash recoveries before a run ends `crashed`
    poll: float = 5.0  # fallback wake-up, for runs written by another process (e.g. `gateway cancel`)


class Executor:
    def __init__(
        self,
        store: Store,
        tasks: Mapping[str, Task],
        options: ExecutorOptions | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.store = store
        self.tasks = tasks
        self.options = options or ExecutorOptions()
        self.clock = clock
        self.rand = rand
        self.telemetry = telemetry or Telemetry.off()
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._ids_lock = threading.Lock()
        self._ids: frozenset[str] = frozenset()  # what the heartbeat thread renews
        self._by_queue: Counter[str] = Counter()
        self._by_task: Counter[str] = Counter()
        self._pool = ThreadPoolExecutor(max_workers=self.options.threads, thread_name_prefix="gateway-task")
        self._params: dict[str, int] = {}
        self._reserved: list[Run] = []  # runs accepted during the claim in progress

    # -- waking -------------------------------------------------------------------------------------------

    def notify(self, runs: object = None) -> None:
        """Wake the executor: new runs were committed (the store's on_commit) or a slot came free."""
        self._wake.set()

    # -- limits -------------------------------------------------------------------------------------------

    def _accept(self, run: Run) -> bool:
        """Reserve a slot for ``run`` if the global, queue and task limits allow it."""
        if len(self._running) + len(self._reserved) >= self.options.concurrency:
            return False
        queue_limit = self.options.queues.get(run.queue)
        if queue_limit is not None and self._by_queue[run.queue] >= queue_limit:
            return False
        task_limit = run.options.get("concurrency")
        if task_limit is not None and self._by_task[run.task_id] >= task_limit:
            return False
        self._by_queue[run.queue] += 1
        self._by_task[run.task_id] += 1
        self._reserved.append(run)
        return True

    def _full(self) -> tuple[set[str], set[str]]:
        queues = {q for q, limit in self.options.queues.items() if self._by_queue[q] >= limit}
        tasks = {
            t.id
            for t in self.tasks.values()
            if t.concurrency is not None and self._by_task[t.id] >= t.concurrency
        }
        return queues, tasks

    def _release(self, run: Run) -> None:
        self._by_queue[run.queue] -= 1
        self._by_task[run.task_id] -= 1

    # -- claiming -----------------------------------------------------------------------------------------

    async def _fill(self) -> int:
        """Claim and start as many ready runs as the limits allow. Returns how many started."""
        started = 0
        while True:
            free = self.options.concurrency - len(self._running)
            if free <= 0:
                return started
            skip_queues, skip_tasks = self._full()
            self._reserved = []
            try:
                claims = await self.store.claim(
                    now=self.clock(),
                    limit=free,
                    lease=self.options.lease,
                    accept=self._accept,
                    skip_queues=skip_queues,
                    skip_tasks=skip_tasks,
                )
            except BaseException:
                self._give_back(set())
                raise
            self._give_back({c.run.id for c in claims})
            for claim in claims:
                self._running[claim.run.id] = asyncio.create_task(self._execute(claim), name=claim.run.id)
            self._publish_ids()
            started += len(claims)
            if len(claims) < free:
                return started

    def _give_back(self, claimed: set[str]) -> None:
        """Release the slots reserved during a claim for runs it did not return (e.g. its commit failed)."""
        reserved, self._reserved = self._reserved, []
        for run in reserved:
            if run.id not in claimed:
                self._release(run)

    def _publish_ids(self) -> None:
        with self._ids_lock:
            self._ids = frozenset(self._running)

    def busy(self) -> dict[str, int]:
        """Attempts executing now, by queue (for /metrics)."""
        return {queue: n for queue, n in self._by_queue.items() if n > 0}

    # -- running one attempt ------------------------------------------------------------------------------

    async def _execute(self, claim: Claim) -> None:
        run = claim.run
        started = time.perf_counter()
        try:
            with self.telemetry.tracing.attempt(run, claim.attempt) as span:
                ctx = self._context(claim)
                try:
                    end = await self._attempt(run, ctx)
                except asyncio.CancelledError:
                    # Shutdown after the drain deadline: requeue without using a retry (at-least-once).
                    ctx.log.warning("interrupted by shutdown; the run is queued again")
                    end = AttemptEnd(
                        run.id,
                        claim.attempt,
                        self.clock(),
                        "interrupted",
                        QUEUED,
                        counts=False,
                        available_at=self.clock(),
                        error=_error_of("Interrupted", "the gateway shut down before this attempt finished"),
                        logs=ctx.log.lines(),
                    )
                    self._report(span, run, end, time.perf_counter() - started)
                    with contextlib.suppress(Exception):
                        await self._finish(end)
                    raise
                self._report(span, run, end, time.perf_counter() - started)
            if await self._finish(end) and end.run_status in FINAL_STATUSES:
                self.telemetry.run_ended(run, end.run_status, end.finished_at, claim.attempt)
        finally:
            self._running.pop(run.id, None)
            self._release(run)
            self._publish_ids()
            self._wake.set()

    def _context(self, claim: Claim) -> Context:
        """What the task gets beside its payload; made inside the attempt's span, which it can extend."""
        run, tracer = claim.run, self.telemetry.tracing.tracer
        return Context(
            run_id=run.id,
            event_id=run.event_id,
            task_id=run.task_id,
            source=claim.source,
            event_type=claim.event_type,
            attempt=claim.attempt,
            idempotency_key=run.idempotency_key or run.id,
            headers=claim.headers,
            log=RunLog(self.clock),
            trace_id=trace_id_of(run.traceparent),
            traceparent=current_traceparent() or run.traceparent,
            span_factory=lambda name, attributes: tracer.start_as_current_span(
                name, attributes=dict(attributes)
            ),
        )

    def _report(self, span: Any, run: Run, end: AttemptEnd, seconds: float) -> None:
        retry_in = None if end.available_at is None else max(0.0, end.available_at - end.finished_at)
        report = AttemptReport(
            run_id=run.id,
            event_id=run.event_id,
            task_id=run.task_id,
            queue=run.queue,
            attempt=end.attempt,
            outcome=end.outcome,
            status=end.run_status,
            seconds=seconds,
            trace_id=trace_id_of(run.traceparent),
            error_type=None if end.error is None else str(end.error.get("type")),
            retry_in=retry_in if end.run_status == RETRYING else None,
        )
        self.telemetry.attempt_ended(span, report, end.error)

    async def _finish(self, end: AttemptEnd) -> bool:
        try:
            await self.store.finish_attempt(end)
        except Exception:
            # The run stays `executing` on disk; its lease expires and crash recovery runs it again.
            log.exception("could not record the end of run %s attempt %d", end.run_id, end.attempt)
            return False
        return True

    async def _attempt(self, run: Run, ctx: Context) -> AttemptEnd:
        task = self.tasks.get(run.task_id)
        if task is None:
            message = f"no task with id {run.task_id!r} is loaded (was it renamed or removed from tasks/?)"
            return self._end(run, ctx, "aborted", FAILED, _error_of("UnknownTask", message))
        timeout = run.options.get("timeout", task.timeout)
        try:
            async with asyncio.timeout(timeout) as deadline:
                output = await self._call(task, run.input, ctx)
        except TimeoutError as exc:
            if deadline.expired():
                ctx.log.error("timed out after %s s", timeout)
                error = _error_of("TimeoutError", f"the attempt ran past its timeout of {timeout} s")
                return self._failure(run, ctx, "timed_out", error)
            return self._failure(run, ctx, "failed", _error_from(exc))
        except AbortRun as exc:
            return self._end(run, ctx, "aborted", FAILED, _error_from(exc))
        except RetryAfter as exc:
            return self._failure(run, ctx, "failed", _error_from(exc), retry_at=exc.when(self.clock()))
        except Exception as exc:
            return self._failure(run, ctx, "failed", _error_from(exc))
        try:
            stored = json.loads(json.dumps(output, allow_nan=False))
        except (TypeError, ValueError) as exc:
            message = f"task {task.id!r} returned a value that is not JSON-serialisable: {exc}"
            return self._failure(run, ctx, "failed", _error_of("TypeError", message))
        return self._end(run, ctx, "completed", COMPLETED, None, output=stored)

    async def _call(self, task: Task, payload: Any, ctx: Context) -> Any:
        args = (payload, ctx) if self._arity(task) >= 2 else (payload,)
        if task.is_async:
            return await task.fn(*args)
        loop = asyncio.get_running_loop()
        # The copied context carries the attempt's span into the worker thread (ctx.span nests under it).
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._pool, lambda: context.run(task.fn, *args))

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
            final = TIMED_OUT if outcome == "timed_out" else FAILED
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
        scrub = self.telemetry.scrub
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

    # -- stepping and running -----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Start every run that is ready now (within the limits) and wait for those attempts to end."""
        started = await self._fill()
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)
        return started

    async def recover(self, *, only_expired: bool) -> None:
        recovered = await self.store.recover(
            now=self.clock(),
            max_crashes=self.options.max_crashes,
            only_expired=only_expired,
            keep=frozenset(self._running),
        )
        for run in recovered:
            if run.status in FINAL_STATUSES:
                self.telemetry.run_ended(run, run.status, self.clock(), run.attempts)
            log.warning(
                "run %s (task %s) was executing when the gateway stopped: now %s after %d crash(es)",
                run.id,
                run.task_id,
                run.status,
                run.crashes,
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then drain: wait up to drain_timeout, interrupt and requeue the rest."""
        await self.recover(only_expired=False)  # the caller holds the database lock: nothing else runs these
        beat_stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(beat_stop,), name="gateway-heartbeat", daemon=True
        )
        beat.start()
        next_sweep = self.clock() + self.options.lease
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self._fill()
                    if self.clock() >= next_sweep:
                        await self.recover(only_expired=True)
                        next_sweep = self.clock() + self.options.lease
                    idle = await self._idle_for()
                except StoreError as exc:
                    # The disk is full or failing: ingest answers 503 meanwhile; try again shortly.
                    log.error(
                        "executor paused: the store failed (%s); retrying in %.0f s", exc, self.options.poll
                    )
                    idle = self.options.poll
                await wait_first(self._wake.wait(), stop.wait(), timeout=idle)
            await self._drain()
        finally:
            for task in self._running.values():  # only non-empty when run() itself was cancelled
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            beat_stop.set()
            beat.join(timeout=5)
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _idle_for(self) -> float:
        now = self.clock()
        nxt = await self.store.next_available_at(after=now)
        wait = self.options.poll if nxt is None else min(self.options.poll, nxt - now)
        return max(0.0, wait)

    async def _drain(self) -> None:
        pending = list(self._running.values())
        if not pending:
            return
        log.info("waiting up to %.0f s for %d running attempt(s)", self.options.drain_timeout, len(pending))
        _, still = await asyncio.wait(pending, timeout=self.options.drain_timeout)
        for task in still:
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)
            log.warning("interrupted %d attempt(s) at shutdown; their runs are queued again", len(still))

    def _heartbeat(self, stop: threading.Event) -> None:
        # A thread, not a coroutine: leases stay alive even while task code blocks the event loop.
        while not stop.wait(self.options.heartbeat):
            with self._ids_lock:
                ids = self._ids
            if ids:
                self.store.heartbeat_blocking(ids, self.clock() + self.options.lease)


async def wait_first(*waits: Any, timeout: float) -> None:
    """Wait until the first of ``waits`` is done, or ``timeout`` seconds; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _error_of(kind: str, message: str) -> dict[str, Any]:
    return {"type": kind, "message": message, "traceback": None}


def _error_from(exc: BaseException) -> dict[str, Any]:
    tb = "".join(traceback.format_exception(exc))
    return {"type": type(exc).__name__, "message": str(exc), "traceback": tb[-20_000:]}

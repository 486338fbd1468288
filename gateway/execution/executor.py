"""The local executor: claim queued runs within the limits, run each attempt (attempt.py), record it.

I/O: the store (through interface.RunQueue only), a thread pool for sync tasks, the tasks' own loop
(taskloop.py), a heartbeat thread (heartbeat.py). ``run_once()`` steps it (tests); ``run(stop)`` runs it
until ``stop`` is set, then drains with a deadline. The store calls back only through the Claimant
methods below (accept, ride, rode, ride_failed, committed), which the executor registers once, at creation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gateway.aio import wait_first
from gateway.errors import StoreError, StoreUnavailable
from gateway.execution import liveness
from gateway.execution.attempt import Attempts, context_for, report_of
from gateway.execution.context import RunLog
from gateway.execution.heartbeat import Heartbeats
from gateway.execution.taskloop import TaskLoop
from gateway.execution.tasks import Task
from gateway.model import (
    FINAL_STATUSES,
    SERVE,
    AttemptEnd,
    Claim,
    Run,
    TaskWorker,
    new_id,
)
from gateway.store.interface import ClaimRequest, RunQueue
from gateway.telemetry.hub import Telemetry

log = logging.getLogger("gateway.executor")


@dataclass(frozen=True, slots=True)
class ExecutorOptions:
    concurrency: int = 100  # runs executing at once, all tasks together
    threads: int = 8  # worker threads for sync tasks (their own pool: never the event loop)
    queues: Mapping[str, int] = field(default_factory=dict)  # per-queue limits from routes.yaml
    lease: float = 30.0  # a claimed run is someone's for this long unless its heartbeat renews it
    heartbeat: float = 10.0  # how often the heartbeat thread renews the leases of running runs
    log_flush: float = 1.0  # how often it saves what running attempts logged (one transaction, when changed)
    drain_timeout: float = 30.0  # on shutdown, how long running attempts get before being interrupted
    max_crashes: int = 3  # crash recoveries before a run ends `crashed`
    poll: float = 5.0  # fallback wake-up, for runs written by another process (e.g. `gateway cancel`)
    # Async tasks on their own event loop thread (gateway serve): a task blocking in sync code cannot stall
    # ingest. Off, they share the caller's loop (tests that hand tasks the loop's own asyncio objects).
    own_loop: bool = False
    task_logs: bool = False  # also write what tasks log (ctx.log) to the process log, logger gateway.task
    # Who it is in the workers table: gateway serve's embedded executor or a gateway worker; None: a new id.
    worker_id: str | None = None
    kind: str = SERVE
    only_queues: frozenset[str] | None = None  # claim runs of these queues only (None: every queue)
    version: str = ""


class Executor:
    """Runs claimed runs within the limits; the store's Claimant (gateway/store/interface.py)."""

    def __init__(
        self,
        store: RunQueue,
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
        self._logs: dict[str, tuple[int, RunLog]] = {}  # run id -> (attempt, its log): what it saves
        self._by_queue: Counter[str] = Counter()
        self._by_task: Counter[str] = Counter()
        self._pool = ThreadPoolExecutor(max_workers=self.options.threads, thread_name_prefix="gateway-task")
        self._loop = TaskLoop() if self.options.own_loop else None
        self._attempts = Attempts(
            tasks, self._pool, clock=clock, rand=rand, scrub=self.telemetry.scrub, loop=self._loop
        )
        self._reserved: list[Run] = []  # runs accepted during the claim in progress
        self._claiming = False  # a claim is in flight: _fill's own, or one riding a store batch
        self._riding: asyncio.Future[None] | None = None  # done once the riding claim's runs are started
        self._ride_limit = 0  # how many runs the riding claim asked for
        self._wake_after_ride = False  # another process committed runs while a claim rode
        self._serving = False  # run() is running: only then do claims ride the store's batches
        self.worker_id = self.options.worker_id or new_id("wrk", clock())
        self._task_limits = {t.id: t.concurrency for t in tasks.values() if t.concurrency is not None}
        store.attach(self)

    # -- what the store calls (interface.Claimant) --------------------------------------------------------

    def committed(self, runs: Sequence[Run]) -> None:
        """New runs were committed (none named: by another process): wake up to claim them. Not while a claim
        rides the batch that committed them: that claim has seen them already; but another process's runs may
        have come after it, so their wake-up waits for the ride to end."""
        if self._riding is None:
            self._wake.set()
        elif not runs:
            self._wake_after_ride = True

    # -- limits -------------------------------------------------------------------------------------------

    def accept(self, run: Run) -> bool:
        """Reserve one of this process's slots for ``run`` (asked by the store for each candidate of a claim
        this executor made, once the store found the run within its queue and task limits: those count the
        runs of every process, so the store holds them)."""
        if len(self._running) + len(self._reserved) >= self.options.concurrency:
            return False
        self._by_queue[run.queue] += 1
        self._by_task[run.task_id] += 1
        self._reserved.append(run)
        return True

    def _release(self, run: Run) -> None:
        self._by_queue[run.queue] -= 1
        self._by_task[run.task_id] -= 1

    # -- claiming -----------------------------------------------------------------------------------------

    async def _fill(self) -> int:
        """Claim and start as many ready runs as the limits allow. Returns how many started."""
        started = 0
        while True:
            free = self.options.concurrency - len(self._running)
            if free <= 0 or self._claiming:  # a riding claim wakes us when it has started its runs
                return started
            self._claiming = True
            try:
                claims = await self.store.claim(self._claim_request(free))
            except BaseException:
                self._give_back(set())
                raise
            finally:
                self._claiming = False
            self._start(claims)
            started += len(claims)
            if len(claims) < free:
                return started

    def ride(self) -> ClaimRequest | None:
        """A claim for the store to make in a batch that creates runs: the runs start once that batch commits,
        with no second transaction. None unless :meth:`run` is serving, while a claim is in flight or when no
        slot is free (then :meth:`committed` wakes :meth:`run`, which claims them itself)."""
        free = self.options.concurrency - len(self._running)
        if not self._serving or self._claiming or free <= 0:
            return None
        request = self._claim_request(free)
        self._claiming, self._riding = True, asyncio.get_running_loop().create_future()
        self._ride_limit = free
        return request

    def rode(self, claims: Sequence[Claim]) -> None:
        """The riding claim committed: start its runs."""
        limit = self._ride_ended()
        self._start(claims)
        if len(claims) == limit:
            self._wake.set()  # it took as many as it could: more may be ready

    def ride_failed(self) -> None:
        """The batch the claim rode failed: nothing was claimed; run() claims again (and meets the error)."""
        self._ride_ended()
        self._give_back(set())
        self._wake.set()

    def _ride_ended(self) -> int:
        """Close the ride; returns how many runs it asked for."""
        riding, limit = self._riding, self._ride_limit
        self._claiming, self._riding = False, None
        if self._wake_after_ride:
            self._wake_after_ride = False
            self._wake.set()
        if riding is not None and not riding.done():
            riding.set_result(None)
        return limit

    def _claim_request(self, free: int) -> ClaimRequest:
        """A claim of up to ``free`` runs of the tasks this executor has, within the limits; starts a new
        reservation list for the store's accept() calls."""
        self._reserved = []
        return ClaimRequest(
            self.clock(),
            free,
            self.options.lease,
            worker=self.worker_id,
            tasks=frozenset(self.tasks),
            queues=self.options.only_queues,
            queue_limits=self.options.queues,
            task_limits=self._task_limits,
        )

    def _start(self, claims: Sequence[Claim]) -> None:
        self._give_back({c.run.id for c in claims})
        for claim in claims:
            self._running[claim.run.id] = asyncio.create_task(self._execute(claim), name=claim.run.id)
        self._publish_ids()

    def _give_back(self, claimed: set[str]) -> None:
        """Release the slots reserved during a claim for runs it did not return (e.g. its commit failed)."""
        reserved, self._reserved = self._reserved, []
        for run in reserved:
            if run.id not in claimed:
                self._release(run)

    def _publish_ids(self) -> None:
        with self._ids_lock:
            self._ids = frozenset(self._running)

    @property
    def idle(self) -> bool:
        """Nothing running, no claim in flight and nothing to wake for."""
        return not self._running and not self._claiming and not self._wake.is_set()

    def busy(self) -> dict[str, int]:
        """Attempts executing now, by queue (for /metrics)."""
        return {queue: n for queue, n in self._by_queue.items() if n > 0}

    # -- running one attempt ------------------------------------------------------------------------------

    async def _execute(self, claim: Claim) -> None:
        run = claim.run
        started = time.perf_counter()
        try:
            with self.telemetry.tracing.attempt(run, claim.attempt) as span:
                ctx = context_for(
                    claim, self.clock, self.telemetry.tracing.tracer, echo=self.options.task_logs
                )
                with self._ids_lock:
                    self._logs[run.id] = (claim.attempt, ctx.log)
                try:
                    end = await self._attempts.run(run, ctx)
                except asyncio.CancelledError:
                    # Shutdown after the drain deadline: requeue without using a retry (at-least-once).
                    end = self._attempts.interrupted(run, ctx)
                    self.telemetry.attempt_ended(span, report_of(end, run, started), end.error)
                    with contextlib.suppress(Exception):
                        await self._finish(end)
                    raise
                self.telemetry.attempt_ended(span, report_of(end, run, started), end.error)
            if await self._finish(end) and end.run_status in FINAL_STATUSES:
                self.telemetry.run_ended(run, end.run_status, end.finished_at, claim.attempt)
        finally:
            with self._ids_lock:
                self._logs.pop(run.id, None)
            self._running.pop(run.id, None)
            self._release(run)
            self._publish_ids()
            self._wake.set()

    async def _finish(self, end: AttemptEnd) -> bool:
        """Record how the attempt ended. While the store cannot commit (disk full, an I/O error) the end is
        kept and written again, backing off to ``poll`` seconds, for as long as it takes: the run stays in
        this process's slots, its lease renewed, so a store fault never runs a finished task again. Only a
        shutdown (cancellation) leaves it `executing` on disk, for crash recovery at the next start."""
        delay, tries = 0.1, 0
        while True:
            try:
                await self.store.finish_attempt(end)
                return True
            except StoreUnavailable as exc:
                tries += 1
                if tries & (tries - 1) == 0:  # the 1st, 2nd, 4th, 8th... refusal: a long fault logs little
                    log.warning(
                        "could not record the end of run %s attempt %d (%s); trying again in %.1f s",
                        *(end.run_id, end.attempt, exc, delay),
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.poll)
            except Exception:
                log.exception("could not record the end of run %s attempt %d", end.run_id, end.attempt)
                return False

    # -- stepping and running -----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Start every run that is ready now (within the limits) and wait for those attempts to end."""
        started = await self._fill()
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)
        return started

    async def recover(self, *, only_expired: bool = True, dead: Collection[str] | None = None) -> None:
        """Requeue the runs of processes that died: those whose lease expired, and those held by a worker of
        this host whose process is gone (``dead``; None: found from the workers table). Any process may do
        this at any time: a live worker's runs are never taken, their leases are renewed."""
        if dead is None:
            live_since = self.clock() - self.options.lease
            workers = await self.store.workers(live_since=live_since)
            dead = liveness.gone(workers, liveness.host(), besides=self.worker_id)
        recovered = await self.store.recover(
            now=self.clock(),
            max_crashes=self.options.max_crashes,
            only_expired=only_expired,
            keep=frozenset(self._running),
            dead=dead,
        )
        for run in recovered:
            if run.status in FINAL_STATUSES:
                self.telemetry.run_ended(run, run.status, self.clock(), run.attempts)
            held = f" by worker {run.worker_id}" if run.worker_id else ""
            log.warning(
                "run %s (task %s) was executing%s when its process stopped: now %s after %d crash(es)",
                *(run.id, run.task_id, held, run.status, run.crashes),
            )

    def describe(self) -> TaskWorker:
        """This executor as the workers table holds it."""
        o = self.options
        return liveness.this_worker(
            self.worker_id, o.kind, self.tasks, o.only_queues, o.concurrency, o.version, self.clock()
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Register, recover what dead processes left, run until ``stop`` is set, then drain: wait up to
        drain_timeout, interrupt and requeue the rest, and record the clean stop."""
        await self.store.register(self.describe())
        await self.recover()
        beat_stop = threading.Event()
        beats = Heartbeats(self.store, self.options, self.worker_id, self.clock, self._snapshot)
        beat = threading.Thread(target=beats.run, args=(beat_stop,), name="gateway-heartbeat", daemon=True)
        beat.start()
        # Swept every heartbeat: a dead worker of this host is found within one, not after its lease.
        next_sweep = self.clock() + self.options.heartbeat
        self._serving = True  # from here, claims ride the store's batches that create runs
        paused: str | None = None  # why the store failed, said once: a fault lasting hours logs one line
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self._fill()
                    if self.clock() >= next_sweep:
                        await self.recover(only_expired=True)
                        next_sweep = self.clock() + self.options.heartbeat
                    idle = await self._idle_for()
                    if paused is not None:
                        log.info("executor resumed: the store takes writes again")
                        paused = None
                except StoreError as exc:
                    # The disk is full or failing: ingest answers 503 meanwhile; try again shortly.
                    if str(exc) != paused:
                        log.error(
                            "executor paused: the store failed (%s); retrying every %.0f s",
                            *(exc, self.options.poll),
                        )
                        paused = str(exc)
                    idle = self.options.poll
                await wait_first(self._wake.wait(), stop.wait(), timeout=idle)
            self._serving = False
            if self._riding is not None:  # its runs are executing on disk: start them, then drain them
                await asyncio.wait([self._riding])
            await self._drain()
        finally:
            self._serving = False
            for task in self._running.values():  # only non-empty when run() itself was cancelled
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            beat_stop.set()
            beat.join(timeout=5)
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self._loop is not None:
                await asyncio.to_thread(self._loop.close)
            if not self._running:
                try:
                    await self.store.unregister(self.worker_id, now=self.clock())
                except StoreError as exc:  # its heartbeat stops: it shows lost, and holds nothing
                    log.warning("could not record that worker %s stopped: %s", self.worker_id, exc)

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

    def _snapshot(self) -> tuple[frozenset[str], list[tuple[str, tuple[int, RunLog]]]]:
        """What the heartbeat thread renews and saves: the running runs, and each one's attempt and log."""
        with self._ids_lock:
            return self._ids, list(self._logs.items())

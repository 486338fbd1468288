"""What every store implements — SQLite's (gateway/store/sqlite/) and PostgreSQL's — as Protocols over the
frozen values of gateway.model. No SQL and no driver types here: a store is chosen by its address, and
everything above this layer sees only these. Pure: declarations and one value.

    Store                      intake: record a delivery's event and runs in one durable write
    ├── runs: RunQueue         the executor's side: claim, finish, renew, recover, cancel
    │     ↑ Claimant           the one way a store calls up into the executor (attach() registers it)
    ├── jobs: JobQueue         replays and reruns, bulk jobs, retention prunes
    └── reads: Reads           what people look at: one record, keyset-paged listings, counts

Every write returns only once it is durable; a write that could not be committed raises StoreUnavailable
(nothing of it was kept), one whose own data the database refused raises StoreError.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.model import (
    Attempt,
    AttemptEnd,
    Claim,
    Event,
    EventFilter,
    Job,
    Pruned,
    Recorded,
    Rejection,
    RejectionKeep,
    Run,
    RunFilter,
    TaskWorker,
)
from gateway.report import DeliveryCount, QueueDepth, TaskDurations

Cursor = tuple[float, str]  # (time, id) of the last item of the previous page
ANY_EVENT = EventFilter()
COUNT_PARTS = ("events", "runs", "rejections", "queues")  # what Reads.counts answers
ANY_RUN = RunFilter()


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """Up to ``limit`` ready runs for ``worker``, leased for ``lease`` seconds from ``now``.

    Only runs of ``tasks`` and ``queues`` (None: any), none from a queue or task named in ``skip_queues`` /
    ``skip_tasks``. The store holds the limits across every process sharing it: a queue in
    ``queue_limits``, or a task in ``task_limits`` (a run's own ``options["concurrency"]`` wins), never has
    more runs executing at once, counted in the claim's own transaction."""

    now: float
    limit: int
    lease: float
    skip_queues: frozenset[str] = frozenset()
    skip_tasks: frozenset[str] = frozenset()
    worker: str | None = None
    tasks: frozenset[str] | None = None
    queues: frozenset[str] | None = None
    queue_limits: Mapping[str, int] = field(default_factory=dict)
    task_limits: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"limit must be at least 1, not {self.limit}")
        if not 0 < self.lease < math.inf:
            raise ValueError(f"lease must be positive, not {self.lease}")


@dataclass(frozen=True, slots=True)
class AttemptLog:
    """What a running attempt has logged so far, saved while it runs so that a crash does not lose it."""

    run_id: str
    attempt: int
    lines: tuple[Mapping[str, Any], ...]


class Claimant(Protocol):
    """The executor as the store sees it: every call a store makes up into execution. It is registered once,
    with :meth:`RunQueue.attach`. Each method is called on the store's event loop, between the writer's awaits
    (accept inside a claim's transaction, ride before one, committed right after one, rode and ride_failed
    once its answers are out): none may await or block, and what they raise is logged, never passed on."""

    def accept(self, run: Run) -> bool:
        """Asked for each candidate of a claim, in claim order: True reserves a slot for ``run`` (it is then
        claimed in this transaction); False leaves it queued."""

    def ride(self) -> ClaimRequest | None:
        """Asked when a batch creates runs: a claim to make in that same transaction, so those runs start
        after the one commit that recorded them. None to pass (no free slot, a claim already in flight)."""

    def rode(self, claims: Sequence[Claim]) -> None:
        """The riding claim committed: these runs are this executor's to start now."""

    def ride_failed(self) -> None:
        """The batch the claim rode could not commit: nothing was claimed, release what accept() reserved."""

    def committed(self, runs: Sequence[Run]) -> None:
        """A transaction put these new runs on disk (a wake-up: they may be ready); ``runs`` is empty when
        another process committed them."""


class RunQueue(Protocol):
    """Runs from the executor's side. Claims never return a run twice: only queued or retrying runs are
    candidates, and a run behind an earlier unfinished run of its (task, concurrency key) waits its turn."""

    def attach(self, claimant: Claimant) -> None:
        """Register the executor that accepts claims, rides batches and hears of new runs."""

    async def claim(self, request: ClaimRequest) -> list[Claim]:
        """Mark the runs the claimant accepts executing, each with a new attempt, in claim order."""

    async def finish_attempt(self, end: AttemptEnd) -> None:
        """Record how an attempt ended and move its run on, unless the run stopped executing it meanwhile."""

    async def recover(
        self,
        *,
        now: float,
        max_crashes: int = 3,
        only_expired: bool = True,
        keep: Collection[str] = (),
        dead: Collection[str] = (),
    ) -> list[Run]:
        """Requeue executing runs whose process died (lease expired, or held by a worker in ``dead``, or
        every one not in ``keep`` when not ``only_expired``), or end them crashed after ``max_crashes``."""

    def clock(self) -> float:
        """The store's clock, in seconds since the epoch: leases are set and judged by it, never by each
        process's own (processes on several machines share one store)."""

    async def register(self, worker: TaskWorker) -> None:
        """Record a process that runs tasks as it starts (``worker.started_at`` is its first heartbeat)."""

    async def unregister(self, worker_id: str, *, now: float) -> None:
        """Record a clean stop: the worker holds no run any more."""

    async def workers(self, *, live_since: float) -> list[TaskWorker]:
        """Every registered worker, newest first, with its running count; lost if silent since
        ``live_since``."""

    async def cancel(self, run_id: str, *, now: float) -> Run | None:
        """Cancel a queued or retrying run; None if it is in another status. Raises NotFound."""

    def heartbeat_blocking(
        self, run_ids: Collection[str], lease_until: float, *, worker: str | None = None, now: float = 0.0
    ) -> int:
        """Extend the leases ``worker`` holds on these executing runs, and note its heartbeat at ``now``, in
        one transaction; call from a plain thread. How many leases; never raises: 0 on error."""

    def keep_logs_blocking(self, logs: Sequence[AttemptLog]) -> int:
        """Save what running attempts have logged so far, in one transaction, unless an attempt has ended
        meanwhile (its end holds the whole log); how many were saved. From a plain thread; never raises."""

    async def next_available_at(self, *, after: float) -> float | None:
        """When the next waiting run becomes ready, if one becomes ready after ``after``."""


class JobQueue(Protocol):
    """Replays, reruns, bulk jobs (each chunk committed with the job's progress) and retention prunes."""

    async def add(self, events: Sequence[Event], runs: Sequence[Run]) -> None:
        """Store new events and runs in one durable transaction, with no dedupe (replays, reruns)."""

    async def create_job(self, job: Job, *, owner: str | None, lease_until: float | None) -> None:
        """Store a new running job, held by ``owner`` until ``lease_until`` (None: for anyone to take)."""

    async def take_job(
        self,
        *,
        owner: str,
        now: float,
        lease: float,
        job_id: str | None = None,
        from_dead: str | None = None,
    ) -> Job | None:
        """Hold a running job nobody holds (the oldest, or ``job_id``) until now + lease; None if none.
        ``from_dead`` takes ``job_id`` from that holder even within its lease (its process is gone)."""

    async def write_chunk(
        self,
        job: Job,
        owner: str,
        events: Sequence[Event],
        runs: Sequence[Run],
        *,
        items: int,
        cursor: Cursor,
        finished: bool,
        now: float,
        lease: float,
    ) -> None:
        """Commit a chunk's records with the job's progress; raises Invalid, writing nothing, if ``owner``
        no longer holds the job (it was canceled, or its lease lapsed and another process took it)."""

    async def release_job(self, job_id: str, *, owner: str, now: float) -> bool:
        """Let go of a job without finishing it (shutdown): anyone may take it at once."""

    async def end_job(
        self, job_id: str, *, status: str, now: float, error: str | None = None, owner: str | None = None
    ) -> bool:
        """Cancel (any caller) or fail (its owner) a running job; False if it was not running."""

    async def prune(
        self, default: float | None, per_source: Mapping[str, float | None], *, limit: int
    ) -> Pruned:
        """Remove up to ``limit`` events received before their source's cutoff, with their runs and attempts,
        and old rejections and finished jobs, in one transaction. Events with a run still to finish stay."""

    async def prunable(self, default: float | None, per_source: Mapping[str, float | None]) -> Pruned:
        """What :meth:`prune` would remove, all batches together (for a dry run)."""


class Reads(Protocol):
    """What people look at. Pages are newest first and take a ``before`` cursor; bulk jobs walk oldest first
    with ``after``: a page never repeats or skips an item, however much is written meanwhile."""

    async def get_event(self, event_id: str) -> Event | None: ...

    async def events_page(
        self, f: EventFilter = ANY_EVENT, *, before: Cursor | None = None, limit: int = 50
    ) -> list[Event]: ...

    async def events_after(
        self, f: EventFilter, *, after: Cursor | None, upto: float, limit: int
    ) -> list[Event]: ...

    async def count_events(self, f: EventFilter = ANY_EVENT, *, upto: float = math.inf) -> int: ...

    async def replays_of(self, event_id: str) -> list[tuple[str, float, str]]: ...

    async def get_run(self, run_id: str) -> Run | None: ...

    async def runs_for_event(self, event_id: str) -> list[Run]: ...

    async def runs_for_events(self, event_ids: Sequence[str]) -> dict[str, list[Run]]: ...

    async def runs_page(
        self, f: RunFilter = ANY_RUN, *, before: Cursor | None = None, limit: int = 50
    ) -> list[Run]: ...

    async def runs_after(
        self, f: RunFilter, *, after: Cursor | None, upto: float, limit: int
    ) -> list[Run]: ...

    async def count_runs(self, f: RunFilter = ANY_RUN, *, upto: float = math.inf) -> int: ...

    async def reruns_of(self, run_id: str) -> list[tuple[str, float, str]]: ...

    async def attempts_for_run(self, run_id: str) -> list[Attempt]: ...

    async def list_rejections(
        self,
        *,
        source: str | None = None,
        reason: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Rejection]:
        """Newest first; without their kept requests (``Rejection.kept`` says how large each is)."""

    async def get_rejection(self, rejection_id: int) -> Rejection | None:
        """One rejection with its kept request (``Rejection.request``), if it still has one."""

    async def kept_rejections(
        self,
        *,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[Rejection]:
        """Rejections that still hold their request, with it, oldest first after rejection id ``after``."""

    async def get_job(self, job_id: str) -> Job | None: ...

    async def list_jobs(
        self, *, status: str | None = None, before: Cursor | None = None, limit: int = 50
    ) -> list[Job]: ...

    async def queue_depths(self) -> tuple[QueueDepth, ...]: ...

    async def workers(self, *, live_since: float) -> list[TaskWorker]:
        """Every registered worker, newest first (see RunQueue.workers)."""

    async def waiting_by_task(self) -> list[tuple[str, str, int, float]]:
        """(task id, queue, runs waiting to start, oldest created_at) of every task with queued runs."""

    async def counts(
        self, *, since: float | None = None, parts: Collection[str] = COUNT_PARTS
    ) -> dict[str, Any]:
        """Events, runs and rejections counted since ``since``, and the queues' depths: only ``parts``."""

    async def runs_by_status(self, *, since: float, recent: float) -> dict[str, tuple[int, int]]:
        """Per status, the runs created since ``since`` and, of those, since ``recent`` (later)."""

    async def deliveries_per_minute(self, *, since: float, until: float) -> list[DeliveryCount]:
        """Deliveries received from ``since`` to ``until`` (both included) by minute, source and outcome:
        original events (not replays, not ``@api`` triggers) routed or unrouted, and rejections; oldest
        minute first."""

    async def task_stats(self, *, since: float, per_task: int = 1000) -> list[TaskDurations]:
        """Per task with runs created since ``since``: those runs by status, and the durations of the (at
        most ``per_task``) most recently finished of them (completed, failed, timed out or crashed)."""


class Store(Protocol):
    """A durable store: the intake's writes here, the rest through its parts."""

    @property
    def runs(self) -> RunQueue: ...

    @property
    def jobs(self) -> JobQueue: ...

    @property
    def reads(self) -> Reads: ...

    async def record(
        self,
        event: Event,
        runs: Sequence[Run],
        *,
        dedupe_window: float | None = None,
        recovers: int | None = None,
    ) -> Recorded:
        """Store ``event`` and its ``runs`` in one durable transaction, unless its dedupe key is known (then
        the original's id, ``duplicate=True``). Raises StoreUnavailable if it could not be committed.

        ``dedupe_window``: seconds a key holds (None: as long as the event that has it is kept). A key held by
        an event received more than that before ``event`` is given to ``event``, in the same transaction;
        the older event still shows it as its ``dedupe_key``.

        ``recovers``: the id of the rejection this event is the recovery of. In the same transaction that
        rejection is marked recovered (as this event, or as the duplicate's original) and its kept request is
        freed; one recovered already stores nothing (``duplicate=True``, the event it became)."""

    async def record_rejection(self, rejection: Rejection, keep: RejectionKeep | None = None) -> None:
        """Store a refused request, and its ``request`` when given, within its source's ``keep``: past it,
        the source's oldest kept requests are dropped first, at most ``keep.turnover`` bytes of them an hour;
        when that is spent the newest are not kept. Every row stays, saying why it holds no request."""

    async def probe(self) -> None:
        """Prove the store still takes durable writes (for /readyz); raises StoreUnavailable."""

    async def close(self) -> None:
        """Refuse new writes, commit the queued ones, then close every connection."""

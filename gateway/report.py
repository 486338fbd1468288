"""What telemetry hears: how a request to a hook path ended, how an attempt ended, and the gauges /metrics
reads at scrape time (gateway/telemetry/metrics.py, gateway/telemetry/logs.py, gateway/telemetry/tracing.py);
and the summaries a dashboard reads (deliveries per minute, tasks' durations, acks against their budget).
Pure: frozen values only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# How a request to a hook path ended (Delivery.outcome).
DELIVERY_OUTCOMES = (
    "accepted",  # 202: stored with its runs
    "duplicate",  # 200: its dedupe key was known; nothing new stored
    "handshake",  # a provider's URL check (Slack url_verification, Zoom validation) answered
    "rejected",  # 401: failed verification (reason says why) or a replayed one-time token
    "too_large",  # 413
    "key_unavailable",  # 503: the provider's public key could not be fetched
    "store_unavailable",  # 503: the store could not commit
    "overloaded",  # 503: the bodies held at once reached the body budget
    "unknown_source",  # 404: no source at that path
    "method_not_allowed",  # 405
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened to one request on a hook path: for its span, its metrics and its log line."""

    status: int  # the HTTP status answered
    outcome: str  # one of DELIVERY_OUTCOMES
    source: str | None = None  # None for unknown_source
    reason: str | None = None  # why it was rejected (missing_signature, stale_timestamp, …)
    event_id: str | None = None
    event_type: str | None = None
    runs: int = 0  # runs created
    verification: str | None = None  # Verdict.label when it verified
    budget: float | None = None  # the sender's delivery timeout in seconds, when known


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """How one attempt ended: for its span, its metrics and its log line."""

    run_id: str
    event_id: str
    task_id: str
    queue: str
    attempt: int
    outcome: str  # completed | failed | timed_out | aborted | interrupted
    status: str  # the run's next status
    seconds: float  # how long the attempt ran
    trace_id: str | None = None
    error_type: str | None = None
    retry_in: float | None = None  # seconds until the next attempt, when the run is retrying


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Runs waiting in one queue (queued or retrying), and when the one waiting longest became ready."""

    queue: str
    waiting: int
    oldest_ready_at: float | None


@dataclass(frozen=True, slots=True)
class Gauges:
    """What /metrics reads at scrape time: the queues on disk and this process's executor."""

    now: float
    queues: tuple[QueueDepth, ...] = ()
    slots: int = 0  # the executor's concurrency limit
    busy: Mapping[str, int] = field(default_factory=dict)  # executing attempts by queue, in this process
    # Runs waiting for a task no live worker serves, by task (None: not read: this process runs its tasks)
    unserved: Mapping[str, int] | None = None
    workers: Mapping[str, int] | None = None  # registered workers by status (live, lost, stopped)


@dataclass(frozen=True, slots=True)
class DeliveryCount:
    """Deliveries of one source in one minute that ended one way: ``routed`` or ``unrouted`` (original
    deliveries stored as events), or ``rejected`` (refused and recorded as rejections)."""

    minute: float  # the minute's start, seconds since the epoch (a multiple of 60)
    source: str
    outcome: str  # routed | unrouted | rejected
    n: int


@dataclass(frozen=True, slots=True)
class TaskDurations:
    """What the store knows of one task's recent runs: how many of those created in a window are in each
    status, and the executing seconds of the most recently finished of them, ascending."""

    task: str
    counts: Mapping[str, int]  # runs by status
    durations: tuple[float, ...] = ()  # sorted ascending


@dataclass(frozen=True, slots=True)
class AckBudget:
    """How one source's answers stood against its sender's delivery timeout, as this process counted them:
    ``within`` answered within the budget, ``over`` slower than it (both 0 without a budget)."""

    budget: float | None  # the sender's timeout in seconds; None when the source has none
    acks: int  # answers sent for the source's requests
    within: int
    over: int

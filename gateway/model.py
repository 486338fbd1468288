"""Frozen dataclasses shared by every layer: secrets, headers, requests, events, runs. Pure: no I/O."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# Crockford's base32: ids sort by creation time and read well in a terminal.
_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str, now: float | None = None) -> str:
    """A time-ordered unique id (ULID layout: 48-bit milliseconds + 80 random bits), e.g. ``evt_01J…``."""
    ms = int((time.time() if now is None else now) * 1000)
    n = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_B32[n & 31])
        n >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


class Secret:
    """A secret value that never shows itself in ``repr``, ``str``, logs or errors.

    Compare with ``==`` (constant time); call :meth:`reveal` only where the raw value is needed.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))


class Headers(Mapping[str, str]):
    """Immutable, case-insensitive HTTP headers that keep repeated fields.

    ``headers["X-GitHub-Event"]`` gives the first value; :meth:`get_all` gives every value.
    """

    __slots__ = ("_index", "_pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs: tuple[tuple[str, str], ...] = tuple([(k.lower(), v) for k, v in pairs])
        self._index = dict(reversed(self._pairs))  # the first value of a repeated name wins

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        return self._pairs

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self._pairs if k == name]

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"Headers({list(self._pairs)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._pairs == other._pairs

    def __hash__(self) -> int:
        return hash(self._pairs)


@dataclass(frozen=True, slots=True)
class Inbound:
    """An inbound delivery exactly as received: what verification and matching see.

    ``url`` is the full URL the sender called (scheme://host[:port]/path?query); ``body`` the exact
    bytes. ``query`` keeps repeated parameters in order.
    """

    method: str
    url: str
    headers: Headers
    body: bytes
    query: tuple[tuple[str, str], ...] = ()
    remote_addr: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a successful verification."""

    verified: bool  # False only for scheme ``none``
    scheme: str
    timestamp: int | None = None  # the signed timestamp, when the scheme signs one
    key_index: int | None = None  # which configured secret matched (for rotation)

    @property
    def label(self) -> str:
        """``verified:stripe``, or ``verified:stripe key=1`` when a later secret of the list matched: it shows
        operators when an old secret is no longer used and can be removed."""
        if not self.verified:
            return "unverified"
        return f"verified:{self.scheme}" + (f" key={self.key_index}" if self.key_index else "")


@dataclass(frozen=True, slots=True)
class Payload:
    """A parsed body. ``kind`` is ``json``, ``form`` or ``raw``; ``data`` is JSON-compatible.

    ``parsed`` says ``data`` is exactly the event's body parsed as JSON, so the store keeps the body alone.
    """

    kind: str
    data: Any
    parsed: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Event:
    """One stored delivery."""

    id: str
    source: str
    event_type: str | None
    dedupe_key: str | None
    status: str  # ROUTED | UNROUTED
    received_at: float
    method: str
    url: str
    headers: Headers
    query: tuple[tuple[str, str], ...]
    body: bytes
    payload: Payload
    verification: str  # Verdict.label
    remote_addr: str | None = None
    replay_of: str | None = None
    # W3C traceparent of the span that recorded it (the request's, or a replay's); None without a trace
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of one task for one event (one per matched route)."""

    id: str
    event_id: str
    route_id: str | None
    task_id: str
    input: Any
    status: str
    created_at: float
    queue: str = "default"
    priority: int = 0
    concurrency_key: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # resolved retry/timeout for the executor
    attempts: int = 0
    crashes: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    output: Any = None
    error: Mapping[str, Any] | None = None
    duration: float = 0.0  # seconds spent executing, summed over attempts
    idempotency_key: str | None = None  # stable across attempts and reruns; None means the run id
    rerun_of: str | None = None
    # Tracing: the run's span hangs under ``traceparent`` (W3C; the request's or a rerun's span) and has the
    # id ``span_id`` (16 hex digits), chosen when the run is created so every attempt can be its child.
    traceparent: str | None = None
    span_id: str | None = None
    worker_id: str | None = None  # the worker holding it while executing, else the last one that did


# Worker kinds: gateway serve's embedded executor, or a gateway worker process.
SERVE, WORKER = "serve", "worker"
# A worker's status as `gateway workers` shows it: heartbeats arriving, none for a lease (killed, frozen,
# cut off from the disk), or stopped cleanly.
LIVE, LOST, STOPPED = "live", "lost", "stopped"


@dataclass(frozen=True, slots=True)
class TaskWorker:
    """A process that runs tasks, as it registered in the store; ``running`` (runs it holds now) and
    ``status`` are filled in by reads."""

    id: str
    kind: str  # serve | worker
    host: str
    pid: int
    process: str | None  # boot id and start time: tells a reused pid from the process that registered
    tasks: tuple[str, ...]
    queues: tuple[str, ...] | None  # None: every queue
    concurrency: int
    version: str
    started_at: float
    heartbeat_at: float
    stopped_at: float | None = None
    running: int = 0
    status: str = LIVE

    def serves(self, task_id: str, queue: str) -> bool:
        return task_id in self.tasks and (self.queues is None or queue in self.queues)


# Event statuses: whether a route matched the event when it was recorded (or replayed).
ROUTED, UNROUTED = "routed", "unrouted"
EVENT_STATUSES = (ROUTED, UNROUTED)

# Run statuses. Final ones never change again; unfinished ones hold their (task, concurrency key) in order.
QUEUED, EXECUTING, RETRYING = "queued", "executing", "retrying"
COMPLETED, FAILED, TIMED_OUT, CANCELED, CRASHED = "completed", "failed", "timed_out", "canceled", "crashed"
FINAL_STATUSES = frozenset({COMPLETED, FAILED, TIMED_OUT, CANCELED, CRASHED})
UNFINISHED_STATUSES = frozenset({QUEUED, EXECUTING, RETRYING})
RUN_STATUSES = (QUEUED, EXECUTING, RETRYING, *sorted(FINAL_STATUSES))

# Attempt outcomes, four of them named like the run statuses they lead to. Crashed and interrupted (a
# shutdown's drain deadline) attempts do not use up the task's retries.
ABORTED, INTERRUPTED = "aborted", "interrupted"
ATTEMPT_OUTCOMES = (COMPLETED, FAILED, TIMED_OUT, ABORTED, CRASHED, INTERRUPTED)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one run. ``outcome`` is completed, failed, timed_out, aborted, crashed or interrupted
    (None while it executes); crashed and interrupted attempts do not use up the task's retries."""

    run_id: str
    number: int
    started_at: float
    finished_at: float | None = None
    outcome: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    logs: tuple[Mapping[str, Any], ...] = ()
    worker_id: str | None = None  # the worker that ran it (None: recorded before workers were)

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class Claim:
    """A run the executor has just claimed, with what its Context needs from the event."""

    run: Run
    attempt: int  # the number of the attempt being started (1-based, counts every attempt row)
    source: str
    event_type: str | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """How one attempt ended and what that does to its run; written in one transaction."""

    run_id: str
    attempt: int
    finished_at: float
    outcome: str  # completed | failed | timed_out | aborted | crashed | interrupted
    run_status: str  # the run's next status: a final one, retrying, or queued (interrupted)
    counts: bool = True  # False for interrupted: the attempt does not use up a retry
    available_at: float | None = None  # when a retrying/queued run may start again
    output: Any = None  # JSON-compatible, for completed
    error: Mapping[str, Any] | None = None  # {"type", "message", "traceback"} of this attempt
    logs: tuple[Mapping[str, Any], ...] = ()


# Why a rejection no longer holds its request (Rejection.dropped): dropped later to make room for newer ones
# within its source's cap (evicted), never kept because there was no room (no_room: the cap is full and this
# hour's turnover spent, or the request alone is larger), or never kept because the credential it carried is
# never stored, so it could not be verified again (unverifiable).
EVICTED, NO_ROOM, UNVERIFIABLE = "evicted", "no_room", "unverifiable"
# What a recovered rejection became (Rejection.recovery): a new event, or a duplicate of a stored one.
STORED, DUPLICATE = "stored", "duplicate"


@dataclass(frozen=True, slots=True)
class RejectionKeep:
    """How many bytes of rejected requests one source keeps for replay: ``keep`` (0 keeps none). Past it the
    oldest are dropped first, but no more than ``turnover`` bytes an hour (a quarter of ``keep``): a flood of
    forgeries replaces at most a quarter of what is kept each hour; beyond that, new ones are not kept."""

    keep: int

    @property
    def turnover(self) -> int:
        return self.keep // 4


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request that was refused before it became an event (bad signature, too large, …).

    ``request`` is the whole request as kept for replay (credentials redacted like an event's), when one is:
    a listing leaves it out and says how many bytes it takes (``kept``; 0: none kept, see ``dropped``).
    ``recovered_as`` names the event it became once replayed with the current secrets.
    """

    source: str
    reason: str
    detail: str
    received_at: float
    remote_addr: str | None
    body_prefix: bytes
    body_size: int
    id: int | None = None
    request: Inbound | None = None
    kept: int = 0  # bytes of the kept request counted against its source's cap
    dropped: str | None = None  # EVICTED | NO_ROOM | UNVERIFIABLE
    dropped_at: float | None = None
    recovered_as: str | None = None
    recovery: str | None = None  # STORED | DUPLICATE
    recovered_at: float | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the store answers for an event write: the id to acknowledge and its runs."""

    event_id: str
    runs: tuple[Run, ...]
    duplicate: bool


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which stored events a listing or a bulk replay takes; None means any.

    ``task`` / ``run_status`` keep events that have at least one run of that task / in that status.
    ``include_replays`` False keeps original deliveries only (``replay_of`` None): what a bulk replay takes
    unless told otherwise, so replaying a window never replays the replays in it again. Listings take
    everything (True), and so does a job stored before the field existed (its JSON lacks the key).
    ``text`` keeps the events whose id or shown dedupe key (a retired one included) equals it exactly, or
    that have a run with that id: a search box's exact match, answered from indexes.
    """

    source: str | None = None
    event_type: str | None = None
    status: str | None = None  # routed | unrouted
    since: float | None = None  # received at or after
    until: float | None = None  # received at or before
    task: str | None = None
    run_status: str | None = None
    include_replays: bool = True
    text: str | None = None  # an event id, a dedupe key or a run id, exactly


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which stored runs a listing or a bulk rerun takes; None means any."""

    status: str | None = None
    task: str | None = None
    source: str | None = None  # the source of the run's event
    event_id: str | None = None
    since: float | None = None  # created at or after
    until: float | None = None  # created at or before


# Kinds of bulk job: route stored events again, or rerun stored runs.
REPLAY, RERUN = "replay", "rerun"
# Bulk job statuses: running until the last chunk commits (completed), or canceled, or failed.
JOB_RUNNING = "running"
JOB_STATUSES = (JOB_RUNNING, COMPLETED, CANCELED, FAILED)


@dataclass(frozen=True, slots=True)
class Job:
    """A bulk replay or rerun, processed in chunks; each chunk's new records and the job's progress are
    committed in one transaction, so a job interrupted by a crash resumes where it was, without doubles."""

    id: str
    kind: str  # replay | rerun
    filter: EventFilter | RunFilter
    status: str  # running | completed | canceled | failed
    total: int  # items selected when the job was created
    done: int  # items processed so far
    created: int  # runs created so far
    upto: float  # only items recorded at or before this time (the job's start): never its own output
    created_at: float
    updated_at: float
    cursor: tuple[float, str] | None = None  # the last item processed, in (time, id) order
    finished_at: float | None = None
    error: str | None = None
    requested_by: str | None = None
    owner: str | None = None  # the process working on it (``serve:pid@host``, ``cli:pid@host``), if any


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one prune pass removed (or, for a dry run, would remove)."""

    events: int = 0
    runs: int = 0
    attempts: int = 0
    rejections: int = 0
    jobs: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(
            self.events + other.events,
            self.runs + other.runs,
            self.attempts + other.attempts,
            self.rejections + other.rejections,
            self.jobs + other.jobs,
        )

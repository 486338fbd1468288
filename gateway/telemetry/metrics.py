"""The gateway's Prometheus metrics: what the request path, executor and store report, rendered for /metrics.

No I/O of its own (the process collectors read /proc when rendered); callers pass every value, `now` included.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.samples import Sample

from gateway.model import FINAL_STATUSES
from gateway.report import DELIVERY_OUTCOMES, AckBudget, AttemptReport, Delivery, Gauges

ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
COMMIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)
# Cumulative like histogram buckets: an ack at 30 % of its budget counts in "0.5" and "1".
BUDGET_FRACTIONS = ((0.1, "0.1"), (0.5, "0.5"), (1.0, "1"))

# A budgeted source's children: (fraction, within-budget counter) pairs, then the over-budget counter.
_Budget = tuple[tuple[tuple[float, Counter], ...], Counter]


class Metrics:
    """Every metric of one gateway process, in its own registry (never the global one: tests build many).

    ``budgets`` maps a source to its sender's delivery timeout in seconds, for sources that have one.
    """

    content_type: str = CONTENT_TYPE_LATEST

    def __init__(
        self,
        budgets: Mapping[str, float] | None = None,
        *,
        registry: CollectorRegistry | None = None,
        process: bool = True,
        version: str = "",
    ) -> None:
        self.registry = reg = CollectorRegistry() if registry is None else registry
        if process:
            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
        self._render_lock = threading.Lock()
        # Registered group by group, in the order /metrics lists them.
        self._request_metrics(reg)
        self._run_metrics(reg)
        self._queue_gauges(reg)
        self._store_metrics(reg)
        self._process_metrics(reg, version)

        # Children cached by label tuple: the request path pays a dict lookup, not the family's lock.
        self._request_children: dict[tuple[str, str, str], Counter] = {}
        self._ack_children: dict[str, Histogram] = {}
        self._budget_children: dict[str, _Budget] = {}
        for source, timeout in (budgets or {}).items():
            self._timeout.labels(source).set(timeout)
            self._budget(source)  # present at 0 before traffic, so increase(...) alerts work at once

    def _request_metrics(self, reg: CollectorRegistry) -> None:
        """Requests on hook paths and how fast they were answered, against the sender's timeout."""
        self._requests = Counter(
            "gateway_requests_total",
            "Requests to webhook paths, by source and outcome; reason says why a request was rejected",
            ("source", "outcome", "reason"),
            registry=reg,
        )
        self._ack = Histogram(
            "gateway_ack_seconds",
            "Seconds from a request's arrival to the gateway's answer, by source (unknown paths excluded)",
            ("source",),
            buckets=ACK_BUCKETS,
            registry=reg,
        )
        self._within = Counter(
            "gateway_acks_within_budget_total",
            "Answers sent within this fraction of the sender's delivery timeout (cumulative, like buckets)",
            ("source", "fraction"),
            registry=reg,
        )
        self._over = Counter(
            "gateway_acks_over_budget_total",
            "Answers slower than the sender's delivery timeout: the sender has likely given up and retries",
            ("source",),
            registry=reg,
        )
        self._timeout = Gauge(
            "gateway_sender_timeout_seconds",
            "The sender's delivery timeout for this source, in seconds: the budget every ack is held against",
            ("source",),
            registry=reg,
        )

    def _run_metrics(self, reg: CollectorRegistry) -> None:
        """Runs that finished and the attempts they took."""
        self._runs = Counter(
            "gateway_runs_total",
            "Runs that reached a final status (completed, failed, timed_out, canceled, crashed), by task",
            ("task", "status"),
            registry=reg,
        )
        self._attempts = Counter(
            "gateway_attempts_total",
            "Attempts that ended, by task and how they ended (completed, failed, timed_out, ...)",
            ("task", "outcome"),
            registry=reg,
        )
        self._attempt_seconds = Histogram(
            "gateway_attempt_duration_seconds",
            "How long one attempt of a task ran, in seconds",
            ("task",),
            buckets=ATTEMPT_BUCKETS,
            registry=reg,
        )

    def _queue_gauges(self, reg: CollectorRegistry) -> None:
        """What waits in the queues and what the executor is running: set at scrape time by render()."""
        self._depth = Gauge(
            "gateway_queue_depth",
            "Runs waiting in a queue (queued or retrying), as stored on disk",
            ("queue",),
            registry=reg,
        )
        self._oldest = Gauge(
            "gateway_queue_oldest_ready_age_seconds",
            "How long the longest-waiting ready run of a queue has been ready; grows when work is stuck",
            ("queue",),
            registry=reg,
        )
        self._slots = Gauge(
            "gateway_executor_slots", "Attempts this process may execute at once", registry=reg
        )
        self._busy = Gauge(
            "gateway_executor_busy",
            "Attempts executing now in this process, by queue",
            ("queue",),
            registry=reg,
        )
        self._slots_busy = Gauge(
            "gateway_executor_slots_busy",
            "Attempts executing now in this process, all queues; equal to slots means the executor is full",
            registry=reg,
        )

        self._unserved = Gauge(
            "gateway_runs_waiting_for_worker",
            "Runs waiting for a task that no live worker serves (read by intake that runs no tasks itself)",
            ("task",),
            registry=reg,
        )
        self._workers = Gauge(
            "gateway_workers",
            "Registered workers by status: live (heartbeats arriving), lost (none for a lease), stopped",
            ("status",),
            registry=reg,
        )

    def _store_metrics(self, reg: CollectorRegistry) -> None:
        """The store's group-commit transactions: how many writes each took, how long, which rolled back."""
        self._batch = Histogram(
            "gateway_commit_batch_size",
            "Writes committed together in one group-commit transaction of the store",
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self._commit_seconds = Histogram(
            "gateway_commit_seconds",
            "Seconds one group-commit transaction of the store took, rolled-back ones included",
            buckets=COMMIT_BUCKETS,
            registry=reg,
        )
        self._commit_failures = Counter(
            "gateway_commit_failures_total",
            "Group-commit transactions rolled back: their requests were answered 503 and not stored",
            registry=reg,
        )

    def _process_metrics(self, reg: CollectorRegistry, version: str) -> None:
        """This process: the trace spans it dropped, and its version."""
        self._trace_failures = Counter(
            "gateway_trace_export_failures_total",
            "Trace spans that could not be exported to the tracing backend (dropped)",
            registry=reg,
        )
        build = Gauge("gateway_build_info", "The gateway's version (always 1)", ("version",), registry=reg)
        build.labels(version).set(1)

    def delivery(self, d: Delivery, seconds: float) -> None:
        """Count one request on a hook path; ``seconds`` is its ack latency (request start to answer)."""
        source = "" if d.source is None else d.source
        key = (source, d.outcome, d.reason or "")
        child = self._request_children.get(key)
        if child is None:
            if d.outcome not in DELIVERY_OUTCOMES:
                known = ", ".join(DELIVERY_OUTCOMES)
                raise ValueError(f"unknown delivery outcome {d.outcome!r} (one of {known})")
            child = self._request_children[key] = self._requests.labels(*key)
        child.inc()
        if d.source is None:  # unknown_source: the path is attacker-chosen, never a label
            return
        ack = self._ack_children.get(source)
        if ack is None:
            ack = self._ack_children[source] = self._ack.labels(source)
        ack.observe(seconds)
        budget = d.budget
        if budget is not None and budget > 0:
            within, over = self._budget_children.get(source) or self._budget(source)
            for fraction, counter in within:
                if seconds <= budget * fraction:
                    counter.inc()
            if seconds > budget:
                over.inc()

    def attempt(self, r: AttemptReport) -> None:
        """Count one attempt that ended, and how long it ran."""
        self._attempts.labels(r.task_id, r.outcome).inc()
        self._attempt_seconds.labels(r.task_id).observe(r.seconds)

    def run_final(self, task_id: str, status: str) -> None:
        """Count a run that reached a final status."""
        if status not in FINAL_STATUSES:
            final = ", ".join(sorted(FINAL_STATUSES))
            raise ValueError(f"run status {status!r} is not final (one of {final})")
        self._runs.labels(task_id, status).inc()

    def commit(self, size: int, seconds: float, ok: bool) -> None:
        """Record one group-commit batch of ``size`` writes; ``ok=False`` when it was rolled back."""
        self._batch.observe(size)
        self._commit_seconds.observe(seconds)
        if not ok:
            self._commit_failures.inc()

    def trace_export_failed(self, spans: int) -> None:
        """Count spans the trace exporter dropped."""
        if spans > 0:
            self._trace_failures.inc(spans)

    def acks(self) -> dict[str, AckBudget]:
        """Each source's answers so far against its sender's timeout, read back from this registry's own
        series (their public ``collect()``): every ack the latency histogram counted, those within the whole
        budget (fraction "1") and those over it. A source without a budget shows budget None, 0 and 0."""
        budgets = {
            s.labels["source"]: s.value for s in _samples(self._timeout, "gateway_sender_timeout_seconds")
        }
        acks = {s.labels["source"]: int(s.value) for s in _samples(self._ack, "gateway_ack_seconds_count")}
        within = {
            s.labels["source"]: int(s.value)
            for s in _samples(self._within, "gateway_acks_within_budget_total")
            if s.labels["fraction"] == "1"
        }
        over = {
            s.labels["source"]: int(s.value) for s in _samples(self._over, "gateway_acks_over_budget_total")
        }
        return {
            source: AckBudget(
                budget=budgets.get(source),
                acks=acks.get(source, 0),
                within=within.get(source, 0),
                over=over.get(source, 0),
            )
            for source in sorted(budgets.keys() | acks.keys())
        }

    def render(self, gauges: Gauges) -> bytes:
        """Set the scrape-time gauges from ``gauges``, then the whole registry in Prometheus text format.

        Queues absent from the snapshot disappear rather than keep their last value.
        """
        with self._render_lock:
            self._depth.clear()
            self._oldest.clear()
            for q in gauges.queues:
                self._depth.labels(q.queue).set(q.waiting)
                # A retrying run whose backoff ends in the future is not late: its age is 0.
                age = 0.0 if q.oldest_ready_at is None else max(0.0, gauges.now - q.oldest_ready_at)
                self._oldest.labels(q.queue).set(age)
            self._slots.set(gauges.slots)
            self._busy.clear()
            for queue, n in gauges.busy.items():
                self._busy.labels(queue).set(n)
            self._slots_busy.set(sum(gauges.busy.values()))
            self._unserved.clear()
            for task, n in (gauges.unserved or {}).items():
                self._unserved.labels(task).set(n)
            self._workers.clear()
            for status, n in (gauges.workers or {}).items():
                self._workers.labels(status).set(n)
            return generate_latest(self.registry)

    def _budget(self, source: str) -> _Budget:
        within = tuple((f, self._within.labels(source, label)) for f, label in BUDGET_FRACTIONS)
        children = self._budget_children[source] = (within, self._over.labels(source))
        return children


def _samples(metric: Counter | Gauge | Histogram, name: str) -> list[Sample]:
    """The samples named ``name`` (a histogram's ``_count``, a counter's ``_total``) of one metric family."""
    return [sample for family in metric.collect() for sample in family.samples if sample.name == name]

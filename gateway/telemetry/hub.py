"""One place the app, the executor, the service and the store report to: spans (gateway/telemetry/tracing.py),
Prometheus metrics (gateway/telemetry/metrics.py) and log lines (gateway/telemetry/logs.py). It never fails
what it observes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from gateway.model import Run
from gateway.report import AttemptReport, Delivery
from gateway.telemetry import logs
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.traceparent import span_trace_id
from gateway.telemetry.tracing import Tracing, attempt_ended

log = logging.getLogger("gateway.telemetry")


@dataclass(frozen=True, slots=True)
class Telemetry:
    """``metrics`` is None where nobody scrapes them (the CLI); ``tracing`` is off unless OTEL_* asks."""

    tracing: Tracing = field(default_factory=Tracing.off)
    metrics: Metrics | None = None
    scrub: logs.Scrub = field(default_factory=logs.Scrub)  # keeps configured secrets out of stored failures

    @classmethod
    def off(cls) -> Telemetry:
        return cls()

    def delivered(
        self, span: Span, d: Delivery, *, method: str, path: str, seconds: float, remote: str | None
    ) -> None:
        """A request on a hook path was answered ``seconds`` after it arrived."""
        try:
            self.tracing.delivered(span, d)
            if self.metrics is not None:
                self.metrics.delivery(d, seconds)
            logs.delivery(
                d, method=method, path=path, seconds=seconds, trace_id=span_trace_id(span), remote=remote
            )
        except Exception:
            log.exception("telemetry: could not report a delivery")

    def attempt_ended(self, span: Span, report: AttemptReport, error: Mapping[str, Any] | None) -> None:
        try:
            attempt_ended(span, report.outcome, report.status, error)
            if self.metrics is not None:
                self.metrics.attempt(report)
            logs.attempt(report)
        except Exception:
            log.exception("telemetry: could not report an attempt")

    def run_ended(self, run: Run, status: str, finished_at: float, attempts: int) -> None:
        """A run reached a final status (completed, failed, timed_out, canceled, crashed)."""
        try:
            self.tracing.run_ended(run, status, finished_at, attempts)
            if self.metrics is not None:
                self.metrics.run_final(run.task_id, status)
        except Exception:
            log.exception("telemetry: could not report the end of run %s", run.id)

    def committed(self, size: int, seconds: float, ok: bool) -> None:
        """The store committed (or rolled back) one batch of ``size`` writes in ``seconds``."""
        if self.metrics is not None:
            try:
                self.metrics.commit(size, seconds, ok)
            except Exception:
                log.exception("telemetry: could not count a commit")

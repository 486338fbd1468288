"""OpenTelemetry traces: a span per request on a hook path, per run and per attempt, continuing a sender's
``traceparent``. I/O only through the exporter's own thread, and only when ``OTEL_*`` configures one.

Tree: ``POST /hooks/x`` (request) → ``run <task>`` → ``attempt <task>`` (one per try) → the task's own spans.
A run outlives the request and even the process, so its span is written when the run ends, with the span
id chosen when the run was created (``Run.span_id``): attempts made before, by any process, are its children.
Replays, reruns and triggers start a new trace that links to the original.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanKind, Status, StatusCode

from gateway.model import COMPLETED, FINAL_STATUSES, Run
from gateway.report import Delivery
from gateway.telemetry.traceparent import context_of, parent_of, run_context

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("gateway.tracing")

# The old distribution name, kept: operators' dashboards and alerts filter on this OpenTelemetry service.name.
SERVICE_NAME = "webhook-gateway"
_CHOSEN_SPAN_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("chosen_span_id", default=None)


class Tracing:
    """The gateway's tracer. Without a provider (no ``OTEL_*`` exporter configured) spans are not recorded,
    but a sender's ``traceparent`` is still continued: its trace id is stored on the event and the runs."""

    def __init__(
        self, provider: TracerProvider | None = None, destinations: Sequence[str] = (), version: str = ""
    ) -> None:
        """``version`` is the gateway's (gateway.__version__), the instrumentation version of its spans."""
        self._provider = provider
        self.tracer: trace.Tracer = (
            provider.get_tracer("gateway", version or None) if provider is not None else trace.NoOpTracer()
        )
        self.destinations = tuple(destinations)
        self._on_failure: Callable[[int], None] | None = None

    def on_export_failure(self, callback: Callable[[int], None] | None) -> None:
        """Call ``callback(spans)`` whenever an export fails (the gateway counts them in /metrics)."""
        self._on_failure = callback

    def export_failed(self, spans: int) -> None:
        if self._on_failure is not None:
            self._on_failure(spans)

    def describe(self) -> str:
        """One line for the start-up log: where spans go."""
        if self._provider is None:
            return (
                "traces off: set OTEL_EXPORTER_OTLP_ENDPOINT (with the otel extra installed) to export them"
            )
        return f"traces to {', '.join(self.destinations) or 'a custom exporter'}"

    @property
    def enabled(self) -> bool:
        return self._provider is not None

    @classmethod
    def off(cls) -> Tracing:
        return cls()

    @classmethod
    def to(cls, exporter: SpanExporter, *, batch: bool = False, version: str = "") -> Tracing:
        """Export to ``exporter`` (tests pass an in-memory one); ``batch`` puts a BatchSpanProcessor first."""
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        provider = TracerProvider(
            resource=Resource.create({"service.name": SERVICE_NAME, "service.version": version}),
            id_generator=chosen_ids(),
        )
        provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
        return cls(provider, version=version)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush what is buffered (at most ``timeout`` seconds: an unreachable collector must not hold up a
        stop) and stop the exporter."""
        if self._provider is None:
            return
        provider = self._provider
        done = threading.Thread(target=provider.shutdown, name="gateway-trace-shutdown", daemon=True)
        done.start()
        done.join(timeout)
        if done.is_alive():
            log.warning(
                "traces: the exporter did not stop within %.0f s; spans still buffered are lost", timeout
            )

    # -- spans ----------------------------------------------------------------------------------------

    @contextmanager
    def request(self, method: str, path: str, traceparent: str | None, remote: str | None) -> Iterator[Span]:
        """The span of one request on a hook path, continuing the sender's ``traceparent`` if it sent one."""
        parent = parent_of(traceparent)
        if parent is None and self._provider is None:  # nothing to record or continue: skip the no-op span
            yield trace.INVALID_SPAN
            return
        attributes = {"http.request.method": method, "url.path": path}
        if remote:
            attributes["client.address"] = remote
        with self.tracer.start_as_current_span(
            f"{method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=True,
        ) as span:
            yield span

    def delivered(self, span: Span, d: Delivery) -> None:
        """Describe how the request ended on its span."""
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {"http.response.status_code": d.status, "gateway.outcome": d.outcome}
        for key, value in (
            ("gateway.source", d.source),
            ("gateway.reason", d.reason),
            ("gateway.event.id", d.event_id),
            ("gateway.event.type", d.event_type),
            ("gateway.verification", d.verification),
        ):
            if value is not None:
                attributes[key] = value
        if d.outcome in ("accepted", "duplicate"):
            attributes["gateway.dedupe"] = "duplicate" if d.outcome == "duplicate" else "new"
            attributes["gateway.runs"] = d.runs
        span.set_attributes(attributes)
        if d.status >= 500:
            span.set_status(Status(StatusCode.ERROR, d.reason or d.outcome))

    def linked(
        self, name: str, original: str | None, attributes: Mapping[str, Any], parent: str | None = None
    ) -> AbstractContextManager[Span]:
        """A span that starts a new trace (or continues ``parent``, a caller's traceparent) and links to the
        trace of ``original`` (a stored traceparent): a replay, a rerun, a trigger."""
        origin = context_of(original)
        links = [Link(origin, {"gateway.link": "original"})] if origin is not None else None
        return self.tracer.start_as_current_span(
            name,
            context=parent_of(parent)
            or OtelContext(),  # an empty context: a root, not the current span's child
            kind=SpanKind.INTERNAL,
            attributes=dict(attributes),
            links=links,
        )

    def attempt(self, run: Run, number: int) -> AbstractContextManager[Span]:
        """The span of one attempt, a child of the run's span (current while the task runs)."""
        context = run_context(run)
        if context is None:
            return nullcontext(trace.INVALID_SPAN)
        return self.tracer.start_as_current_span(
            f"attempt {run.task_id}",
            context=trace.set_span_in_context(NonRecordingSpan(context)),
            kind=SpanKind.CONSUMER,
            attributes={
                "gateway.run.id": run.id,
                "gateway.event.id": run.event_id,
                "gateway.task": run.task_id,
                "gateway.queue": run.queue,
                "gateway.attempt": number,
            },
            record_exception=False,
            set_status_on_exception=False,
        )

    def run_ended(self, run: Run, status: str, finished_at: float, attempts: int) -> None:
        """Write the span of a run that reached a final status: from its creation to its end, under the span
        that created it, with the id its attempts already point to."""
        if self._provider is None or status not in FINAL_STATUSES or run.span_id is None:
            return
        parent = parent_of(run.traceparent)
        if parent is None:
            return
        token = _CHOSEN_SPAN_ID.set(int(run.span_id, 16))
        try:
            span = self.tracer.start_span(
                f"run {run.task_id}",
                context=parent,
                kind=SpanKind.INTERNAL,
                start_time=_ns(run.created_at),
                attributes={
                    "gateway.run.id": run.id,
                    "gateway.event.id": run.event_id,
                    "gateway.task": run.task_id,
                    "gateway.queue": run.queue,
                    "gateway.run.status": status,
                    "gateway.attempts": attempts,
                    **({"gateway.rerun_of": run.rerun_of} if run.rerun_of else {}),
                },
            )
        finally:
            _CHOSEN_SPAN_ID.reset(token)
        if status != COMPLETED:
            span.set_status(Status(StatusCode.ERROR, status))
        span.end(end_time=max(_ns(finished_at), _ns(run.created_at)))


def attempt_ended(span: Span, outcome: str, status: str, error: Mapping[str, Any] | None) -> None:
    """Describe how an attempt ended on its span; a failure is recorded like ``record_exception`` does."""
    if not span.is_recording():
        return
    span.set_attributes({"gateway.execution.attempt.outcome": outcome, "gateway.run.next_status": status})
    if error is not None and outcome != COMPLETED:
        kind, message = str(error.get("type")), str(error.get("message"))
        span.set_attribute("error.type", kind)
        span.add_event(
            "exception",
            {
                "exception.type": kind,
                "exception.message": message,
                "exception.stacktrace": str(error.get("traceback") or ""),
            },
        )
        span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}"))


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def chosen_ids() -> Any:
    """An IdGenerator that takes a span id chosen in advance (a run's), else random ones like the SDK's."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class ChosenIds(RandomIdGenerator):
        def generate_span_id(self) -> int:
            chosen = _CHOSEN_SPAN_ID.get()
            return chosen if chosen is not None else super().generate_span_id()

    return ChosenIds()

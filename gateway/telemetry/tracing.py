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
import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.model import COMPLETED, FINAL_STATUSES, Event, Run
from gateway.report import Delivery

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("gateway.tracing")

# The old distribution name, kept: operators' dashboards and alerts filter on this OpenTelemetry service.name.
SERVICE_NAME = "webhook-gateway"
_W3C = TraceContextTextMapPropagator()
_CHOSEN_SPAN_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("chosen_span_id", default=None)


def parent_of(traceparent: str | None) -> OtelContext | None:
    """The context a W3C ``traceparent`` value names (a remote parent); None for none or a malformed one."""
    if not traceparent:
        return None
    ctx = _W3C.extract({"traceparent": traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def traceparent_of(context: SpanContext) -> str | None:
    """The W3C ``traceparent`` value of a span context; None for an invalid one (no trace)."""
    if not context.is_valid:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=trace.set_span_in_context(NonRecordingSpan(context)))
    return carrier.get("traceparent")


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex-digit trace id inside a stored ``traceparent``; what ``gateway show`` prints."""
    ctx = parent_of(traceparent)
    return (
        None
        if ctx is None
        else trace.format_trace_id(trace.get_current_span(ctx).get_span_context().trace_id)
    )


def span_trace_id(span: Span) -> str | None:
    """The trace id of a live span, or None when there is no trace."""
    context = span.get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def _context_of(traceparent: str | None) -> SpanContext | None:
    ctx = parent_of(traceparent)
    return None if ctx is None else trace.get_current_span(ctx).get_span_context()


def stamp(event: Event, runs: Sequence[Run], context: SpanContext) -> tuple[Event, tuple[Run, ...]]:
    """The event and its runs with the trace they belong to: the event records ``context`` (the span that
    received or replayed it); each run hangs under it with a fresh span id of its own."""
    parent = traceparent_of(context)
    if parent is None:
        return event, tuple(runs)
    stamped = tuple(replace(run, traceparent=parent, span_id=_new_span_id()) for run in runs)
    return replace(event, traceparent=parent), stamped


def stamp_run(run: Run, context: SpanContext) -> Run:
    """A run created on its own (a rerun, a trigger) under ``context``."""
    parent = traceparent_of(context)
    return run if parent is None else replace(run, traceparent=parent, span_id=_new_span_id())


def run_traceparent(run: Run) -> str | None:
    """The W3C traceparent of a run's own span (what a rerun links to)."""
    context = _run_context(run)
    return None if context is None else traceparent_of(context)


def _new_span_id() -> str:
    span_id = 0
    while span_id == 0:  # 0 is the invalid span id
        span_id = random.getrandbits(64)
    return trace.format_span_id(span_id)


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
        origin = _context_of(original)
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
        context = _run_context(run)
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


def _run_context(run: Run) -> SpanContext | None:
    parent = _context_of(run.traceparent)
    if parent is None or run.span_id is None:
        return None
    return SpanContext(parent.trace_id, int(run.span_id, 16), is_remote=True, trace_flags=parent.trace_flags)


def current_traceparent() -> str | None:
    """The traceparent of the current span (the attempt's, inside a task): what a task passes downstream."""
    return traceparent_of(trace.get_current_span().get_span_context())


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

"""W3C ``traceparent`` values and the ids inside them: how a sender's trace is continued, and how events and
runs are stamped with the trace they belong to. Pure: no I/O, no exporter (the OpenTelemetry API only).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.model import Event, Run

_W3C = TraceContextTextMapPropagator()


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


def context_of(traceparent: str | None) -> SpanContext | None:
    ctx = parent_of(traceparent)
    return None if ctx is None else trace.get_current_span(ctx).get_span_context()


def stamp(event: Event, runs: Sequence[Run], context: SpanContext) -> tuple[Event, tuple[Run, ...]]:
    """The event and its runs with the trace they belong to: the event records ``context`` (the span that
    received or replayed it); each run hangs under it with a fresh span id of its own."""
    parent = traceparent_of(context)
    if parent is None:
        return event, tuple(runs)
    stamped = tuple(replace(run, traceparent=parent, span_id=new_span_id()) for run in runs)
    return replace(event, traceparent=parent), stamped


def stamp_run(run: Run, context: SpanContext) -> Run:
    """A run created on its own (a rerun, a trigger) under ``context``."""
    parent = traceparent_of(context)
    return run if parent is None else replace(run, traceparent=parent, span_id=new_span_id())


def run_traceparent(run: Run) -> str | None:
    """The W3C traceparent of a run's own span (what a rerun links to)."""
    context = run_context(run)
    return None if context is None else traceparent_of(context)


def new_span_id() -> str:
    span_id = 0
    while span_id == 0:  # 0 is the invalid span id
        span_id = random.getrandbits(64)
    return trace.format_span_id(span_id)


def run_context(run: Run) -> SpanContext | None:
    parent = context_of(run.traceparent)
    if parent is None or run.span_id is None:
        return None
    return SpanContext(parent.trace_id, int(run.span_id, 16), is_remote=True, trace_flags=parent.trace_flags)


def current_traceparent() -> str | None:
    """The traceparent of the current span (the attempt's, inside a task): what a task passes downstream."""
    return traceparent_of(trace.get_current_span().get_span_context())

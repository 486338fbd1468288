"""Trace context in and out (W3C traceparent), stamping records, and configuration from OTEL_* variables."""

from __future__ import annotations

import pytest
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext, TraceFlags

from gateway.model import Event, Headers, Payload, Run
from gateway.telemetry.traceparent import parent_of, stamp, trace_id_of, traceparent_of

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE}-b7ad6b7169203331-01"


def test_a_traceparent_round_trips_and_gives_its_trace_id() -> None:
    context = SpanContext(int(TRACE, 16), 0xB7AD6B7169203331, is_remote=True, trace_flags=TraceFlags(1))
    assert traceparent_of(context) == PARENT
    assert trace_id_of(PARENT) == TRACE
    assert parent_of(PARENT) is not None


@pytest.mark.parametrize(
    "value",
    [None, "", "garbage", f"00-{TRACE}-0000000000000000-01", "00-" + "0" * 32 + "-b7ad6b7169203331-01", "zz"],
)
def test_a_missing_or_malformed_traceparent_names_no_trace(value: str | None) -> None:
    assert parent_of(value) is None
    assert trace_id_of(value) is None


def test_an_invalid_context_has_no_traceparent_and_stamps_nothing() -> None:
    assert traceparent_of(INVALID_SPAN_CONTEXT) is None
    event = Event(
        "evt_1", "github", "push", None, "routed", 1.0, "POST", "/hooks/github", Headers(), (), b"{}",
        Payload("json", {}), "verified:github",
    )  # fmt: skip
    run = Run("run_1", "evt_1", "r", "t", {}, "queued", 1.0)
    assert stamp(event, [run], INVALID_SPAN_CONTEXT) == (event, (run,))


def test_stamping_gives_each_run_its_own_span_id_under_the_events_span() -> None:
    context = SpanContext(int(TRACE, 16), 0xB7AD6B7169203331, is_remote=False, trace_flags=TraceFlags(1))
    event = Event(
        "evt_1", "github", "push", None, "routed", 1.0, "POST", "/hooks/github", Headers(), (), b"{}",
        Payload("json", {}), "verified:github",
    )  # fmt: skip
    runs = [Run(f"run_{n}", "evt_1", "r", "t", {}, "queued", 1.0) for n in range(3)]
    stamped_event, stamped = stamp(event, runs, context)
    assert stamped_event.traceparent == PARENT
    assert {r.traceparent for r in stamped} == {PARENT}
    ids = [r.span_id for r in stamped]
    assert len(set(ids)) == 3 and all(i is not None and len(i) == 16 and i != "0" * 16 for i in ids)

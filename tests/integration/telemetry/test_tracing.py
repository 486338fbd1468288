"""Spans on the real app, store and executor, judged by the OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id

from gateway.execution.executor import Executor
from gateway.model import Headers
from gateway.records.service import Service
from gateway.store.sqlite.store import SQLiteStore
from gateway.telemetry.exporter import _reporting
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.tracing import Tracing
from tests.support.clock import Clock
from tests.support.deliveries import PUSH, github_headers

TASKS = """
import threading
from gateway import task

@task(id="steady")
async def steady(payload, ctx):
    with ctx.span("inner", answer=42):
        pass
    return {"trace": ctx.trace_id}

@task(id="flaky", retry={"max_attempts": 3, "min_timeout": 1, "jitter": False})
async def flaky(payload, ctx):
    if ctx.attempt == 1:
        raise RuntimeError("first try fails")
    return "ok"

@task(id="threaded")
def threaded(payload, ctx):
    with ctx.span("in a thread"):
        return threading.current_thread().name
"""

ROUTES = """
tasks: [{module}]
sources:
  github: {verify: github, secret: gh-secret}
routes:
  - {id: steady, source: github, event: push, task: steady}
  - {id: flaky, source: github, event: push, task: flaky}
  - {id: threaded, source: github, event: ping, task: threaded}
"""

SENDER_TRACE = "0af7651916cd43dd8448eb211c80319c"
SENDER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{SENDER_TRACE}-{SENDER_SPAN}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def telemetry(exporter: InMemorySpanExporter) -> Telemetry:
    return Telemetry(Tracing.to(exporter))


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_id(span: ReadableSpan) -> str | None:
    return format_span_id(span.parent.span_id) if span.parent is not None else None


def span_id(span: ReadableSpan) -> str:
    return format_span_id(span.context.span_id)


def trace_of(span: ReadableSpan) -> str:
    return format_trace_id(span.context.trace_id)


async def deliver(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
    telemetry: Telemetry,
    headers: dict[str, str],
) -> tuple[Any, SQLiteStore, Any, Clock]:
    config = load_config(ROUTES, TASKS)
    store = await open_store()
    clock = Clock()
    client = await client_for(config, store, telemetry=telemetry)
    response = await client.post("/hooks/github", content=PUSH, headers=headers)
    executor = Executor(store.runs, config.tasks, clock=clock, telemetry=telemetry)
    return response, store, executor, clock


async def test_a_delivery_that_fans_out_to_two_tasks_with_a_retry_is_one_trace(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
    telemetry: Telemetry,
    exporter: InMemorySpanExporter,
) -> None:
    headers = {**github_headers(PUSH), "traceparent": TRACEPARENT}
    response, store, executor, clock = await deliver(load_config, open_store, client_for, telemetry, headers)
    assert response.status_code == 202
    await executor.run_once()
    clock.now += 1.5  # past the flaky task's 1 s backoff
    await executor.run_once()

    spans = exporter.get_finished_spans()
    assert {trace_of(s) for s in spans} == {SENDER_TRACE}
    [request] = named(spans, "POST /hooks/github")
    assert request.kind is SpanKind.SERVER
    assert parent_id(request) == SENDER_SPAN
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 202
    assert request.attributes["gateway.outcome"] == "accepted"
    assert request.attributes["gateway.dedupe"] == "new"
    assert request.attributes["gateway.runs"] == 2
    assert request.attributes["gateway.event.id"] == response.json()["event_id"]

    runs = {s.name: s for s in spans if s.name.startswith("run ")}
    assert set(runs) == {"run steady", "run flaky"}
    assert {parent_id(s) for s in runs.values()} == {span_id(request)}
    stored = {r.task_id: r for r in await store.reads.runs_for_event(response.json()["event_id"])}
    assert span_id(runs["run flaky"]) == stored["flaky"].span_id  # the id chosen at ingest
    assert runs["run flaky"].attributes is not None
    assert runs["run flaky"].attributes["gateway.attempts"] == 2
    assert runs["run flaky"].status.status_code is StatusCode.UNSET

    flaky = [s for s in named(spans, "attempt flaky") if parent_id(s) == span_id(runs["run flaky"])]
    assert [s.attributes["gateway.attempt"] for s in flaky if s.attributes] == [1, 2]
    first, second = flaky
    assert first.status.status_code is StatusCode.ERROR
    assert [e.name for e in first.events] == ["exception"]
    assert first.events[0].attributes is not None
    assert first.events[0].attributes["exception.message"] == "first try fails"
    assert second.status.status_code is StatusCode.UNSET

    [steady] = named(spans, "attempt steady")
    assert parent_id(steady) == span_id(runs["run steady"])
    [inner] = named(spans, "inner")
    assert parent_id(inner) == span_id(steady)
    assert inner.attributes == {"answer": 42}
    assert stored["steady"].output == {"trace": SENDER_TRACE}  # ctx.trace_id


async def test_without_a_traceparent_the_request_starts_a_trace_stored_on_event_and_runs(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
    telemetry: Telemetry,
    exporter: InMemorySpanExporter,
) -> None:
    response, store, _, _ = await deliver(
        load_config, open_store, client_for, telemetry, github_headers(PUSH)
    )
    [request] = named(exporter.get_finished_spans(), "POST /hooks/github")
    assert request.parent is None
    event = await store.reads.get_event(response.json()["event_id"])
    assert event is not None and event.traceparent is not None
    assert event.traceparent.startswith(f"00-{trace_of(request)}-{span_id(request)}-")  # then the flags
    runs = await store.reads.runs_for_event(event.id)
    assert {r.traceparent for r in runs} == {event.traceparent}
    assert len({r.span_id for r in runs}) == 2


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        f"00-{SENDER_TRACE}-0000000000000000-01",
    ],
)
async def test_a_malformed_traceparent_is_ignored_and_a_new_trace_starts(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
    telemetry: Telemetry,
    exporter: InMemorySpanExporter,
    bad: str,
) -> None:
    headers = {**github_headers(PUSH), "traceparent": bad}
    response, _, _, _ = await deliver(load_config, open_store, client_for, telemetry, headers)
    assert response.status_code == 202
    [request] = named(exporter.get_finished_spans(), "POST /hooks/github")
    assert request.parent is None and trace_of(request) != "0" * 32


async def test_with_tracing_off_the_senders_trace_id_is_still_stored(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    headers = {**github_headers(PUSH), "traceparent": TRACEPARENT}
    response, store, executor, _ = await deliver(
        load_config, open_store, client_for, Telemetry.off(), headers
    )
    event = await store.reads.get_event(response.json()["event_id"])
    assert event is not None and event.traceparent == TRACEPARENT
    await executor.run_once()
    [steady] = [r for r in await store.reads.runs_for_event(event.id) if r.task_id == "steady"]
    assert steady.output == {"trace": SENDER_TRACE}


async def test_a_rejected_delivery_is_a_span_with_its_reason_and_no_runs(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
    telemetry: Telemetry,
    exporter: InMemorySpanExporter,
) -> None:
    headers = github_headers(PUSH, secret="wrong")
    response, _, _, _ = await deliver(load_config, open_store, client_for, telemetry, headers)
    assert response.status_code == 401
    [request] = exporter.get_finished_spans()
    assert request.attributes is not None
    assert request.attributes["gateway.outcome"] == "rejected"
    assert request.attributes["gateway.reason"] == "bad_signature"
    assert request.status.status_code is StatusCode.UNSET  # a 4xx is the sender's problem, not an error


async def test_a_sync_task_gets_the_attempt_span_in_its_thread(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
    telemetry: Telemetry,
    exporter: InMemorySpanExporter,
) -> None:
    headers = github_headers(PUSH, event="ping")
    _, _, executor, _ = await deliver(load_config, open_store, client_for, telemetry, headers)
    await executor.run_once()
    spans = exporter.get_finished_spans()
    [attempt] = named(spans, "attempt threaded")
    [inside] = named(spans, "in a thread")
    assert parent_id(inside) == span_id(attempt)


async def test_replay_and_rerun_start_new_traces_linked_to_the_originals(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
    telemetry: Telemetry,
    exporter: InMemorySpanExporter,
) -> None:
    headers = {**github_headers(PUSH), "traceparent": TRACEPARENT}
    response, store, executor, clock = await deliver(load_config, open_store, client_for, telemetry, headers)
    await executor.run_once()
    service = Service(store, load_config(ROUTES, TASKS), clock=clock, telemetry=telemetry)
    original = await store.reads.get_event(response.json()["event_id"])
    assert original is not None
    [request] = named(exporter.get_finished_spans(), "POST /hooks/github")

    outcome = await service.replay(original.id)
    [replay] = named(exporter.get_finished_spans(), "replay")
    assert replay.parent is None and trace_of(replay) != SENDER_TRACE
    assert [(trace_of_link(link), format_span_id(link.context.span_id)) for link in replay.links] == [
        (SENDER_TRACE, span_id(request))
    ]
    replayed = await store.reads.get_event(outcome.event_id)
    assert replayed is not None and replayed.traceparent is not None
    assert trace_of(replay) in replayed.traceparent
    assert {r.traceparent for r in outcome.runs} == {replayed.traceparent}

    [steady] = [r for r in await store.reads.runs_for_event(original.id) if r.task_id == "steady"]
    rerun = await service.rerun(steady.id)
    [span] = named(exporter.get_finished_spans(), "rerun")
    [link] = span.links
    assert (trace_of_link(link), format_span_id(link.context.span_id)) == (SENDER_TRACE, steady.span_id)
    assert rerun.traceparent is not None and trace_of(span) in rerun.traceparent
    assert rerun.span_id not in (None, steady.span_id)


async def test_cancel_writes_the_run_span_with_its_final_status(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
    telemetry: Telemetry,
    exporter: InMemorySpanExporter,
) -> None:
    response, store, _, clock = await deliver(
        load_config, open_store, client_for, telemetry, github_headers(PUSH)
    )
    service = Service(store, load_config(ROUTES, TASKS), clock=clock, telemetry=telemetry)
    [steady] = [
        r for r in await store.reads.runs_for_event(response.json()["event_id"]) if r.task_id == "steady"
    ]
    await service.cancel(steady.id)
    [run] = named(exporter.get_finished_spans(), "run steady")
    assert span_id(run) == steady.span_id
    assert run.attributes is not None and run.attributes["gateway.run.status"] == "canceled"
    assert run.status.status_code is StatusCode.ERROR


def trace_of_link(link: Any) -> str:
    return format_trace_id(link.context.trace_id)


class Refusing(SpanExporter):
    """A collector that is down: every export fails."""

    def __init__(self, raises: bool) -> None:
        self.raises = raises

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.raises:
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


@pytest.mark.parametrize("raises", [False, True])
def test_a_failed_export_is_counted_and_logged_once_never_raised(
    raises: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.tracing")
    lost: list[int] = []
    exporter = _reporting(Refusing(raises), "http://127.0.0.1:9/v1/traces", lost.append)
    assert exporter.export([]) is SpanExportResult.FAILURE
    assert exporter.export([]) is SpanExportResult.FAILURE
    assert lost == [0, 0]
    [warning] = caplog.messages  # the second failure within a minute is counted, not logged again
    problem = "ConnectionRefusedError: [Errno 111] Connection refused" if raises else "the collector refused"
    assert warning.startswith(
        "traces: could not export 0 span(s) to http://127.0.0.1:9/v1/traces (" + problem
    )
    assert warning.endswith("Ingest and runs are not affected")


async def test_a_trigger_continues_the_callers_trace(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    telemetry: Telemetry,
    exporter: InMemorySpanExporter,
) -> None:
    store = await open_store()
    service = Service(store, load_config(ROUTES, TASKS), clock=Clock(), telemetry=telemetry)
    headers = Headers([("traceparent", TRACEPARENT)])
    outcome = await service.trigger(
        "steady", b'{"payload": {"n": 1}}', headers, idempotency_key=None, requested_by="ci"
    )
    [span] = named(exporter.get_finished_spans(), "trigger steady")
    assert (trace_of(span), parent_id(span)) == (SENDER_TRACE, SENDER_SPAN)
    [run] = outcome.runs
    assert run.traceparent is not None and run.traceparent.startswith(f"00-{SENDER_TRACE}-{span_id(span)}-")
    event = await store.reads.get_event(outcome.event_id)
    assert event is not None and event.traceparent == run.traceparent

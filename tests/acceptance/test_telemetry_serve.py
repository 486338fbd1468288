"""Traces and logs of a running `gateway serve`: one trace per webhook through a real OTLP/HTTP collector, a
collector that refuses connections costs the sender nothing, and no secret ever reaches the log."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.support.deliveries import SOURCES, signature_headers
from tests.support.process import Gateway, free_port

pytestmark = pytest.mark.acceptance

FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_EXPORTER_OTLP_TIMEOUT": "2"}
GH_SECRET = "gh-acceptance-9c41d7e2b8f05a63"
ACME_SECRET = "acme-acceptance-5e8b20f4c7d1a96e"
ADMIN_SECRET = "admin-acceptance-3f7a1c9e5b2d4086e1f7"  # 38 bytes: long enough for HS256

TASKS = """
import logging, os
from gateway import task

@task(id="good")
async def good(payload, ctx):
    with ctx.span("inner", step="one"):
        return {"ok": True}

@task(id="flaky", retry={"max_attempts": 2, "min_timeout": 0.05, "max_timeout": 0.05, "jitter": False})
async def flaky(payload, ctx):
    if ctx.attempt == 1:
        raise ConnectionError("upstream unavailable on attempt 1")
    return "second time lucky"

@task(id="careless", retry={"max_attempts": 1})
async def careless(payload, ctx):
    secret = os.environ["GH_SECRET"]
    logging.getLogger("tasks").error("secret is %s", secret)
    raise RuntimeError(f"failed with {os.environ['GH_SECRET']}")
"""

ROUTES = """
tasks: [{module}]
sources:
  github:
    verify: github
    secret: ${GH_SECRET}
  acme:
    verify: {scheme: hmac, header: X-Acme-Signature, algorithm: sha256, encoding: hex, prefix: "sha256="}
    secret: ${ACME_SECRET}
routes:
  - {id: good, source: github, event: push, task: good}
  - {id: flaky, source: github, event: push, task: flaky}
  - {id: careless, source: github, event: issues, task: careless}
  - {id: acme, source: acme, task: good}
"""


class Collector:
    """A fake OTLP/HTTP collector on 127.0.0.1: keeps every span POSTed to /v1/traces, answers 200."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        keep = self.keep

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                keep(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def keep(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.spans.extend(scope.spans)

    def received(self) -> list[Span]:
        with self.lock:
            return list(self.spans)


@pytest.fixture
def collector() -> Iterator[Collector]:
    made = Collector()
    made.thread.start()
    yield made
    made.server.shutdown()
    made.server.server_close()


def attrs(item: Span | Span.Event) -> dict[str, Any]:
    """The attributes of a span or span event, as plain values."""
    return {kv.key: getattr(kv.value, str(kv.value.WhichOneof("value"))) for kv in item.attributes}


def deliver(gw: Gateway, body: bytes, event: str = "push", **headers: str) -> httpx.Response:
    base = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": secrets.token_hex(8),
        "Content-Type": "application/json",
    }
    return httpx.post(f"{gw.url}/hooks/github", content=body, headers={**base, **headers})


def signed(gw: Gateway, body: bytes, event: str = "push", **headers: str) -> httpx.Response:
    return deliver(
        gw, body, event, **{**signature_headers(SOURCES["github"], body, secret=GH_SECRET), **headers}
    )


def wait_for(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def statuses(db: Path, answer: httpx.Response) -> list[str]:
    ids = [run["id"] for run in answer.json()["runs"]]
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [conn.execute("SELECT status FROM runs WHERE id = ?", (i,)).fetchone()[0] for i in ids]


def settled(db: Path, answer: httpx.Response, *final: str) -> Callable[[], bool]:
    return lambda: statuses(db, answer) == list(final)


def gateway_cli(cwd: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_one_webhook_makes_one_trace_that_continues_the_senders_traceparent(
    gateway: Callable[..., Gateway], collector: Collector
) -> None:
    env = {
        "GH_SECRET": GH_SECRET,
        "ACME_SECRET": ACME_SECRET,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
    }
    gw = gateway(ROUTES, TASKS, env={**env, **FAST_EXPORT, "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"})
    trace_id, sender_span = secrets.token_hex(16), secrets.token_hex(8)
    answer = signed(gw, b'{"ref": "refs/heads/main"}', traceparent=f"00-{trace_id}-{sender_span}-01")
    assert answer.status_code == 202, answer.text
    wait_for(settled(gw.db, answer, "completed", "completed"), "both runs to complete")
    # request + 2 runs + 1 good attempt + 2 flaky attempts + the task's own span
    spans = wait_for(lambda: len(s := collector.received()) >= 7 and s, "seven spans at the collector")
    assert len(spans) == 7, [s.name for s in spans]
    assert {s.trace_id.hex() for s in spans} == {trace_id}

    by_name: dict[str, list[Span]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    [request] = by_name["POST /hooks/github"]
    assert request.parent_span_id.hex() == sender_span
    assert request.kind == Span.SPAN_KIND_SERVER
    assert attrs(request)["http.response.status_code"] == 202
    assert attrs(request)["gateway.event.id"] == answer.json()["event_id"]

    [good_run], [flaky_run] = by_name["run good"], by_name["run flaky"]
    for run in (good_run, flaky_run):
        assert run.parent_span_id == request.span_id
        assert attrs(run)["gateway.run.status"] == "completed"
    [good_attempt] = by_name["attempt good"]
    assert good_attempt.parent_span_id == good_run.span_id
    [inner] = by_name["inner"]
    assert inner.parent_span_id == good_attempt.span_id
    assert attrs(inner)["step"] == "one"

    first, second = sorted(by_name["attempt flaky"], key=lambda s: attrs(s)["gateway.attempt"])
    assert [attrs(s)["gateway.attempt"] for s in (first, second)] == [1, 2]
    assert first.parent_span_id == second.parent_span_id == flaky_run.span_id
    assert first.kind == second.kind == Span.SPAN_KIND_CONSUMER
    assert first.status.code == Status.STATUS_CODE_ERROR
    [exception] = first.events
    assert exception.name == "exception"
    assert attrs(exception)["exception.type"] == "ConnectionError"
    assert attrs(exception)["exception.message"] == "upstream unavailable on attempt 1"
    # A successful attempt leaves its status unset, as OpenTelemetry asks of instrumentation: not an error.
    assert second.status.code == Status.STATUS_CODE_UNSET and not second.events

    shown = gateway_cli(gw.db.parent, "show", answer.json()["event_id"], "--db", str(gw.db))
    assert f"trace        {trace_id}" in shown.splitlines()

    # Without a traceparent the gateway starts a fresh trace: its request span is a root.
    fresh = signed(gw, b'{"ref": "refs/heads/dev"}')
    assert fresh.status_code == 202, fresh.text

    def fresh_request() -> list[Span]:
        event_id = fresh.json()["event_id"]
        return [
            s
            for s in collector.received()
            if s.name == "POST /hooks/github" and attrs(s)["gateway.event.id"] == event_id
        ]

    [root] = wait_for(fresh_request, "the second request's span")
    assert root.parent_span_id == b""
    assert root.trace_id.hex() != trace_id


def test_a_collector_that_refuses_connections_changes_nothing_the_sender_sees(
    gateway: Callable[..., Gateway],
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    env = {"GH_SECRET": GH_SECRET, "ACME_SECRET": ACME_SECRET, "OTEL_EXPORTER_OTLP_ENDPOINT": nobody}
    gw = gateway(ROUTES, TASKS, env={**env, **FAST_EXPORT})
    answers = [
        signed(gw, b'{"n": %d}' % n, traceparent=f"00-{secrets.token_hex(16)}-{'ab' * 8}-01")
        for n in range(3)
    ]
    assert [a.status_code for a in answers] == [202] * 3
    for answer in answers:
        wait_for(settled(gw.db, answer, "completed", "completed"), "the runs to complete")
    wait_for(lambda: "traces: could not export" in gw.log.read_text(), "the export warning")
    assert f"span(s) to {nobody} (OTLP)" in gw.log.read_text()

    scraped = httpx.get(f"{gw.url}/metrics").text
    found = re.search(r"^gateway_trace_export_failures_total (\S+)$", scraped, re.MULTILINE)
    assert found is not None, scraped
    assert float(found.group(1)) > 0

    gw.signal(signal.SIGTERM)
    assert gw.wait(timeout=20) == 0  # a deadline for a hang, not a speed assertion


def test_no_secret_token_or_signature_reaches_the_json_log(
    gateway: Callable[..., Gateway], collector: Collector, tmp_path: Path
) -> None:
    env = {
        "GH_SECRET": GH_SECRET,
        "ACME_SECRET": ACME_SECRET,
        "GATEWAY_ADMIN_SECRET": ADMIN_SECRET,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
    }
    gw = gateway(ROUTES, TASKS, args=["--log-format", "json"], env={**env, **FAST_EXPORT})
    sent: list[str] = []  # every signature header value that went out, good or bad

    def send(
        body: bytes, event: str = "push", *, secret: str | None = GH_SECRET, **headers: str
    ) -> httpx.Response:
        if secret is not None:
            sent.append(signature_headers(SOURCES["github"], body, secret=secret)["X-Hub-Signature-256"])
            headers["X-Hub-Signature-256"] = sent[-1]
        return deliver(gw, body, event, **headers)

    trace_id = secrets.token_hex(16)
    accepted = [
        send(b'{"n": 1}', traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-01"),
        send(b'{"n": 2}'),
    ]
    careless = send(b'{"action": "opened"}', "issues")
    bad = send(b'{"n": 3}', secret="not-the-configured-secret")
    missing = send(b'{"n": 4}', secret=None)
    acme_body = b'{"kind": "acme"}'
    sent.append(signature_headers(SOURCES["acme"], acme_body, secret=ACME_SECRET)["X-Acme-Signature"])
    acme = httpx.post(f"{gw.url}/hooks/acme", content=acme_body, headers={"X-Acme-Signature": sent[-1]})
    accepted += [careless, acme]
    assert [a.status_code for a in accepted] == [202] * 4
    assert (bad.status_code, bad.json()["error"]) == (401, "bad_signature")
    assert (missing.status_code, missing.json()["error"]) == (401, "missing_signature")

    read_scope = ["token", "create", "--ttl", "10m", "--scope", "read"]
    bearer = gateway_cli(tmp_path, *read_scope, env={"GATEWAY_ADMIN_SECRET": ADMIN_SECRET}).strip()
    listing = httpx.get(f"{gw.url}/api/events", headers={"Authorization": f"Bearer {bearer}"})
    assert listing.status_code == 200, listing.text
    for answer in accepted:
        final = "failed" if answer is careless else "completed"
        wait_for(settled(gw.db, answer, *[final] * len(answer.json()["runs"])), "the runs to end")
    gw.signal(signal.SIGTERM)
    assert gw.wait(timeout=20) == 0

    text = gw.log.read_text()
    hidden = {"github secret": GH_SECRET, "acme secret": ACME_SECRET, "admin secret": ADMIN_SECRET}
    hidden |= {"token": bearer, **{f"signature {n}": s.removeprefix("sha256=") for n, s in enumerate(sent)}}
    assert [name for name, value in hidden.items() if value in text] == []
    # Nor in the spans the collector received, nor in what the database keeps of the careless failure.
    exported = "\n".join(str(span) for span in collector.spans)
    assert [name for name, value in hidden.items() if value in exported] == []
    assert "failed with [redacted]" in exported
    with contextlib.closing(sqlite3.connect(f"file:{gw.db}?mode=ro", uri=True)) as db:
        kept = "\n".join(
            str(row) for row in db.execute("SELECT error_message, traceback, logs FROM attempts")
        )
        kept += "\n".join(str(row) for row in db.execute("SELECT error FROM runs"))
    assert [name for name, value in hidden.items() if value in kept] == []
    assert "failed with [redacted]" in kept
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    # The careless task's own line and its run's failure were logged, with the secret replaced.
    assert {"logger": "tasks", "message": "secret is [redacted]"}.items() <= next(
        line for line in lines if line["logger"] == "tasks"
    ).items()
    assert any(line["logger"] == "gateway.run" and line.get("status") == "failed" for line in lines)

    requests = [line for line in lines if line["logger"] == "gateway.request"]
    by_event = {line["event_id"]: line for line in requests if line["outcome"] == "accepted"}
    assert set(by_event) == {a.json()["event_id"] for a in accepted}
    assert all(re.fullmatch("[0-9a-f]{32}", line["trace_id"]) for line in by_event.values())
    assert by_event[accepted[0].json()["event_id"]]["trace_id"] == trace_id
    rejected = sorted(line["reason"] for line in requests if line["status"] == 401)
    assert rejected == ["bad_signature", "missing_signature"]

"""/metrics end to end in process: a real app, store, executor and service share one Telemetry, and every
scrape is read back with prometheus_client's own text parser."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.errors import Invalid, StoreError
from gateway.execution.executor import Executor
from gateway.model import Secret
from gateway.records.service import Service
from gateway.report import Gauges
from gateway.routes.load import Config
from gateway.server import gauge_reader
from gateway.store.sqlite.store import SQLiteStore
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.tracing import Tracing
from gateway.web.app import create_app, create_metrics_app
from tests.support.clock import NOW, Clock
from tests.support.deliveries import PUSH, acme_headers, github_headers
from tests.support.routes import ROUTES
from tests.support.stores import FailingStore

# The shared tasks (tests/support/routes.py), except that deploy-preview fails for good when the sha is "bad".
FLAKY_TASKS = """
from gateway import task

@task(id="deploy-preview", retry={"max_attempts": 1})
async def deploy_preview(payload, ctx):
    if payload["sha"] == "bad":
        raise RuntimeError("deploy failed")
    return payload

@task(id="record-payment")
async def record_payment(payload, ctx):
    return payload

@task(id="sync-subscription")
def sync_subscription(payload, ctx):
    return payload
"""

Labels = tuple[tuple[str, str], ...]


class Scrape:
    """One /metrics answer, parsed: the value of every sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples = [
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def series(self, name: str) -> dict[Labels, float]:
        return {labels: v for n, labels, v in self.samples if n == name}

    def value(self, name: str, **labels: str) -> float | None:
        """The sample with exactly these labels, or None when that series does not exist."""
        return self.series(name).get(key(**labels))


def key(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


async def scrape(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> Scrape:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain;")
    return Scrape(response.text)


def push(sha: str) -> bytes:
    return json.dumps({"ref": "refs/heads/main", "after": sha, "repository": {"full_name": "o/r"}}).encode()


def budgets(config: Config) -> dict[str, float]:
    """As gateway/server.py builds them: every source whose sender's timeout is known."""
    return {s.name: s.sender_timeout for s in config.sources.values() if s.sender_timeout is not None}


@dataclass
class Gateway:
    client: httpx.AsyncClient
    store: SQLiteStore
    executor: Executor
    telemetry: Telemetry
    config: Config


@pytest.fixture
async def gateway(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> Callable[..., Awaitable[Gateway]]:
    """The pieces wired as gateway/server.py's _serve wires them, on a fixed clock."""

    clock = Clock(NOW)

    async def make(store_cls: type[SQLiteStore] = SQLiteStore) -> Gateway:
        config = load_config(ROUTES, FLAKY_TASKS)
        telemetry = Telemetry(Tracing.off(), Metrics(budgets(config)))
        store = await open_store(cls=store_cls, on_batch=telemetry.committed)
        executor = Executor(store.runs, config.tasks, clock=clock, telemetry=telemetry)

        gauges = gauge_reader(config, store.reads, executor, clock)
        client = await client_for(config, store, clock=clock, telemetry=telemetry, gauges=gauges)
        return Gateway(client, store, executor, telemetry, config)

    return make


async def test_a_scripted_mix_of_requests_and_runs_is_counted_exactly(
    gateway: Callable[..., Awaitable[Gateway]],
) -> None:
    gw = await gateway()
    client = gw.client
    for i, sha in enumerate(["good1", "good2", "bad"]):
        body = push(sha)
        accepted = await client.post(
            "/hooks/github", content=body, headers=github_headers(body, delivery=f"d{i}")
        )
        assert accepted.status_code == 202
    again = await client.post(
        "/hooks/github", content=push("good1"), headers=github_headers(push("good1"), delivery="d0")
    )
    assert again.status_code == 200
    forged = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH, secret="wrong"))
    unsigned = await client.post("/hooks/github", content=PUSH, headers={"X-GitHub-Event": "push"})
    big = b"x" * 2048  # acme's max_body is 1KiB
    too_large = await client.post("/hooks/acme", content=big, headers=acme_headers(big, "a-1"))
    unknown = await client.post("/hooks/nope", content=b"{}")
    wrong_method = await client.get("/hooks/github")
    answered = [forged, unsigned, too_large, unknown, wrong_method]
    assert [r.status_code for r in answered] == [401, 401, 413, 404, 405]

    before = await scrape(client)
    # Each push made one run per route; a task's runs wait in a queue named after it unless it names one.
    assert before.series("gateway_queue_depth") == {
        key(queue="deploy-preview"): 3,
        key(queue="record-payment"): 3,
        key(queue="sync-subscription"): 0,  # a known queue with nothing waiting reads 0, not "no data"
    }
    assert set(before.series("gateway_queue_oldest_ready_age_seconds").values()) == {0}  # ready at NOW
    assert before.series("gateway_runs_total") == {}

    assert await gw.executor.run_once() == 6
    after = await scrape(client)
    assert after.series("gateway_runs_total") == {
        key(task="deploy-preview", status="completed"): 2,
        key(task="deploy-preview", status="failed"): 1,
        key(task="record-payment", status="completed"): 3,
    }
    assert after.series("gateway_attempts_total") == {
        key(task="deploy-preview", outcome="completed"): 2,
        key(task="deploy-preview", outcome="failed"): 1,
        key(task="record-payment", outcome="completed"): 3,
    }
    assert after.series("gateway_attempt_duration_seconds_count") == {
        key(task="deploy-preview"): 3,
        key(task="record-payment"): 3,
    }
    # A drained queue has no waiting runs on disk, so its series disappears rather than reading 0.
    assert set(after.series("gateway_queue_depth").values()) == {0}
    assert len(after.series("gateway_queue_depth")) == 3
    assert after.value("gateway_executor_slots") == 100
    assert after.value("gateway_executor_slots_busy") == 0
    commits = after.value("gateway_commit_batch_size_count")
    assert commits is not None and commits >= 1
    assert after.value("gateway_commit_failures_total") == 0

    assert after.series("gateway_requests_total") == {
        key(source="github", outcome="accepted", reason=""): 3,
        key(source="github", outcome="duplicate", reason=""): 1,
        key(source="github", outcome="rejected", reason="bad_signature"): 1,
        key(source="github", outcome="rejected", reason="missing_signature"): 1,
        key(source="github", outcome="method_not_allowed", reason=""): 1,
        key(source="acme", outcome="too_large", reason="too_large"): 1,
        key(source="", outcome="unknown_source", reason=""): 1,
    }
    assert after.series("gateway_ack_seconds_count") == {key(source="github"): 7, key(source="acme"): 1}
    # github's sender waits 10 s: every in-process answer is within 10 % of it, none over it.
    assert after.value("gateway_sender_timeout_seconds", source="github") == 10
    within = [
        after.value("gateway_acks_within_budget_total", source="github", fraction=f)
        for f in ("0.1", "0.5", "1")
    ]
    assert within == [7, 7, 7]
    assert after.value("gateway_acks_over_budget_total", source="github") == 0
    # Budgeted sources without traffic are present at 0; acme (a custom hmac scheme) has no budget at all.
    assert after.value("gateway_acks_within_budget_total", source="stripe", fraction="1") == 0
    assert after.value("gateway_acks_over_budget_total", source="acme") is None
    assert after.value("gateway_sender_timeout_seconds", source="acme") is None


async def test_a_store_that_cannot_commit_is_counted_as_store_unavailable(
    gateway: Callable[..., Awaitable[Gateway]],
) -> None:
    gw = await gateway(store_cls=FailingStore)
    assert isinstance(gw.store, FailingStore)
    gw.store.failing = True
    response = await gw.client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH))
    assert (response.status_code, response.json()["error"]) == (503, "store_unavailable")

    scraped = await scrape(gw.client)
    assert scraped.series("gateway_requests_total") == {
        key(source="github", outcome="store_unavailable", reason="store_unavailable"): 1
    }
    failures = scraped.value("gateway_commit_failures_total")
    assert failures is not None and failures >= 1


async def test_metrics_are_not_served_when_telemetry_has_none(
    load_config: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    async def gauges() -> Gauges:
        return Gauges(now=NOW)

    client = await client_for(load_config(), telemetry=Telemetry(Tracing.off(), None), gauges=gauges)
    response = await client.get("/metrics")
    assert (response.status_code, response.json()["error"]) == (404, "unknown_source")


async def test_the_metrics_app_serves_metrics_alone() -> None:
    telemetry = Telemetry(Tracing.off(), Metrics(process=False))

    async def gauges() -> Gauges:
        return Gauges(now=NOW, slots=7)

    app = create_metrics_app(telemetry, gauges)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test") as client:
        assert (await scrape(client)).value("gateway_executor_slots") == 7
        assert (await client.post("/hooks/github", content=PUSH)).status_code == 404  # no hooks here
        assert (await client.get("/healthz")).status_code == 404


async def test_a_store_error_while_reading_gauges_still_answers_with_the_counters(
    load_config: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    telemetry = Telemetry(Tracing.off(), Metrics(process=False))

    async def gauges() -> Gauges:
        raise StoreError("database is locked")

    client = await client_for(load_config(), telemetry=telemetry, gauges=gauges)
    assert (await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH))).status_code == 202
    scraped = await scrape(client)
    assert scraped.value("gateway_requests_total", source="github", outcome="accepted", reason="") == 1
    assert scraped.series("gateway_queue_depth") == {}
    assert scraped.series("gateway_queue_oldest_ready_age_seconds") == {}


async def test_a_source_served_at_metrics_is_refused_when_metrics_are_on(
    load_config: Callable[..., Any], open_store: Callable[..., Any]
) -> None:
    config = load_config(
        ROUTES.replace("  open:\n    verify: none", "  open:\n    verify: none\n    path: /metrics")
    )
    store = await open_store()
    telemetry = Telemetry(Tracing.off(), Metrics(process=False))

    async def gauges() -> Gauges:
        return Gauges(now=NOW)

    with pytest.raises(Invalid) as info:
        create_app(config, store, telemetry=telemetry, gauges=gauges)
    assert str(info.value) == (
        "source open is served at /metrics, under the gateway's /metrics: give it another path:, "
        "or serve /metrics on its own port (--metrics-port)"
    )
    create_app(config, store)  # without metrics the path is the source's to use


async def test_a_canceled_run_is_counted(gateway: Callable[..., Awaitable[Gateway]]) -> None:
    gw = await gateway()
    response = await gw.client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH))
    runs = {run["task"]: run["id"] for run in response.json()["runs"]}
    service = Service(gw.store, gw.config, telemetry=gw.telemetry)
    canceled = await service.cancel(runs["record-payment"])
    assert canceled.status == "canceled"

    scraped = await scrape(gw.client)
    assert scraped.series("gateway_runs_total") == {key(task="record-payment", status="canceled"): 1}
    assert scraped.series("gateway_queue_depth") == {
        key(queue="deploy-preview"): 1,  # still waiting
        key(queue="record-payment"): 0,
        key(queue="sync-subscription"): 0,
    }


async def test_with_a_metrics_token_a_scrape_needs_it_as_a_bearer_token(
    load_config: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    telemetry = Telemetry(Tracing.off(), Metrics(process=False))

    async def gauges() -> Gauges:
        return Gauges(now=NOW)

    token = Secret("scrape-token-0123456789")
    client = await client_for(load_config(), telemetry=telemetry, gauges=gauges, metrics_token=token)
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "scrape-token-0123456789"},
    ):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert "scrape-token" not in refused.text
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong-token"})).json() == {
        "error": "bad_token",
        "detail": "this is not the scrape token (GATEWAY_METRICS_TOKEN)",
    }
    scraped = await scrape(client, headers={"Authorization": "Bearer scrape-token-0123456789"})
    assert scraped.value("gateway_build_info", version="") == 1

"""The sample routes.yaml and tasks/ work end to end: signed sample deliveries become completed runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import stripe

from gateway.execution.executor import Executor, ExecutorOptions
from gateway.routes import load as config_mod
from tests.support.deliveries import signature_headers
from tests.support.repo import REPO

SAMPLES = REPO / "docs" / "samples"


async def test_every_sample_route_runs_to_completion(
    open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    config = config_mod.load(REPO / "routes.yaml", {})
    store = await open_store()
    client = await client_for(config, store)

    push = (SAMPLES / "push.json").read_bytes()
    issue = json.dumps(
        {
            "action": "opened",
            "issue": {"number": 7, "title": "Crash: a bug"},
            "repository": {"full_name": "octo-org/hello-world"},
        }
    ).encode()
    invoice = (SAMPLES / "invoice.json").read_bytes()
    billing = b'{"type": "subscription.renewed", "data": {"id": "sub_1"}}'
    order = b'{"event": "order.created", "order": "ord_1"}'
    flaky = (SAMPLES / "flaky.json").read_bytes()

    def github(body: bytes, event: str, delivery: str) -> dict[str, str]:
        return {
            **signature_headers(config.sources["github"], body),
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "Content-Type": "application/json",
        }

    def signed(source: str, body: bytes) -> dict[str, str]:
        return {**signature_headers(config.sources[source], body), "Content-Type": "application/json"}

    deliveries = [
        ("/hooks/github", push, github(push, "push", "d-push")),
        ("/hooks/github", issue, github(issue, "issues", "d-issue")),
        (
            "/hooks/stripe",
            invoice,
            {
                "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
                    invoice.decode(), "whsec_dev_stripe_secret"
                ),
                "Content-Type": "application/json",
            },
        ),
        ("/hooks/billing", billing, signed("billing", billing)),
        ("/hooks/acme", order, {**signed("acme", order), "X-Acme-Delivery": "o-1"}),
        ("/hooks/acme", flaky, {**signed("acme", flaky), "X-Acme-Delivery": "f-1"}),
    ]
    tasks = []
    for path, body, headers in deliveries:
        response = await client.post(path, content=body, headers=headers)
        assert response.status_code == 202, (path, response.text)
        tasks += [run["task"] for run in response.json()["runs"]]
    assert sorted(tasks) == [
        "deploy-preview",
        "flaky-demo",
        "record-payment",
        "sync-subscription",
        "sync-subscription",
        "triage-issue",
    ]

    executor = Executor(store.runs, config.tasks, ExecutorOptions(), rand=lambda: 0.0)
    await executor.run_once()
    runs = await store.reads.runs_page(limit=50)
    by_task = {r.task_id: r for r in runs}
    assert {r.status for r in runs if r.task_id != "flaky-demo"} == {"completed"}
    assert by_task["deploy-preview"].output["sha"] == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert by_task["triage-issue"].output["labels"] == ["bug"]
    assert by_task["record-payment"].output == {
        "invoice": "in_1NG8Dt2eZvKYlo2C",
        "amount": 2000,
        "currency": "usd",
    }
    assert by_task["flaky-demo"].status == "retrying"  # it fails its first attempts on purpose

"""The ingest contract, end to end in process: real app, real SQLite file, real signatures."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import standardwebhooks
import stripe

from tests.support.deliveries import PUSH, acme_headers, github_headers
from tests.support.stores import FailingStore

INVOICE = json.dumps({"id": "evt_1", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}}).encode()


async def test_a_signed_github_push_is_stored_with_its_runs_before_202(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(), store)
    response = await client.post("/hooks/github?via=test", content=PUSH, headers=github_headers(PUSH))
    assert response.status_code == 202
    answer = response.json()
    assert [run["task"] for run in answer["runs"]] == ["deploy-preview", "record-payment"]

    event = await store.reads.get_event(answer["event_id"])
    assert event is not None
    assert event.body == PUSH  # the exact bytes
    assert (event.source, event.event_type, event.dedupe_key) == ("github", "push", "d-1")
    assert event.verification == "verified:github"
    assert event.query == (("via", "test"),)
    assert event.headers["x-github-event"] == "push"
    assert event.payload.data["repository"] == {"full_name": "o/r"}
    runs = await store.reads.runs_for_event(event.id)
    assert sorted((r.id, r.task_id, r.status) for r in runs) == sorted(
        (r["id"], r["task"], "queued") for r in answer["runs"]
    )
    assert next(r for r in runs if r.task_id == "deploy-preview").input == {"repo": "o/r", "sha": "abc123"}


async def test_a_duplicate_answers_200_with_the_original_id_and_creates_no_runs(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(), store)
    first = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH))
    again = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH))
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {"event_id": first.json()["event_id"], "runs": [], "duplicate": True}
    assert len(await store.reads.events_page()) == 1
    assert len(await store.reads.runs_for_event(first.json()["event_id"])) == 2


async def test_concurrent_duplicates_store_exactly_one_event(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(), store)
    responses = await asyncio.gather(
        *(client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH)) for _ in range(20))
    )
    assert sorted(r.status_code for r in responses) == [200] * 19 + [202]
    assert len({r.json()["event_id"] for r in responses}) == 1
    assert len(await store.reads.events_page()) == 1


async def test_stripe_deliveries_signed_by_the_stripe_sdk_are_accepted_with_either_secret(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(), store)
    for i, secret in enumerate(["whsec_new_stripe_secret", "whsec_old_stripe_secret"]):
        body = INVOICE.replace(b"evt_1", f"evt_{i}".encode())
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
        response = await client.post(
            "/hooks/stripe",
            content=body,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text
        assert [r["task"] for r in response.json()["runs"]] == ["record-payment"]
        event = await store.reads.get_event(response.json()["event_id"])
        assert event is not None
        assert event.verification == ["verified:stripe", "verified:stripe key=1"][i]  # which secret matched


async def test_a_stale_stripe_signature_is_refused_and_recorded(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(), store)
    header = stripe.WebhookSignature.generate_signature_header(
        INVOICE.decode(), "whsec_new_stripe_secret", timestamp=int(time.time()) - 301
    )
    response = await client.post("/hooks/stripe", content=INVOICE, headers={"Stripe-Signature": header})
    assert response.status_code == 401
    assert response.json()["error"] == "stale_timestamp"
    [rejection] = await store.reads.list_rejections()
    assert (rejection.source, rejection.reason, rejection.body_size) == (
        "stripe",
        "stale_timestamp",
        len(INVOICE),
    )
    assert rejection.body_prefix == INVOICE
    assert await store.reads.events_page() == []


async def test_standard_webhooks_signed_by_the_reference_library_are_accepted(
    load_config: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    client = await client_for(load_config())
    body = '{"type": "subscription.created", "data": {"id": 7}}'
    signer = standardwebhooks.Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign("msg_1", now, body),
        "content-type": "application/json",
    }
    response = await client.post("/hooks/billing", content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert [r["task"] for r in response.json()["runs"]] == ["sync-subscription"]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_signature"),
        ({"X-Hub-Signature-256": "md5=abc"}, "malformed_signature"),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, "bad_signature"),
    ],
)
async def test_a_missing_malformed_or_wrong_signature_is_401_with_a_reason(
    load_config: Callable[..., Any], client_for: Callable[..., Any], headers: dict[str, str], reason: str
) -> None:
    client = await client_for(load_config())
    response = await client.post("/hooks/github", content=PUSH, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == reason
    assert set(response.json()) == {"error", "detail"}


async def test_a_tampered_body_is_refused(
    load_config: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    client = await client_for(load_config())
    tampered = PUSH.replace(b"abc123", b"evil00")
    response = await client.post("/hooks/github", content=tampered, headers=github_headers(PUSH))
    assert (response.status_code, response.json()["error"]) == (401, "bad_signature")


async def test_unknown_source_is_404_and_wrong_method_is_405(
    load_config: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    client = await client_for(load_config())
    missing = await client.post("/hooks/nope", content=b"{}")
    assert (missing.status_code, missing.json()["error"]) == (404, "unknown_source")
    wrong = await client.get("/hooks/github")
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")


async def test_a_body_over_the_cap_is_413_and_recorded_even_when_chunked(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(), store)
    big = b"x" * 2048  # acme's max_body is 1KiB
    declared = await client.post("/hooks/acme", content=big, headers=acme_headers(big, "a"))
    assert (declared.status_code, declared.json()["error"]) == (413, "too_large")

    async def chunks() -> Any:
        for _ in range(4):
            yield b"y" * 512

    chunked = await client.post("/hooks/acme", content=chunks(), headers={"X-Acme-Signature": "sha256=00"})
    assert chunked.status_code == 413
    chunked_rejection, declared_rejection = await store.reads.list_rejections()
    assert (chunked_rejection.reason, declared_rejection.reason) == ("too_large", "too_large")
    assert chunked_rejection.body_prefix == b"y" * 1024  # what was read before the cap, for debugging
    assert declared_rejection.body_prefix == b""  # refused on Content-Length alone, nothing read
    assert await store.reads.events_page() == []


async def test_a_form_body_is_stored_raw_and_parsed(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(), store)
    body = b"a=1&b=%C3%A9&b=2"
    response = await client.post(
        "/hooks/acme", content=body, headers=acme_headers(body, "f-1", "application/x-www-form-urlencoded")
    )
    assert response.status_code == 202
    event = await store.reads.get_event(response.json()["event_id"])
    assert event is not None
    assert (event.body, event.payload.kind, event.payload.data) == (body, "form", {"a": "1", "b": ["é", "2"]})


async def test_an_unrouted_event_is_still_stored(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(), store)
    response = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH, event="star"))
    assert (response.status_code, response.json()["runs"]) == (202, [])
    event = await store.reads.get_event(response.json()["event_id"])
    assert event is not None and event.status == "unrouted"


async def test_an_unverified_source_accepts_and_labels_events(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(), store)
    response = await client.post("/hooks/open", content=b"{}")
    assert response.status_code == 202
    event = await store.reads.get_event(response.json()["event_id"])
    assert event is not None and event.verification == "unverified"


async def test_a_store_that_cannot_commit_answers_503_never_2xx_and_recovers(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store(cls=FailingStore)
    client = await client_for(load_config(), store)
    store.failing = True
    response = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH))
    assert (response.status_code, response.headers["retry-after"]) == (503, "5")
    assert response.json()["error"] == "store_unavailable"
    assert (await client.get("/readyz")).status_code == 503
    assert (await client.get("/healthz")).status_code == 200
    assert await store.reads.events_page() == []

    store.failing = False
    retried = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH))
    assert retried.status_code == 202
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_health_endpoints(load_config: Callable[..., Any], client_for: Callable[..., Any]) -> None:
    client = await client_for(load_config())
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_error_answers_never_contain_the_secret(
    load_config: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    client = await client_for(load_config())
    for headers in ({}, {"X-Hub-Signature-256": "sha256=zz"}, github_headers(PUSH, secret="wrong")):
        response = await client.post("/hooks/github", content=PUSH, headers=headers)
        assert "gh-secret" not in response.text


async def test_many_concurrent_deliveries_share_commits(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(), store)
    bodies = [PUSH.replace(b"abc123", f"{i:06d}".encode()) for i in range(100)]
    responses = await asyncio.gather(
        *(
            client.post("/hooks/github", content=b, headers=github_headers(b, delivery=f"d{i}"))
            for i, b in enumerate(bodies)
        )
    )
    assert {r.status_code for r in responses} == {202}
    assert len(await store.reads.events_page(limit=500)) == 100
    assert store.stats.commits < 100  # group commit: fewer fsyncs than requests

"""Rejected deliveries verified again once their secret is fixed, on the real app and a real SQLite file:
stored and routed once, forgeries still rejected with their reason, freshness judged when the request came,
duplicates of a retry stored meanwhile, no credential ever on disk, and a remote-key delivery checked with the
key the keyring fetches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from gateway.keys.keyring import Keyring
from gateway.model import UNVERIFIABLE, Rejection
from gateway.records.recovery import DUPLICATE, PASSES, REJECTED, STORED, UNAVAILABLE
from gateway.records.service import Service
from gateway.routes.load import Config
from gateway.store.sqlite.store import SQLiteStore
from tests.support.clock import HOUR, NOW, Clock
from tests.support.database import elsewhere
from tests.support.deliveries import PUSH, signature_headers, sources_of
from tests.support.keys import PLAID_BODY, PLAID_IAT, PLAID_JWK, PLAID_TOKEN

pytestmark = pytest.mark.both_stores

OpenStore = Callable[..., Any]
ClientFor = Callable[..., Any]
LoadConfig = Callable[..., Config]

ROUTES = """
tasks: [{module}]
sources:
  github: {verify: github, secret: GITHUB}
  stripe: {verify: stripe, secret: STRIPE}
  ops: {verify: basic, secret: "ops:OPS"}
routes:
  - id: deploy-on-push
    source: github
    event: push
    task: deploy-preview
  - id: paid-invoices
    source: stripe
    task: record-payment
"""
GITHUB, STRIPE, OPS = "gh-real-secret", "whsec_the_rotated_stripe_secret", "s3cret-passw0rd"
MISTYPED = ROUTES.replace("GITHUB", "gh-mistyped").replace("STRIPE", "whsec_the_old_stripe_secret")
FIXED = ROUTES.replace("GITHUB", GITHUB).replace("STRIPE", STRIPE)
INVOICE = b'{"id": "evt_1", "type": "invoice.paid"}'


SOURCES = sources_of(FIXED)  # as the fixed routes.yaml builds them: what the senders sign for


def github(secret: str = GITHUB, delivery: str = "d-1") -> dict[str, str]:
    """A push from GitHub, signed with ``secret`` (the real one by default)."""
    return {
        **signature_headers(SOURCES["github"], PUSH, secret=secret),
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": "push",
        "Content-Type": "application/json",
    }


def stripe(at: float, secret: str = STRIPE) -> dict[str, str]:
    """An invoice from Stripe, signed with ``secret`` at ``at``."""
    signed = signature_headers(SOURCES["stripe"], INVOICE, secret=secret, now=at)
    return {**signed, "Content-Type": "application/json"}


async def rejections(store: SQLiteStore) -> list[Rejection]:
    return sorted(await store.reads.list_rejections(), key=lambda r: r.id or 0)


async def the_gateway(
    client_for: ClientFor, load_config: LoadConfig, store: SQLiteStore, clock: Clock, routes: str
) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await client_for(load_config(routes), store, clock=clock)
    return client


async def test_a_delivery_signed_with_a_new_secret_is_stored_and_routed_once_after_the_secret_is_fixed(
    client_for: ClientFor, load_config: LoadConfig, open_store: OpenStore
) -> None:
    store, clock = await open_store(), Clock()
    mistyped = await the_gateway(client_for, load_config, store, clock, MISTYPED)
    refused = await mistyped.post("/hooks/github", content=PUSH, headers=github())
    assert (refused.status_code, refused.json()["error"]) == (401, "bad_signature")
    [rejection] = await rejections(store)
    assert rejection.kept > 0 and rejection.request is None  # kept; a listing leaves the request out

    clock.advance(2 * HOUR)  # someone notices, fixes routes.yaml
    service = Service(store, load_config(FIXED), clock=clock)
    recovered = await service.recovery.one(rejection.id or 0, None)

    assert (recovered.outcome, recovered.detail) == (STORED, "verified:github")
    assert [r.task_id for r in recovered.runs] == ["deploy-preview"]
    event = await store.reads.get_event(recovered.event_id or "")
    assert event is not None and (event.body, event.verification, event.dedupe_key) == (
        PUSH,
        "verified:github",
        "d-1",
    )
    assert event.received_at == NOW + 2 * HOUR  # stored (and its runs queued) when it was recovered
    assert [r.status for r in await store.reads.runs_for_event(event.id)] == ["queued"]
    [marked] = await rejections(store)
    assert (marked.recovered_as, marked.recovery, marked.kept) == (event.id, STORED, 0)

    again = await service.recovery.one(rejection.id or 0, None)
    assert (again.outcome, again.reason, again.event_id) == (UNAVAILABLE, "recovered", event.id)
    # GitHub's own redelivery, now that the secret is right, is a duplicate: one push, one deploy.
    fixed = await the_gateway(client_for, load_config, store, clock, FIXED)
    retry = await fixed.post("/hooks/github", content=PUSH, headers=github())
    assert (retry.status_code, retry.json()["event_id"], retry.json()["duplicate"]) == (200, event.id, True)
    assert await store.reads.count_events() == 1


async def test_a_forged_delivery_stays_rejected_and_says_why(
    client_for: ClientFor, load_config: LoadConfig, open_store: OpenStore
) -> None:
    store, clock = await open_store(), Clock()
    fixed = await the_gateway(client_for, load_config, store, clock, FIXED)
    assert (await fixed.post("/hooks/github", content=PUSH, headers=github("attacker"))).status_code == 401
    [forged] = await rejections(store)
    service = Service(store, load_config(FIXED), clock=clock)

    tried = await service.recovery.one(forged.id or 0, None)

    assert (tried.outcome, tried.reason) == (REJECTED, "bad_signature")
    assert "no signature in X-Hub-Signature-256 matches the configured secret" in tried.detail
    assert await store.reads.count_events() == 0
    [still] = await rejections(store)
    assert still.kept == forged.kept and still.recovered_as is None  # kept for a later fix


async def test_freshness_is_judged_at_the_time_the_request_came_not_now(
    client_for: ClientFor, load_config: LoadConfig, open_store: OpenStore
) -> None:
    store, clock = await open_store(), Clock()
    mistyped = await the_gateway(client_for, load_config, store, clock, MISTYPED)
    fresh = await mistyped.post("/hooks/stripe", content=INVOICE, headers=stripe(at=NOW - 10))
    stale = await mistyped.post("/hooks/stripe", content=INVOICE, headers=stripe(at=NOW - HOUR))
    assert fresh.status_code == stale.status_code == 401
    fresh_one, stale_one = await rejections(store)

    clock.advance(3 * HOUR)  # far past stripe's 300 s tolerance
    service = Service(store, load_config(FIXED), clock=clock)
    stale_tried = await service.recovery.one(stale_one.id or 0, None)
    fresh_tried = await service.recovery.one(fresh_one.id or 0, None)

    assert (stale_tried.outcome, stale_tried.reason) == (REJECTED, "stale_timestamp")  # stale when it came
    assert (fresh_tried.outcome, [r.task_id for r in fresh_tried.runs]) == (STORED, ["record-payment"])


async def test_a_retry_stored_meanwhile_makes_the_recovery_a_duplicate_not_a_second_event(
    client_for: ClientFor, load_config: LoadConfig, open_store: OpenStore
) -> None:
    store, clock = await open_store(), Clock()
    mistyped = await the_gateway(client_for, load_config, store, clock, MISTYPED)
    assert (await mistyped.post("/hooks/github", content=PUSH, headers=github())).status_code == 401
    clock.advance(HOUR)
    fixed = await the_gateway(client_for, load_config, store, clock, FIXED)
    retried = (await fixed.post("/hooks/github", content=PUSH, headers=github())).json()
    [rejection] = await rejections(store)

    tried = await Service(store, load_config(FIXED), clock=clock).recovery.one(rejection.id or 0, None)

    assert (tried.outcome, tried.event_id, tried.runs) == (DUPLICATE, retried["event_id"], ())
    assert await store.reads.count_events() == 1
    [marked] = await rejections(store)
    assert (marked.recovered_as, marked.recovery) == (retried["event_id"], DUPLICATE)


async def test_a_dry_run_by_filter_verifies_every_kept_request_and_stores_nothing(
    client_for: ClientFor, load_config: LoadConfig, open_store: OpenStore
) -> None:
    store, clock = await open_store(), Clock()
    mistyped = await the_gateway(client_for, load_config, store, clock, MISTYPED)
    await mistyped.post("/hooks/github", content=PUSH, headers=github(delivery="d-1"))
    await mistyped.post("/hooks/github", content=PUSH, headers=github("attacker", delivery="d-2"))
    await mistyped.post("/hooks/stripe", content=INVOICE, headers=stripe(at=NOW))
    service = Service(store, load_config(FIXED), clock=clock)

    dry = [t async for t in service.recovery.kept(None, source="github", dry_run=True)]
    assert [(t.outcome, t.reason) for t in dry] == [(PASSES, None), (REJECTED, "bad_signature")]
    assert await store.reads.count_events() == 0
    real = [t async for t in service.recovery.kept(None)]
    assert [t.outcome for t in real] == [STORED, REJECTED, STORED]
    assert [t.outcome for t in [t async for t in service.recovery.kept(None)]] == [REJECTED]


async def test_no_credential_is_ever_stored_with_a_rejected_request(
    client_for: ClientFor, load_config: LoadConfig, open_store: OpenStore, tmp_path: Path
) -> None:
    store, clock = await open_store(), Clock()
    fixed = await the_gateway(client_for, load_config, store, clock, FIXED)
    # A proxy's bearer token and a cookie beside a bad Stripe signature; HTTP Basic with a wrong password.
    extra = {"Authorization": "Bearer proxy-token-123", "Cookie": "session=cookie-456"}
    bad_stripe = {**stripe(at=NOW, secret="whsec_x"), **extra}
    assert (await fixed.post("/hooks/stripe", content=INVOICE, headers=bad_stripe)).status_code == 401
    wrong = await fixed.post("/hooks/ops", content=b"{}", auth=("ops", "wrong-passw0rd-789"))
    assert wrong.status_code == 401, wrong.text
    stripe_one, ops_one = await rejections(store)

    kept = await store.reads.get_rejection(stripe_one.id or 0)
    assert kept is not None and kept.request is not None
    assert kept.request.headers["authorization"] == kept.request.headers["cookie"] == "[redacted]"
    assert (ops_one.kept, ops_one.dropped) == (0, UNVERIFIABLE)  # its credential was its whole check
    tried = await Service(store, load_config(FIXED), clock=clock).recovery.one(ops_one.id or 0, None)
    assert tried.outcome == UNAVAILABLE and "basic sends its credential in clear" in tried.detail
    on_disk = repr(elsewhere(store, "SELECT * FROM rejections"))
    for secret in ("proxy-token-123", "cookie-456", "wrong-passw0rd-789", "b3BzOndyb25n"):
        assert secret not in on_disk


PLAID_KEYS = "https://sandbox.plaid.com/webhook_verification_key/get"
PLAID_FIXED = """
tasks: [{module}]
sources:
  plaid: {verify: plaid, secret: plaid-secret-value, client_id: client-123, environment: sandbox}
routes:
  - {id: plaid, source: plaid, task: sync-subscription}
"""
PLAID_MISTAKEN = PLAID_FIXED.replace(
    "{verify: plaid, secret: plaid-secret-value, client_id: client-123, environment: sandbox}",
    "{verify: github, secret: not-plaid}",
)


async def test_a_remote_key_delivery_is_verified_again_with_the_fetched_key_and_its_iat_then(
    client_for: ClientFor, load_config: LoadConfig, open_store: OpenStore, router: respx.MockRouter
) -> None:
    store = await open_store()
    mistaken = await client_for(load_config(PLAID_MISTAKEN), store, clock=lambda: PLAID_IAT + 10)
    headers = {"Plaid-Verification": PLAID_TOKEN, "Content-Type": "application/json"}
    refused = await mistaken.post("/hooks/plaid", content=PLAID_BODY, headers=headers)
    assert (refused.status_code, refused.json()["error"]) == (401, "missing_signature")
    [rejection] = await rejections(store)
    route = router.post(PLAID_KEYS).mock(return_value=httpx.Response(200, json={"key": PLAID_JWK}))
    fixed = load_config(PLAID_FIXED)
    service = Service(store, fixed, clock=Clock(PLAID_IAT + 6 * HOUR))  # Plaid's iat allows 5 minutes
    keyring = Keyring(fixed.sources.values())
    try:
        without_keys = await service.recovery.one(rejection.id or 0, None, dry_run=True)
        tried = await service.recovery.one(rejection.id or 0, keyring.material)
    finally:
        await keyring.aclose()

    assert (without_keys.outcome, without_keys.reason) == (REJECTED, "key_unavailable")
    assert (tried.outcome, [r.task_id for r in tried.runs]) == (STORED, ["sync-subscription"])
    assert route.call_count == 1

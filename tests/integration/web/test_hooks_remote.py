"""Remote-key presets through the real app: Plaid, Pub/Sub push, PayPal and generic JWTs, keys faked by respx.

The acceptance suite cannot fake these providers' key endpoints across processes, so this is their end-to-end
coverage: real crypto with throwaway keys, a real store, the real Keyring and KeyCache.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.keys.keyring import GOOGLE_CERTS, Keyring
from tests.support.keys import (
    PAYPAL_BODY,
    PAYPAL_NOW,
    PLAID_BODY,
    PLAID_IAT,
    PLAID_JWK,
    PLAID_KID,
    PLAID_TOKEN,
    WEBHOOK_ID,
    Pki,
    hs256_by_hand,
    jwks,
    paypal_headers,
)
from tests.support.routes import REMOTE_ROUTES

PLAID_KEYS = "https://sandbox.plaid.com/webhook_verification_key/get"
JWKS_URL = "https://issuer.example/.well-known/jwks.json"
AUDIENCE = "https://hooks.example.com/hooks/pubsub"
ACCOUNT = "pusher@project.iam.gserviceaccount.com"
GOOGLE_KID = "f5f4bf46e52b31d9b6249f7309ad0338400680cd"
HS_SECRET = "a-shared-jwt-secret-of-at-least-32-bytes"
NOW = 1_750_000_000
CERT_URL = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"


@pytest.fixture
async def gateway(
    tmp_path: Path,
    pki: Pki,
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
) -> AsyncIterator[Callable[..., Any]]:
    """``await gateway(now)``: a client of the app whose clock reads ``now``, with a real Keyring (whose
    monotonic clock ``keys_clock`` can be given too)."""
    anchor = tmp_path / "paypal-root.pem"
    anchor.write_bytes(pki.anchor_pem)
    config = load_config(REMOTE_ROUTES.replace("ANCHOR", str(anchor)))
    keyrings: list[Keyring] = []

    async def make(now: float, keys_clock: Callable[[], float] = time.monotonic) -> httpx.AsyncClient:
        keyring = Keyring(config.sources.values(), clock=keys_clock)
        keyrings.append(keyring)
        client: httpx.AsyncClient = await client_for(
            config, await open_store(), clock=lambda: now, keyring=keyring
        )
        return client

    yield make
    for keyring in keyrings:
        await keyring.aclose()


# -- Plaid ------------------------------------------------------------------------------------------------


def plaid_keys(request: httpx.Request) -> httpx.Response:
    """Plaid's key endpoint as documented: the key for a known key_id, 400 otherwise."""
    asked = json.loads(request.content)
    if (asked["client_id"], asked["secret"]) != ("client-123", "plaid-secret-value"):
        return httpx.Response(400, json={"error_code": "INVALID_API_KEYS"})
    if asked["key_id"] != PLAID_KID:
        return httpx.Response(400, json={"error_code": "INVALID_WEBHOOK_VERIFICATION_KEY_ID"})
    return httpx.Response(200, json={"key": PLAID_JWK, "request_id": "req-1"})


async def post_plaid(
    client: httpx.AsyncClient, body: bytes = PLAID_BODY, token: str = PLAID_TOKEN
) -> httpx.Response:
    headers = {"Plaid-Verification": token, "Content-Type": "application/json"}
    return await client.post("/hooks/plaid", content=body, headers=headers)


async def test_genuine_plaid_delivery_is_accepted_with_the_fetched_key(
    gateway: Callable[..., Any], router: respx.MockRouter
) -> None:
    route = router.post(PLAID_KEYS).mock(side_effect=plaid_keys)
    client = await gateway(PLAID_IAT + 10)
    response = await post_plaid(client)
    assert response.status_code == 202, response.text
    assert len(response.json()["runs"]) == 1
    assert (await post_plaid(client)).status_code == 202  # no dedupe key: Plaid sends no delivery id
    assert route.call_count == 1  # the key is cached


async def test_tampered_plaid_body_is_rejected(gateway: Callable[..., Any], router: respx.MockRouter) -> None:
    router.post(PLAID_KEYS).mock(side_effect=plaid_keys)
    response = await post_plaid(await gateway(PLAID_IAT + 10), PLAID_BODY.replace(b"390", b"391"))
    assert (response.status_code, response.json()["detail"]) == (
        401,
        "request_body_sha256 does not match the body: the body was altered",
    )


async def test_stale_plaid_token_is_rejected(gateway: Callable[..., Any], router: respx.MockRouter) -> None:
    router.post(PLAID_KEYS).mock(side_effect=plaid_keys)
    response = await post_plaid(await gateway(PLAID_IAT + 301))
    assert (response.status_code, response.json()["error"]) == (401, "stale_timestamp")


async def test_plaid_key_endpoint_down_answers_503_so_plaid_retries(
    gateway: Callable[..., Any], router: respx.MockRouter
) -> None:
    router.post(PLAID_KEYS).mock(return_value=httpx.Response(500))
    response = await post_plaid(await gateway(PLAID_IAT + 10))
    assert (response.status_code, response.headers["Retry-After"]) == (503, "5")
    assert response.json() == {"error": "key_unavailable", "detail": f"{PLAID_KEYS} answered 500"}


async def test_plaid_token_naming_an_unknown_key_is_rejected(
    gateway: Callable[..., Any], router: respx.MockRouter
) -> None:
    router.post(PLAID_KEYS).mock(side_effect=plaid_keys)
    key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        {"iat": PLAID_IAT, "request_body_sha256": "00"}, key, algorithm="ES256", headers={"kid": "made-up"}
    )
    response = await post_plaid(await gateway(PLAID_IAT + 10), token=token)
    assert (response.status_code, response.json()["error"]) == (401, "unknown_key")


# -- Google Pub/Sub push ----------------------------------------------------------------------------------

PUSH = json.dumps(
    {
        "message": {"data": "aGVsbG8=", "messageId": "136969346945", "attributes": {"type": "order"}},
        "subscription": "projects/p/subscriptions/s",
    }
).encode()


def google_token(key: rsa.RSAPrivateKey, kid: str = GOOGLE_KID, **overrides: Any) -> str:
    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "email": ACCOUNT,
        "email_verified": True,
        "exp": NOW + 3600,
        "iat": NOW,
        "iss": "https://accounts.google.com",
        "sub": "1234567890",
        **overrides,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def post_pubsub(client: httpx.AsyncClient, token: str, body: bytes = PUSH) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return await client.post("/hooks/pubsub", content=body, headers=headers)


async def test_pubsub_push_with_a_google_signed_token_is_accepted_and_deduped(
    gateway: Callable[..., Any], router: respx.MockRouter, rsa_key: rsa.RSAPrivateKey
) -> None:
    router.get(GOOGLE_CERTS).mock(return_value=httpx.Response(200, json=jwks(rsa_key, GOOGLE_KID)))
    client = await gateway(NOW + 5)
    first = await post_pubsub(client, google_token(rsa_key))
    assert first.status_code == 202, first.text
    again = await post_pubsub(client, google_token(rsa_key))  # Pub/Sub redelivers with the same messageId
    assert (again.status_code, again.json()["duplicate"]) == (200, True)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "https://elsewhere.example/hook"}, "wrong_audience"),
        ({"email": "intruder@other.iam.gserviceaccount.com"}, "bad_token"),
        ({"iat": NOW - 7200, "exp": NOW - 3600}, "stale_timestamp"),
    ],
    ids=["wrong-audience", "wrong-service-account", "expired"],
)
async def test_pubsub_token_not_meant_for_this_source_is_rejected(
    gateway: Callable[..., Any],
    router: respx.MockRouter,
    rsa_key: rsa.RSAPrivateKey,
    claims: dict[str, Any],
    reason: str,
) -> None:
    router.get(GOOGLE_CERTS).mock(return_value=httpx.Response(200, json=jwks(rsa_key, GOOGLE_KID)))
    response = await post_pubsub(await gateway(NOW + 5), google_token(rsa_key, **claims))
    assert (response.status_code, response.json()["error"]) == (401, reason)


async def test_pubsub_key_rotated_in_since_the_last_fetch_is_found_by_refetching(
    gateway: Callable[..., Any], router: respx.MockRouter, rsa_key: rsa.RSAPrivateKey
) -> None:
    new_key = rsa.generate_private_key(65537, 2048)
    route = router.get(GOOGLE_CERTS).mock(
        side_effect=[
            httpx.Response(200, json=jwks(rsa_key, GOOGLE_KID)),
            httpx.Response(200, json=jwks(new_key, "rotated")),
        ]
    )
    ticks = [1000.0]
    client = await gateway(NOW + 5, keys_clock=lambda: ticks[0])
    assert (await post_pubsub(client, google_token(rsa_key))).status_code == 202
    rotated = google_token(new_key, kid="rotated")
    soon = await post_pubsub(client, rotated, PUSH.replace(b"945", b"946"))
    # Within a minute of the last fetch an unknown kid does not trigger another: made-up kids cost nothing.
    assert (soon.status_code, soon.json()["error"], route.call_count) == (401, "unknown_key", 1)
    ticks[0] += 61
    later = await post_pubsub(client, rotated, PUSH.replace(b"945", b"946"))
    assert (later.status_code, route.call_count) == (202, 2)


async def test_pubsub_without_a_bearer_token_is_rejected_without_fetching(
    gateway: Callable[..., Any], router: respx.MockRouter
) -> None:
    route = router.get(GOOGLE_CERTS)
    response = await (await gateway(NOW)).post("/hooks/pubsub", content=PUSH)
    assert (response.status_code, response.json()["detail"]) == (401, "no Authorization header")
    assert route.call_count == 0


# -- PayPal -----------------------------------------------------------------------------------------------


async def post_paypal(client: httpx.AsyncClient, headers: Any, body: bytes = PAYPAL_BODY) -> httpx.Response:
    return await client.post("/hooks/paypal", content=body, headers=dict(headers.pairs))


async def test_paypal_delivery_with_a_chained_certificate_is_accepted(
    gateway: Callable[..., Any], router: respx.MockRouter, pki: Pki
) -> None:
    router.get(CERT_URL).mock(return_value=httpx.Response(200, content=pki.chain_pem))
    response = await post_paypal(
        await gateway(PAYPAL_NOW.timestamp()), paypal_headers(pki.leaf_key, PAYPAL_BODY)
    )
    assert response.status_code == 202, response.text


async def test_paypal_cert_url_off_paypal_hosts_is_rejected_without_fetching(
    gateway: Callable[..., Any], router: respx.MockRouter, pki: Pki
) -> None:
    evil = "https://attacker.example/v1/notifications/certs/CERT-1"
    route = router.get(evil).mock(return_value=httpx.Response(200, content=pki.chain_pem))
    headers = dict(paypal_headers(pki.leaf_key, PAYPAL_BODY).pairs) | {"paypal-cert-url": evil}
    client = await gateway(PAYPAL_NOW.timestamp())
    response = await client.post("/hooks/paypal", content=PAYPAL_BODY, headers=headers)
    assert (response.status_code, response.json()["error"]) == (401, "untrusted_certificate")
    assert route.call_count == 0


@pytest.mark.parametrize("case", ["wrong-webhook-id", "tampered-body"])
async def test_paypal_delivery_not_signed_for_this_webhook_and_body_is_rejected(
    gateway: Callable[..., Any], router: respx.MockRouter, pki: Pki, case: str
) -> None:
    router.get(CERT_URL).mock(return_value=httpx.Response(200, content=pki.chain_pem))
    webhook_id = "OTHER-WEBHOOK" if case == "wrong-webhook-id" else WEBHOOK_ID
    body = PAYPAL_BODY + b" " if case == "tampered-body" else PAYPAL_BODY
    headers = paypal_headers(pki.leaf_key, PAYPAL_BODY, webhook_id=webhook_id)
    response = await post_paypal(await gateway(PAYPAL_NOW.timestamp()), headers, body)
    assert (response.status_code, response.json()["error"]) == (401, "bad_signature")


async def test_paypal_certificate_past_its_validity_is_untrusted(
    gateway: Callable[..., Any], router: respx.MockRouter, pki: Pki
) -> None:
    router.get(CERT_URL).mock(return_value=httpx.Response(200, content=pki.chain_pem))
    later = (PAYPAL_NOW + timedelta(days=31)).timestamp()
    response = await post_paypal(await gateway(later), paypal_headers(pki.leaf_key, PAYPAL_BODY))
    assert (response.status_code, response.json()["error"]) == (401, "untrusted_certificate")


# -- generic JWT ------------------------------------------------------------------------------------------


async def post_jwt(client: httpx.AsyncClient, source: str, token: str) -> httpx.Response:
    return await client.post(f"/hooks/{source}", content=b"{}", headers={"Authorization": f"Bearer {token}"})


async def test_jwt_with_a_static_hs256_secret_is_accepted_and_a_wrong_secret_refused(
    gateway: Callable[..., Any],
) -> None:
    claims = {"aud": "gateway", "iss": "https://issuer.example", "exp": NOW + 60}
    client = await gateway(NOW)
    accepted = await post_jwt(client, "static", jwt.encode(claims, HS_SECRET, algorithm="HS256"))
    assert accepted.status_code == 202, accepted.text
    forged = await post_jwt(client, "static", jwt.encode(claims, "x" * 40, algorithm="HS256"))
    assert (forged.status_code, forged.json()["error"]) == (401, "bad_signature")
    other_audience = jwt.encode({**claims, "aud": "elsewhere"}, HS_SECRET, algorithm="HS256")
    assert (await post_jwt(client, "static", other_audience)).json()["error"] == "wrong_audience"


async def test_jwt_checked_with_a_fetched_jwks_is_accepted(
    gateway: Callable[..., Any], router: respx.MockRouter, rsa_key: rsa.RSAPrivateKey
) -> None:
    router.get(JWKS_URL).mock(return_value=httpx.Response(200, json=jwks(rsa_key, "k1")))
    token = jwt.encode({"sub": "svc", "exp": NOW + 60}, rsa_key, algorithm="RS256", headers={"kid": "k1"})
    response = await post_jwt(await gateway(NOW), "keyed", token)
    assert response.status_code == 202, response.text


async def test_jwt_hs256_forged_with_the_rsa_public_key_is_refused(
    gateway: Callable[..., Any], router: respx.MockRouter, rsa_key: rsa.RSAPrivateKey
) -> None:
    router.get(JWKS_URL).mock(return_value=httpx.Response(200, json=jwks(rsa_key, "k1")))
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = hs256_by_hand({"alg": "HS256", "typ": "JWT", "kid": "k1"}, {"sub": "svc"}, pem)
    response = await post_jwt(await gateway(NOW), "keyed", token)
    assert response.json() == {
        "error": "bad_token",
        "detail": "alg 'HS256' is not accepted here (allowed: RS256)",
    }


async def test_refusals_are_recorded_but_a_key_outage_is_not(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
    router: respx.MockRouter,
    tmp_path: Path,
    pki: Pki,
) -> None:
    router.post(PLAID_KEYS).mock(return_value=httpx.Response(502))
    anchor = tmp_path / "paypal-root.pem"
    anchor.write_bytes(pki.anchor_pem)
    store = await open_store()
    keyring = Keyring()
    try:
        client = await client_for(
            load_config(REMOTE_ROUTES.replace("ANCHOR", str(anchor))),
            store,
            clock=lambda: NOW,
            keyring=keyring,
        )
        assert (await post_plaid(client)).status_code == 503
        assert (await post_jwt(client, "static", "not-a-token")).status_code == 401
    finally:
        await keyring.aclose()
    assert [(r.source, r.reason) for r in await store.reads.list_rejections()] == [
        ("static", "malformed_signature")
    ]


async def test_an_app_built_without_a_keyring_answers_503_for_fetched_keys_only(
    tmp_path: Path, pki: Pki, load_config: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    anchor = tmp_path / "paypal-root.pem"
    anchor.write_bytes(pki.anchor_pem)
    client = await client_for(load_config(REMOTE_ROUTES.replace("ANCHOR", str(anchor))), clock=lambda: NOW)
    response = await post_pubsub(client, "x.y.z")
    assert (response.status_code, response.json()["detail"]) == (
        503,
        "pubsub's verification key could not be fetched",
    )
    static = jwt.encode({"aud": "gateway", "iss": "https://issuer.example"}, HS_SECRET, algorithm="HS256")
    assert (await post_jwt(client, "static", static)).status_code == 202

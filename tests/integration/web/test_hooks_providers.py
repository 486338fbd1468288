"""Provider features that need the app: handshakes, URL signing behind a proxy, secrets kept from storage."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from tests.support.cli import deliver
from tests.support.deliveries import signature_headers, sources_of
from tests.support.keys import SG_BODY, SG_KEY, SG_SIGNATURE, SG_TIMESTAMP

ROUTES = """
tasks: [{module}]
sources:
  slack:
    verify: slack
    secret: slack-signing-secret
  twilio:
    verify: twilio
    secret: twilio-auth-token
    public_url: https://hooks.example.com/twilio/inbound
  keyed:
    verify: {scheme: token, query: token}
    secret: query-token-value
routes:
  - {id: sms, source: twilio, task: sync-subscription}
  - {id: keyed, source: keyed, task: sync-subscription}
  - {id: slack, source: slack, task: sync-subscription}
"""


def slack_headers(body: bytes, secret: str = "slack-signing-secret") -> dict[str, str]:
    return {
        **signature_headers(sources_of(ROUTES)["slack"], body, secret=secret),
        "Content-Type": "application/json",
    }


async def test_a_slack_url_verification_is_answered_and_not_stored(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(ROUTES), store)
    body = json.dumps(
        {"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    )
    response = await client.post("/hooks/slack", content=body, headers=slack_headers(body.encode()))
    assert (response.status_code, response.text) == (
        200,
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
    )
    assert await store.reads.events_page() == []
    forged = await client.post("/hooks/slack", content=body, headers=slack_headers(body.encode(), "wrong"))
    assert forged.status_code == 401  # a handshake is answered only after verification


async def test_twilio_behind_a_proxy_verifies_against_public_url(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(ROUTES), store)
    params = {"From": "+14158675309", "Body": "hello", "MessageSid": "SM123"}
    called = "https://hooks.example.com/twilio/inbound?tenant=acme"  # what Twilio called, before the proxy
    signature = RequestValidator("twilio-auth-token").compute_signature(called, params)
    response = await client.post(
        "/hooks/twilio?tenant=acme",  # what reaches the gateway: another host and scheme
        data=params,
        headers={"X-Twilio-Signature": signature, "I-Twilio-Idempotency-Token": "idem-1"},
    )
    assert response.status_code == 202, response.text
    event = await store.reads.get_event(response.json()["event_id"])
    assert event is not None
    assert (event.url, event.dedupe_key, event.payload.data["Body"]) == (called, "idem-1", "hello")
    tampered = await client.post(
        "/hooks/twilio?tenant=other", data=params, headers={"X-Twilio-Signature": signature}
    )
    assert tampered.status_code == 401


async def test_a_token_in_the_query_is_never_stored(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store = await open_store()
    client = await client_for(load_config(ROUTES), store)
    response = await client.post("/hooks/keyed?token=query-token-value&page=2", content=b"{}")
    assert response.status_code == 202
    event = await store.reads.get_event(response.json()["event_id"])
    assert event is not None
    assert event.query == (("token", "[redacted]"), ("page", "2"))
    assert "query-token-value" not in event.url
    wrong = await client.post("/hooks/keyed?token=nope", content=b"{}")
    assert wrong.status_code == 401


def test_check_warns_about_a_url_signing_source_without_public_url(load_config: Callable[..., Any]) -> None:
    routes = ROUTES.replace("    public_url: https://hooks.example.com/twilio/inbound\n", "")
    warnings = load_config(routes).warnings
    assert any(
        w.startswith("routes.yaml: sources.twilio: verify: twilio signs the URL it calls; set public_url")
        for w in warnings
    )


def test_gateway_sign_signs_twilio_form_posts_for_the_public_url(
    write_routes: Callable[..., Any], tmp_path: Any
) -> None:
    import io

    from gateway.cli.main import main
    from gateway.routes import load as config_mod

    routes = write_routes(ROUTES)
    body = tmp_path / "sms.txt"
    body.write_bytes(b"From=%2B14158675309&Body=hi&MessageSid=SM9")
    out, err = io.StringIO(), io.StringIO()
    assert (
        main(["sign", "twilio", "--body", str(body), "--routes", str(routes)], env={}, out=out, err=err) == 0
    )
    headers = dict(line.split(": ", 1) for line in out.getvalue().strip().splitlines())
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    [response] = deliver(
        config_mod.load(routes, {}), tmp_path / "s.db", [("/hooks/twilio", body.read_bytes(), headers)]
    )
    assert response.status_code == 202, response.text


KEYED_ROUTES = """
tasks: [{module}]
sources:
  discord:
    verify: discord
    public_key: {discord_key}
  sendgrid:
    verify: sendgrid
    public_key: {sendgrid_key}
  sendgrid-fresh:
    verify: sendgrid
    public_key: {sendgrid_key}
    tolerance: 300
routes:
  - {id: interactions, source: discord, task: sync-subscription}
  - {id: mail-events, source: sendgrid, task: sync-subscription}
"""


def discord_setup() -> tuple[Any, str]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.generate()
    return private, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def keyed_routes(discord_hex: str) -> str:

    return KEYED_ROUTES.replace("{discord_key}", discord_hex).replace("{sendgrid_key}", SG_KEY)


def discord_headers(private: Any, body: bytes, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    signature = private.sign(stamp.encode() + body).hex()
    return {
        "X-Signature-Ed25519": signature,
        "X-Signature-Timestamp": stamp,
        "Content-Type": "application/json",
    }


async def test_discord_ping_interactions_and_forgeries(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    from discord_interactions import verify_key

    private, public_hex = discord_setup()
    store = await open_store()
    client = await client_for(load_config(keyed_routes(public_hex)), store)

    ping = b'{"type": 1, "id": "ping-1"}'
    headers = discord_headers(private, ping)
    assert verify_key(ping, headers["X-Signature-Ed25519"], headers["X-Signature-Timestamp"], public_hex)
    answer = await client.post("/hooks/discord", content=ping, headers=headers)
    assert (answer.status_code, answer.json()) == (200, {"type": 1})
    assert await store.reads.events_page() == []  # a handshake is not an event

    command = b'{"type": 2, "id": "inter-7", "data": {"name": "deploy"}}'
    accepted = await client.post("/hooks/discord", content=command, headers=discord_headers(private, command))
    assert accepted.status_code == 202
    event = await store.reads.get_event(accepted.json()["event_id"])
    assert event is not None
    assert (event.event_type, event.dedupe_key, event.verification) == ("2", "inter-7", "verified:discord")

    forged = await client.post(
        "/hooks/discord",
        content=command.replace(b"deploy", b"delete"),
        headers=discord_headers(private, command),
    )
    assert (forged.status_code, forged.json()["error"]) == (401, "bad_signature")
    old = int(time.time()) - 301
    stale = await client.post(
        "/hooks/discord", content=command, headers=discord_headers(private, command, old)
    )
    assert (stale.status_code, stale.json()["error"]) == (401, "stale_timestamp")
    other, _ = discord_setup()
    wrong = await client.post("/hooks/discord", content=ping, headers=discord_headers(other, ping))
    assert wrong.status_code == 401


async def test_sendgrid_published_vector_through_the_app(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:

    store = await open_store()
    client = await client_for(load_config(keyed_routes(discord_setup()[1])), store)
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": SG_SIGNATURE,
        "X-Twilio-Email-Event-Webhook-Timestamp": SG_TIMESTAMP,
        "Content-Type": "application/json",
    }
    accepted = await client.post("/hooks/sendgrid", content=SG_BODY, headers=headers)
    assert accepted.status_code == 202, (
        accepted.text
    )  # no freshness window by default (SendGrid retries 24 h)
    assert [r["task"] for r in accepted.json()["runs"]] == ["sync-subscription"]
    stale = await client.post("/hooks/sendgrid-fresh", content=SG_BODY, headers=headers)
    assert (stale.status_code, stale.json()["error"]) == (401, "stale_timestamp")  # tolerance: 300 opts in
    tampered = await client.post(
        "/hooks/sendgrid", content=SG_BODY.replace(b"dropped", b"open"), headers=headers
    )
    assert (tampered.status_code, tampered.json()["error"]) == (401, "bad_signature")


def test_public_key_presets_check_their_keys_and_cannot_sign(load_config: Callable[..., Any]) -> None:
    from gateway.errors import ConfigError
    from gateway.model import Secret
    from gateway.signatures.schemes import PRESETS
    from gateway.signatures.signing import sign

    with pytest.raises(ConfigError) as refused:
        load_config(keyed_routes("not-hex"))
    assert str(refused.value).startswith("routes.yaml:6:5: sources.discord.public_key: ")
    with pytest.raises(ValueError, match="signing_key must be a private key"):
        sign(PRESETS["discord"], Secret("not a key"), b"{}", now=0)


def test_gateway_sign_signs_public_key_presets_with_a_configured_test_key(
    write_routes: Callable[..., Any], tmp_path: Any
) -> None:
    import io

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from gateway.cli.main import main
    from gateway.routes import load as config_mod

    discord_private, discord_public = discord_setup()
    discord_seed = discord_private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    ).hex()
    sg_private = ec.generate_private_key(ec.SECP256R1())
    sg_public = base64.b64encode(
        sg_private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    sg_pem = sg_private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    routes_text = f"""
tasks: [{{module}}]
sources:
  discord:
    verify: discord
    public_key: {discord_public}
    signing_key: {discord_seed}
  sendgrid:
    verify: sendgrid
    public_key: {sg_public}
    signing_key: "{sg_pem.replace(chr(10), chr(92) + "n")}"
  unsignable:
    verify: discord
    public_key: {discord_public}
routes: []
"""
    routes = write_routes(routes_text)
    config = config_mod.load(routes, {})
    body = tmp_path / "b.json"
    body.write_bytes(b'{"type": 2, "id": "i-1"}')
    for source in ("discord", "sendgrid"):
        out, err = io.StringIO(), io.StringIO()
        assert (
            main(["sign", source, "--body", str(body), "--routes", str(routes)], env={}, out=out, err=err)
            == 0
        )
        assert discord_seed not in out.getvalue() and "PRIVATE KEY" not in out.getvalue()
        headers = dict(line.split(": ", 1) for line in out.getvalue().strip().splitlines())
        [response] = deliver(
            config, tmp_path / f"{source}.db", [(f"/hooks/{source}", body.read_bytes(), headers)]
        )
        assert response.status_code == 202, (source, response.text)
    out, err = io.StringIO(), io.StringIO()
    assert (
        main(["sign", "unsignable", "--body", str(body), "--routes", str(routes)], env={}, out=out, err=err)
        == 1
    )
    assert "set signing_key: (a test private key)" in err.getvalue()


def test_a_signing_key_is_refused_where_it_means_nothing(load_config: Callable[..., Any]) -> None:
    from gateway.errors import ConfigError

    routes = "tasks: [{module}]\nsources:\n  gh:\n    verify: github\n    secret: s\n    signing_key: abc\n"
    with pytest.raises(ConfigError) as refused:
        load_config(routes)
    assert str(refused.value) == (
        "routes.yaml:6:5: sources.gh.signing_key: signing_key is only for discord and sendgrid; "
        "verify: github signs with its secret"
    )
    bad = keyed_routes(discord_setup()[1]).replace(
        "verify: discord\n", "verify: discord\n    signing_key: nope\n", 1
    )
    with pytest.raises(ConfigError) as malformed:
        load_config(bad)
    assert str(malformed.value) == (
        "routes.yaml:6:5: sources.discord.signing_key: signing_key must be a private key: 64 hex digits "
        "(Ed25519 seed) or PEM"
    )

"""Every preset on a running gateway: a genuine delivery → 202, a tampered one → 401, a stale one → 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
import standardwebhooks
import stripe
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.model import Secret
from gateway.signatures.schemes import PRESETS
from gateway.signatures.signing import sign
from tests.support.keys import SG_BODY, SG_KEY, SG_SIGNATURE, SG_TIMESTAMP
from tests.support.process import Gateway

pytestmark = pytest.mark.acceptance

DISCORD = Ed25519PrivateKey.generate()
DISCORD_HEX = DISCORD.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

SECRETS = {
    "github": "gh",
    "stripe": "whsec_stripe",
    "standard-webhooks": SW_SECRET,
    "svix": SW_SECRET,
    "slack": "slack-secret",
    "shopify": "shopify-secret",
    "intercom": "intercom-secret",
    "linear": "linear-secret",
    "paddle": "pdl_ntf_secret",
    "zoom": "zoom-secret",
    "square": "square-key",
    "twilio": "twilio-token",
    "gitlab": "gitlab-token",
    "mailgun": "mailgun-key",
    "basic": "user:pass",
}

ROUTES = (
    "tasks: [{module}]\nsources:\n"
    + "".join(f"  {name}:\n    verify: {name}\n    secret: {secret!r}\n" for name, secret in SECRETS.items())
    + f"""  token:
    verify: {{scheme: token, header: X-Api-Key}}
    secret: token-secret
  discord:
    verify: discord
    public_key: {DISCORD_HEX}
  sendgrid:
    verify: sendgrid
    public_key: {SG_KEY}
routes: []
"""
)


def body_for(preset: str, now: float) -> bytes:
    """A body of the shape each provider sends (some carry their signature or timestamp inside)."""
    if preset == "linear":
        return json.dumps({"type": "Issue", "action": "create", "webhookTimestamp": int(now * 1000)}).encode()
    if preset == "mailgun":
        token = f"tok-{now}"
        digest = hmac.new(b"mailgun-key", f"{int(now)}{token}".encode(), hashlib.sha256).hexdigest()
        signature = {"timestamp": str(int(now)), "token": token, "signature": digest}
        return json.dumps({"signature": signature, "event-data": {"event": "delivered"}}).encode()
    if preset == "twilio":
        return b"From=%2B14158675309&Body=hello&MessageSid=SM1"
    return json.dumps({"id": f"evt_{now}", "type": "thing.happened", "event": "meeting.started"}).encode()


def headers_for(preset: str, body: bytes, now: float, url: str) -> dict[str, str]:
    """Signed the way the provider signs: its SDK where one signs, else the documented algorithm."""
    if preset == "stripe":
        return {
            "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
                body.decode(), SECRETS["stripe"], timestamp=int(now)
            )
        }
    if preset == "standard-webhooks":
        stamp = datetime.fromtimestamp(int(now), UTC)
        return {
            "webhook-id": f"msg_{now}",
            "webhook-timestamp": str(int(now)),
            "webhook-signature": standardwebhooks.Webhook(SW_SECRET).sign(f"msg_{now}", stamp, body.decode()),
        }
    if preset == "discord":
        stamp = str(int(now))
        return {
            "X-Signature-Ed25519": DISCORD.sign(stamp.encode() + body).hex(),
            "X-Signature-Timestamp": stamp,
        }
    if preset == "mailgun":
        return {}
    if preset == "token":
        return {"X-Api-Key": "token-secret"}
    if preset == "shopify":
        digest = hmac.new(b"shopify-secret", body, hashlib.sha256).digest()
        return {"X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(), "X-Shopify-Webhook-Id": f"w{now}"}
    return dict(sign(PRESETS[preset], Secret(SECRETS[preset]), body, now=now, url=url))


FORGED_CREDENTIAL: dict[str, Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]] = {
    "mailgun": lambda body, headers: (body.replace(b'"signature": "', b'"signature": "0', 1), headers),
    "gitlab": lambda body, headers: (body, {**headers, "X-Gitlab-Token": "guessed"}),
    "basic": lambda body, headers: (body, {**headers, "Authorization": "Basic dXNlcjpndWVzcw=="}),
    "token": lambda body, headers: (body, {**headers, "X-Api-Key": "guessed"}),
}
TIMED = {"stripe", "standard-webhooks", "svix", "slack", "linear", "paddle", "zoom", "mailgun", "discord"}
PRESET_NAMES = [*SECRETS, "token", "discord"]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    import textwrap
    import uuid

    root = tmp_path_factory.mktemp("presets")
    module = f"tasks_{uuid.uuid4().hex[:12]}"
    (root / f"{module}.py").write_text("")
    routes = root / "routes.yaml"
    routes.write_text(textwrap.dedent(ROUTES).replace("{module}", module))
    gw = Gateway(routes, root / "gateway.db", root / "gateway.log")
    gw.start()
    yield gw
    gw.stop()


def content_type(preset: str) -> str:
    return "application/x-www-form-urlencoded" if preset == "twilio" else "application/json"


def post(gw: Gateway, preset: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/hooks/{preset}", content=body, headers={"Content-Type": content_type(preset), **headers}
    )


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_a_genuine_delivery_is_accepted_and_a_tampered_one_refused(running: Gateway, preset: str) -> None:
    now = time.time()
    url = f"{running.url}/hooks/{preset}"
    body = body_for(preset, now)
    headers = headers_for(preset, body, now, url)
    accepted = post(running, preset, body, headers)
    assert accepted.status_code == 202, (preset, accepted.text)
    if preset in FORGED_CREDENTIAL:
        # These do not sign the body (a changed body with the same credential is, knowingly, accepted): the
        # forgery tried here is a wrong credential.
        forged_body, forged_headers = FORGED_CREDENTIAL[preset](body, headers)
        refused = post(running, preset, forged_body, forged_headers)
    else:
        tampered = body + b"&Extra=1" if preset == "twilio" else body + b" "  # one byte more than was signed
        refused = post(running, preset, tampered, headers)
    assert refused.status_code == 401, (preset, refused.text)
    assert refused.json()["error"] in ("bad_signature", "malformed_signature"), refused.json()


@pytest.mark.parametrize("preset", sorted(TIMED))
def test_a_stale_delivery_is_refused(running: Gateway, preset: str) -> None:
    then = time.time() - 3600
    url = f"{running.url}/hooks/{preset}"
    body = body_for(preset, then)
    response = post(running, preset, body, headers_for(preset, body, then, url))
    assert (response.status_code, response.json()["error"]) == (401, "stale_timestamp"), preset


def test_the_sendgrid_published_vector_is_accepted_by_the_running_gateway(running: Gateway) -> None:
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": SG_SIGNATURE,
        "X-Twilio-Email-Event-Webhook-Timestamp": SG_TIMESTAMP,
    }
    assert post(running, "sendgrid", SG_BODY, headers).status_code == 202


# These fetch the provider's keys over https per delivery; respx cannot fake that across processes, so they
# are covered end to end in process instead: tests/integration/web/test_hooks_remote.py.
REMOTE_KEY_PRESETS = {"plaid", "pubsub", "paypal", "jwt"}


def test_every_preset_is_covered_here() -> None:
    # A new preset must be added to this acceptance test (or be listed as needing remote keys).
    covered = {*PRESET_NAMES, "sendgrid", "none", *REMOTE_KEY_PRESETS}
    assert set(PRESETS) <= covered, set(PRESETS) - covered


def test_a_replayed_mailgun_token_is_refused(running: Gateway) -> None:
    now = time.time()
    body = body_for("mailgun", now)
    first = post(running, "mailgun", body, {})
    replay = post(running, "mailgun", body, {})  # the same signed token again, inside the freshness window
    assert first.status_code == 202
    assert (replay.status_code, replay.json()["error"]) == (401, "replayed_token")
    assert first.json()["event_id"] in replay.json()["detail"]


def test_a_jwt_source_with_a_static_key_on_the_running_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    import textwrap
    import uuid

    import jwt as pyjwt

    root = tmp_path_factory.mktemp("jwt")
    module = f"tasks_{uuid.uuid4().hex[:12]}"
    (root / f"{module}.py").write_text("")
    secret = "a-32-byte-or-longer-shared-secret!!"
    (root / "routes.yaml").write_text(
        textwrap.dedent(f"""
        tasks: [{module}]
        sources:
          internal:
            verify: jwt
            secret: {secret}
            algorithms: [HS256]
            audience: gateway
        routes: []
    """)
    )
    gw = Gateway(root / "routes.yaml", root / "gateway.db", root / "gateway.log")
    gw.start()
    try:
        now = int(time.time())
        good = pyjwt.encode({"aud": "gateway", "iat": now, "exp": now + 60}, secret, algorithm="HS256")
        wrong_key = pyjwt.encode({"aud": "gateway", "iat": now, "exp": now + 60}, "x" * 40, algorithm="HS256")
        expired = pyjwt.encode(
            {"aud": "gateway", "iat": now - 600, "exp": now - 300}, secret, algorithm="HS256"
        )
        import io

        from gateway.cli.main import main

        (root / "body.json").write_bytes(b"{}")
        out, err = io.StringIO(), io.StringIO()
        argv = ["sign", "internal", "--body", str(root / "body.json"), "--routes", str(root / "routes.yaml")]
        assert main(argv, env={}, out=out, err=err) == 0, err.getvalue()
        signed = dict(line.split(": ", 1) for line in out.getvalue().strip().splitlines())
        assert httpx.post(f"{gw.url}/hooks/internal", content=b"{}", headers=signed).status_code == 202
        for token, status in ((good, 202), (wrong_key, 401), (expired, 401)):
            response = httpx.post(
                f"{gw.url}/hooks/internal",
                content=b"{}",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            assert response.status_code == status, response.text
    finally:
        gw.stop()

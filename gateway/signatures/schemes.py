"""Signature schemes as rows of data: one row per provider preset.

Pure: no I/O. Checking lives in ``verify.py``, the ``verify:`` mapping recipes (hmac, token, jwt) in
``recipes.py``; a new provider is a new row here plus its test vectors.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scheme:
    """How one provider signs a delivery. ``signature_format`` names the adapter in ``verify.py``."""

    name: str
    signature_headers: tuple[str, ...]  # alternatives; the first one present is used. () for none
    # an adapter in adapters.py: prefixed | stripe | paddle | standard-webhooks | twilio | mailgun |
    # token | basic; or gitlab (token or signing token, see verify.py) | none
    signature_format: str
    algorithm: str = "sha256"  # hashlib name: sha1 | sha256 | sha512
    encoding: str = "hex"  # hex | base64
    prefix: str = ""  # e.g. "sha256="
    signed: str = "{body}"  # signed-string template; placeholders {body} {timestamp} {id} (presets: {url})
    timestamp_headers: tuple[str, ...] = ()
    id_headers: tuple[str, ...] = ()
    timestamp_field: str | None = None  # a top-level JSON body field holding the signed timestamp (Linear)
    timestamp_ms: bool = False  # the timestamp counts milliseconds, not seconds
    tolerance: int | None = None  # default freshness window in seconds; None = no time check
    reject_future: bool = True  # False = only old timestamps fail (Stripe's SDK is one-sided)
    key_format: str = "raw"  # raw: utf-8 of the secret | whsec: strip whsec_, base64-decode
    dedupe: str | None = None  # default dedupe key path
    event_type: str | None = None  # default event type path
    sender_timeout: float | None = None  # the provider's delivery timeout in seconds
    binds_body: bool = True  # False for schemes whose signature does not cover the body
    verified: bool = True  # False only for "none"
    signs_url: bool = False  # the signature covers the URL the sender called: set the source's public_url
    handshake: str | None = None  # a reply handshake.py sends instead of storing: slack | zoom
    # Where a credential travels in clear: these headers / query parameters must never be stored.
    secret_headers: tuple[str, ...] = ()
    secret_query: tuple[str, ...] = ()
    remote_keys: bool = False  # the key is fetched from the provider per delivery (keys/keyring.py)
    # A second delivery with the same dedupe key is a replay, not a retry: refused with 401 replayed_token
    # (Mailgun: the signed token must be used once) instead of the usual 200 duplicate.
    refuse_replays: bool = False


# Per-source parameters of the remote-key schemes (plaid, pubsub, paypal, jwt), checked by routes/sources.py.
@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """What a remote-key check needs besides the key: who the token is for, where keys come from."""

    client_id: str | None = None  # plaid (its secret is the source's `secret:`)
    base_url: str | None = None  # plaid: https://sandbox.plaid.com | https://production.plaid.com
    audience: str | None = None  # pubsub (required), jwt (optional)
    service_account: str | None = None  # pubsub: the push subscription's service account email
    webhook_id: str | None = None  # paypal
    trust_anchors: tuple[bytes, ...] = ()  # paypal: PEM CA certificates the signing certificate chains to
    jwks_url: str | None = None  # jwt: https URL of a JWK set (else static keys in secret(s)/public_key(s))
    issuer: str | None = None  # jwt
    algorithms: tuple[str, ...] = ()  # jwt


ALGORITHMS = ("sha1", "sha256", "sha512")
ENCODINGS = ("hex", "base64")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
PLACEHOLDERS = ("body", "timestamp", "id")
DEFAULT_TOLERANCE = 300

# https://www.standardwebhooks.com/ — Svix sends the same scheme as svix-*; both presets accept both families.
_STANDARD_WEBHOOKS = Scheme(
    name="standard-webhooks",
    signature_headers=("webhook-signature", "svix-signature"),
    signature_format="standard-webhooks",
    encoding="base64",
    signed="{id}.{timestamp}.{body}",
    timestamp_headers=("webhook-timestamp", "svix-timestamp"),
    id_headers=("webhook-id", "svix-id"),
    tolerance=DEFAULT_TOLERANCE,  # the reference library: 5 minutes either way
    key_format="whsec",
    dedupe="headers.webhook-id",
    event_type="body.type",
    sender_timeout=15,
)

PRESETS: Mapping[str, Scheme] = {
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    # GitHub also sends the legacy SHA-1 `X-Hub-Signature`; only the SHA-256 header is trusted, so a
    # delivery carrying just the SHA-1 one is rejected as missing its signature.
    "github": Scheme(
        name="github",
        signature_headers=("X-Hub-Signature-256",),
        signature_format="prefixed",
        prefix="sha256=",
        dedupe="headers.X-GitHub-Delivery",
        event_type="headers.X-GitHub-Event",
        sender_timeout=10,
    ),
    # https://docs.stripe.com/webhooks#verify-manually — the timestamp is the `t=` inside Stripe-Signature.
    # The key is the whole `whsec_…` string as UTF-8 (unlike Standard Webhooks, which decodes it).
    "stripe": Scheme(
        name="stripe",
        signature_headers=("Stripe-Signature",),
        signature_format="stripe",
        signed="{timestamp}.{body}",
        timestamp_headers=("Stripe-Signature",),
        tolerance=DEFAULT_TOLERANCE,
        reject_future=False,  # the official SDK only rejects old timestamps
        dedupe="body.id",
        event_type="body.type",
        sender_timeout=20,  # second-hand figure, not in Stripe's docs
    ),
    "standard-webhooks": _STANDARD_WEBHOOKS,
    "svix": dataclasses.replace(_STANDARD_WEBHOOKS, name="svix"),
    # https://docs.slack.dev/authentication/verifying-requests-from-slack/ — JSON (Events API) and form
    # bodies (slash commands, interactivity) alike are verified as raw bytes. Event type: the inner
    # `event.type` of an Events API callback (app_mention, message…); the outer `type` stays routable as
    # body.type. Slash commands and interactivity have none (route on body.command / body.payload).
    "slack": Scheme(
        name="slack",
        signature_headers=("X-Slack-Signature",),
        signature_format="prefixed",
        prefix="v0=",
        signed="v0:{timestamp}:{body}",
        timestamp_headers=("X-Slack-Request-Timestamp",),
        tolerance=DEFAULT_TOLERANCE,  # slack_sdk SignatureVerifier: 5 minutes either way
        dedupe="body.event_id",  # stable across Slack's retries (X-Slack-Retry-Num)
        event_type="body.event.type",
        sender_timeout=3,
        handshake="slack",
    ),
    # https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-5-verify-the-webhook
    "shopify": Scheme(
        name="shopify",
        signature_headers=("X-Shopify-Hmac-Sha256",),
        signature_format="prefixed",
        encoding="base64",
        dedupe="headers.X-Shopify-Webhook-Id",
        event_type="headers.X-Shopify-Topic",
        sender_timeout=5,
    ),
    # https://developers.intercom.com/docs/webhooks/webhook-notifications — HMAC-SHA1 of the body.
    "intercom": Scheme(
        name="intercom",
        signature_headers=("X-Hub-Signature",),
        signature_format="prefixed",
        algorithm="sha1",
        prefix="sha1=",
        dedupe="body.id",  # the notification id, notif_…
        event_type="body.topic",
    ),
    # https://linear.app/developers/webhooks — the signed timestamp is `webhookTimestamp` inside the body,
    # in milliseconds; the SDK allows 60 s either way.
    "linear": Scheme(
        name="linear",
        signature_headers=("Linear-Signature",),
        signature_format="prefixed",
        timestamp_field="webhookTimestamp",
        timestamp_ms=True,
        tolerance=60,
        dedupe="headers.Linear-Delivery",
        event_type="body.type",
    ),
    # https://developer.paddle.com/webhooks/signature-verification — the SDK's default window is 5 s either
    # way (sources may widen it with `tolerance:`). Dedupe on notification_id: Paddle's retries keep it,
    # while a replay requested through Paddle's API makes a new notification and so is processed again.
    "paddle": Scheme(
        name="paddle",
        signature_headers=("Paddle-Signature",),
        signature_format="paddle",
        signed="{timestamp}:{body}",
        timestamp_headers=("Paddle-Signature",),
        tolerance=5,
        dedupe="body.notification_id",
        event_type="body.event_type",
        sender_timeout=5,
    ),
    # https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events — Zoom fixes no window; 300 s
    # either way as for Slack. Zoom sends no delivery id, so there is no default dedupe key.
    "zoom": Scheme(
        name="zoom",
        signature_headers=("x-zm-signature",),
        signature_format="prefixed",
        prefix="v0=",
        signed="v0:{timestamp}:{body}",
        timestamp_headers=("x-zm-request-timestamp",),
        tolerance=DEFAULT_TOLERANCE,
        event_type="body.event",
        sender_timeout=3,
        handshake="zoom",
    ),
    # https://developer.squareup.com/docs/webhooks/step3validate — the notification URL, then the body. The
    # legacy SHA-1 `x-square-signature` is not trusted.
    "square": Scheme(
        name="square",
        signature_headers=("x-square-hmacsha256-signature",),
        signature_format="prefixed",
        encoding="base64",
        signed="{url}{body}",
        dedupe="body.event_id",
        event_type="body.type",
        signs_url=True,
    ),
    # https://www.twilio.com/docs/usage/webhooks/webhooks-security — HMAC-SHA1 (SharedKey: SHA-256) of the
    # URL and the sorted form parameters; see adapters.py.
    "twilio": Scheme(
        name="twilio",
        signature_headers=("X-Twilio-Signature",),
        signature_format="twilio",
        algorithm="sha1",
        encoding="base64",
        dedupe="headers.I-Twilio-Idempotency-Token",
        sender_timeout=15,
        signs_url=True,
    ),
    # https://docs.gitlab.com/user/project/integrations/webhooks/ — X-Gitlab-Token is the secret in clear
    # (the body is not bound); a `whsec_` secret is a signing token, checked as Standard Webhooks.
    "gitlab": Scheme(
        name="gitlab",
        signature_headers=("X-Gitlab-Token", "webhook-signature"),
        signature_format="gitlab",
        timestamp_headers=("webhook-timestamp",),
        tolerance=DEFAULT_TOLERANCE,  # signing-token deliveries only
        key_format="gitlab",
        dedupe="headers.Idempotency-Key",  # older GitLab sends only X-Gitlab-Event-UUID
        event_type="headers.X-Gitlab-Event",
        sender_timeout=10,
        binds_body=False,
        secret_headers=("X-Gitlab-Token",),
    ),
    # https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks — the signature
    # covers `<timestamp><token>` only. Dedupe on the token, and a token seen before is refused (401
    # replayed_token), as Mailgun advises: the check is atomic with the write and survives restarts.
    "mailgun": Scheme(
        name="mailgun",
        signature_headers=(),
        signature_format="mailgun",
        timestamp_field="signature.timestamp",
        tolerance=900,  # the SDK's 15 minutes
        dedupe="body.signature.token",  # legacy form webhooks: set `dedupe: body.token`
        event_type="body.event-data.event",
        binds_body=False,
        refuse_replays=True,
    ),
    # HTTP Basic auth (RFC 7617) against `username:password` secrets.
    "basic": Scheme(
        name="basic",
        signature_headers=("Authorization",),
        signature_format="basic",
        key_format="basic",
        binds_body=False,
        secret_headers=("Authorization",),
    ),
    # https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint-validating-security-request-headers
    # Ed25519 over <timestamp><body> with the application's public key (hex). The timestamp is signed but
    # Discord's own library never checks it; interactions must be answered within 3 s, so 300 s is generous.
    "discord": Scheme(
        name="discord",
        signature_headers=("X-Signature-Ed25519",),
        signature_format="discord",
        timestamp_headers=("X-Signature-Timestamp",),
        tolerance=300,
        event_type="body.type",
        dedupe="body.id",
        sender_timeout=3,
        handshake="discord",
    ),
    # https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
    # ECDSA P-256/SHA-256 over <timestamp><body> with the base64 DER verification key. The timestamp is
    # signed, but SendGrid's library never checks it and retries keep it for up to 24 h: no default window.
    "sendgrid": Scheme(
        name="sendgrid",
        signature_headers=("X-Twilio-Email-Event-Webhook-Signature",),
        signature_format="sendgrid",
        timestamp_headers=("X-Twilio-Email-Event-Webhook-Timestamp",),
        tolerance=None,
    ),
    # https://plaid.com/docs/api/webhooks/webhook-verification/ — an ES256 JWT in Plaid-Verification whose
    # request_body_sha256 binds the exact body; iat at most 5 minutes old (checked in jwts.py).
    # The key comes from Plaid's /webhook_verification_key/get. Event type: webhook_code (HISTORICAL_UPDATE…;
    # webhook_type stays routable as body.webhook_type). Plaid sends no delivery id: no default dedupe.
    "plaid": Scheme(
        name="plaid",
        signature_headers=("Plaid-Verification",),
        signature_format="plaid",
        event_type="body.webhook_code",
        remote_keys=True,
    ),
    # https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions — a Google-signed OIDC token in
    # Authorization: Bearer. It covers identity, audience and time only, NOT the body. Attributes are free
    # form, so there is no default event type (route on body.message.attributes.<name>).
    "pubsub": Scheme(
        name="pubsub",
        signature_headers=("Authorization",),
        signature_format="pubsub",
        dedupe="body.message.messageId",
        binds_body=False,
        secret_headers=("Authorization",),  # a replayable bearer token for up to an hour: never stored
        remote_keys=True,
    ),
    # https://developer.paypal.com/api/rest/webhooks/rest/#link-selfverificationmethod — RSA/SHA-256 over
    # <transmission-id>|<transmission-time>|<webhook-id>|<crc32(body)>, with the certificate at
    # PAYPAL-CERT-URL (PayPal hosts only). The body is bound only through CRC32; PayPal enforces no window.
    "paypal": Scheme(
        name="paypal",
        signature_headers=("PAYPAL-TRANSMISSION-SIG",),
        signature_format="paypal",
        timestamp_headers=("PAYPAL-TRANSMISSION-TIME",),
        id_headers=("PAYPAL-TRANSMISSION-ID",),
        dedupe="body.id",
        event_type="body.event_type",
        remote_keys=True,
    ),
    # A generic JWT in Authorization: Bearer (or `{scheme: jwt, header: X-Token}`), checked with a JWK set
    # from `jwks_url:` or static keys; `algorithms:` is required. It binds the body only if the issuer's
    # claims do, which a generic check cannot know: treated as identity only.
    "jwt": Scheme(
        name="jwt",
        signature_headers=("Authorization",),
        signature_format="jwt",
        binds_body=False,
        secret_headers=("Authorization",),
        remote_keys=True,
    ),
    "none": Scheme(
        name="none", signature_headers=(), signature_format="none", binds_body=False, verified=False
    ),
}

# GitLab's two mechanisms as plain rows, chosen per delivery by verify.py.
GITLAB_TOKEN = Scheme(
    name="gitlab", signature_headers=("X-Gitlab-Token",), signature_format="token", binds_body=False
)
GITLAB_SIGNING = dataclasses.replace(
    _STANDARD_WEBHOOKS,
    name="gitlab",
    signature_headers=("webhook-signature",),
    timestamp_headers=("webhook-timestamp",),
    id_headers=("webhook-id",),
)

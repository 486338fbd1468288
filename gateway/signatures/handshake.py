"""Provider handshakes: deliveries that expect a computed answer instead of being stored as events.

Pure: no I/O. The app calls :func:`respond` after verification succeeded and the body was parsed; a
:class:`Reply` is sent as is and no event is recorded.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.model import Inbound, Payload, Secret
from gateway.signatures.schemes import Scheme


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer to send instead of acknowledging an event."""

    status: int
    body: bytes
    content_type: str


def respond(
    scheme: Scheme, secrets: Sequence[Secret], request: Inbound, payload: Payload, *, key_index: int = 0
) -> Reply | None:
    """The reply ``scheme``'s handshake asks for, or None for an ordinary delivery.

    ``key_index`` is the secret that verified the request (``Verdict.key_index``): Zoom's answer is
    computed with it, so a source in the middle of a rotation answers with the secret Zoom used.
    """
    if scheme.handshake == "slack":
        return _slack(payload)
    if scheme.handshake == "discord":
        return _discord(payload)
    if scheme.handshake == "zoom" and secrets:
        secret = secrets[key_index] if 0 <= key_index < len(secrets) else secrets[0]
        return _zoom(secret, payload)
    return None


def _slack(payload: Payload) -> Reply | None:
    """``url_verification`` → the challenge as text/plain (Slack accepts text, form or JSON).
    https://docs.slack.dev/reference/events/url_verification — a slash command's ``ssl_check=1`` probe is
    answered 200 with an empty body, as Slack asks."""
    data: Any = payload.data
    if not isinstance(data, dict):
        return None
    if payload.kind == "json" and data.get("type") == "url_verification":
        challenge = data.get("challenge")
        if isinstance(challenge, str):
            return Reply(200, challenge.encode(), "text/plain")
    if payload.kind == "form" and data.get("ssl_check") == "1":
        return Reply(200, b"", "text/plain")
    return None


def _zoom(secret: Secret, payload: Payload) -> Reply | None:
    """``endpoint.url_validation`` → ``{"plainToken": p, "encryptedToken": hex(HMAC-SHA256(secret, p))}``.
    https://developers.zoom.us/docs/api/webhooks/#validate-your-webhook-endpoint"""
    data: Any = payload.data
    if payload.kind != "json" or not isinstance(data, dict) or data.get("event") != "endpoint.url_validation":
        return None
    inner = data.get("payload")
    plain = inner.get("plainToken") if isinstance(inner, dict) else None
    if not isinstance(plain, str):
        return None
    encrypted = hmac.new(secret.reveal().encode(), plain.encode(), "sha256").hexdigest()
    body = json.dumps({"plainToken": plain, "encryptedToken": encrypted}, separators=(",", ":"))
    return Reply(200, body.encode(), "application/json")


def _discord(payload: Payload) -> Reply | None:
    """A PING (``{"type": 1}``) → ``{"type": 1}``: how Discord checks an interactions endpoint.
    https://discord.com/developers/docs/interactions/receiving-and-responding#receiving-an-interaction"""
    data: Any = payload.data
    if payload.kind == "json" and isinstance(data, dict) and data.get("type") == 1:
        return Reply(200, b'{"type":1}', "application/json")
    return None

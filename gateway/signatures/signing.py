"""Sign bodies the way each provider does: for `gateway sign`, for local testing, and for the test suite.

Pure: no clock, no environment, no I/O; ``now`` is passed in. The gateway never needs this to verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qs, parse_qsl, urlsplit

from gateway.errors import SignatureError
from gateway.model import Secret, new_id
from gateway.signatures.adapters import twilio_string
from gateway.signatures.asymmetric import sign_public_key_scheme
from gateway.signatures.remote import sign_jwt
from gateway.signatures.schemes import GITLAB_SIGNING, GITLAB_TOKEN, RemoteSettings, Scheme
from gateway.signatures.verify import PUBLIC_KEY_CHECKS, DecodedKey, key_for, signed_bytes


def sign(
    scheme: Scheme,
    secret: Secret | None,
    body: bytes,
    *,
    now: float,
    msg_id: str | None = None,
    url: str | None = None,
    remote: RemoteSettings | None = None,
) -> list[tuple[str, str]]:
    """The signature-related headers the provider would send with ``body`` at ``now``.

    ``url`` is the URL the delivery is sent to, needed by the schemes that sign it (Twilio, Square). For
    Linear the body must carry its ``webhookTimestamp``; Mailgun signs inside the body, so it cannot be
    signed here. Raises ``SignatureError("no_secret", …)`` without a secret, ``ValueError`` if the
    secret or the inputs cannot be signed.
    """
    if not scheme.verified:
        return []
    if scheme.signature_format == "jwt" and remote is not None and not remote.jwks_url and secret is not None:
        return [(scheme.signature_headers[0], "Bearer " + sign_jwt(secret, remote, int(now)))]
    if scheme.remote_keys:
        raise ValueError(
            f"{scheme.name} deliveries are signed with a key only the sender holds; the gateway fetches "
            "public keys to check them, so it cannot sign them"
        )
    if secret is None or not secret.reveal():
        raise SignatureError("no_secret", f"{scheme.name} needs a secret to sign")
    fmt = scheme.signature_format
    if fmt == "gitlab":
        signing = secret.reveal().startswith("whsec_")
        return sign(GITLAB_SIGNING if signing else GITLAB_TOKEN, secret, body, now=now, msg_id=msg_id)
    if fmt in PUBLIC_KEY_CHECKS:
        # `secret` must be a test private key (a source's signing_key:); a public key cannot sign.
        return sign_public_key_scheme(fmt, secret.reveal(), body, int(now))
    if fmt == "mailgun":
        raise ValueError(
            "mailgun signs inside the body (signature.timestamp, token, signature), not in headers; "
            "put a signature object into the body instead"
        )
    if fmt in ("token", "basic"):
        return _credential_headers(scheme, secret)
    key = key_for(scheme, secret)
    timestamp = str(int(now))
    if msg_id is None and "{id}" in scheme.signed:
        msg_id = new_id("msg", now)
    if fmt == "standard-webhooks":
        message = signed_bytes(scheme.signed, body, timestamp, msg_id)
        return _sign_standard_webhooks(scheme, key, message, msg_id or "", timestamp)
    if key.mac is None:
        raise ValueError(f"{scheme.name} signs with an HMAC secret, not an Ed25519 key")
    digest = hmac.new(key.mac, _message_to_sign(scheme, body, timestamp, msg_id, url), scheme.algorithm)
    return _hmac_headers(scheme, digest.digest(), body, timestamp, msg_id)


def _message_to_sign(
    scheme: Scheme, body: bytes, timestamp: str, msg_id: str | None, url: str | None
) -> bytes:
    if scheme.signature_format == "twilio":
        return _twilio_message(body, url)
    if "{url}" in scheme.signed and not url:
        raise ValueError(f"{scheme.name} signs the notification URL: pass the URL the delivery is sent to")
    if scheme.timestamp_field:
        _require_body_field(scheme, body)
    return signed_bytes(scheme.signed, body, timestamp, msg_id, url)


def _hmac_headers(
    scheme: Scheme, digest: bytes, body: bytes, timestamp: str, msg_id: str | None
) -> list[tuple[str, str]]:
    if scheme.signature_format == "stripe":
        return [(scheme.signature_headers[0], f"t={timestamp},v1={digest.hex()}")]
    if scheme.signature_format == "paddle":
        return [(scheme.signature_headers[0], f"ts={timestamp};h1={digest.hex()}")]
    encoded = digest.hex() if scheme.encoding == "hex" else base64.b64encode(digest).decode()
    headers = [(scheme.signature_headers[0], scheme.prefix + encoded)]
    if "{timestamp}" in scheme.signed:
        headers.append((scheme.timestamp_headers[0], timestamp))
    if "{id}" in scheme.signed:
        headers.append((scheme.id_headers[0], msg_id or ""))
    return headers


def _sign_standard_webhooks(
    scheme: Scheme, key: DecodedKey, message: bytes, msg_id: str, timestamp: str
) -> list[tuple[str, str]]:
    if key.private is not None:
        signature = "v1a," + base64.b64encode(key.private.sign(message)).decode()
    elif key.mac is not None:
        signature = "v1," + base64.b64encode(hmac.new(key.mac, message, scheme.algorithm).digest()).decode()
    else:
        raise ValueError("a whpk_ public key can only verify; sign with the matching whsk_ private key")
    return [
        (scheme.id_headers[0], msg_id),
        (scheme.timestamp_headers[0], timestamp),
        (scheme.signature_headers[0], signature),
    ]


def _credential_headers(scheme: Scheme, secret: Secret) -> list[tuple[str, str]]:
    """The credential itself, as the sender would send it (a token or Basic auth), for `gateway sign`."""
    value = key_for(scheme, secret).mac or b""
    if scheme.signature_format == "basic":
        return [("Authorization", "Basic " + base64.b64encode(value).decode())]
    if not scheme.signature_headers:
        raise ValueError(
            f"this token source reads the secret from the {scheme.secret_query[0]} query parameter; "
            "put it into the URL yourself (sign only prints headers)"
        )
    return [(scheme.signature_headers[0], value.decode())]


def _twilio_message(body: bytes, url: str | None) -> bytes:
    if not url:
        raise ValueError("twilio signs the URL it calls: pass the URL the delivery is sent to")
    query = parse_qs(urlsplit(url).query)
    if "bodySHA256" in query:
        return url.encode()
    if body[:1] in (b"{", b"["):
        sep = "&" if urlsplit(url).query else "?"
        digest = hashlib.sha256(body).hexdigest()
        raise ValueError(
            f"twilio binds a JSON body through the URL: send it to {url}{sep}bodySHA256={digest}"
        )
    return twilio_string(url, parse_qsl(body.decode("utf-8"), keep_blank_values=True)).encode()


def _require_body_field(scheme: Scheme, body: bytes) -> None:
    field = scheme.timestamp_field or ""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or field not in data:
        raise ValueError(f"{scheme.name} signs the body, which must carry its {field} (unix milliseconds)")

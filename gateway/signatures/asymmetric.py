"""Public-key webhook signatures: Discord (Ed25519), SendGrid (ECDSA P-256) and PayPal (RSA + X.509 chain).

Pure: no clock, no environment, no I/O. Keys and certificates are passed in; freshness is the caller's.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from gateway.errors import SignatureError
from gateway.model import Headers
from gateway.signatures.adapters import only_value

MAX_HEADER = 8 * 1024  # a longer signature header is malformed, never decoded
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")

DISCORD_SIGNATURE = "X-Signature-Ed25519"
DISCORD_TIMESTAMP = "X-Signature-Timestamp"
SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"

K = TypeVar("K")


# -- Discord ----------------------------------------------------------------------------------------------


def verify_discord(public_keys_hex: Sequence[str], headers: Headers, body: bytes) -> int:
    """Check Discord's Ed25519 signature over ``<X-Signature-Timestamp><body>``; return the signed timestamp.

    Any of ``public_keys_hex`` (the application's public key, 64 hex digits) may match, for rotation.
    https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint-validating-security-request-headers
    """
    keys = _usable(public_keys_hex, _discord_key, "Discord public key")
    signature = _decode_hex(_header(headers, DISCORD_SIGNATURE), DISCORD_SIGNATURE, 64)
    ts_text = _header(headers, DISCORD_TIMESTAMP, "missing_timestamp")
    timestamp = _timestamp(ts_text, DISCORD_TIMESTAMP)
    message = ts_text.encode() + body  # no separator
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return timestamp
    raise SignatureError("bad_signature", _no_match(DISCORD_SIGNATURE, len(keys), "public key"))


def discord_key_problem(text: str) -> str | None:
    """Why ``text`` is not a usable Discord public key (for the config loader), or None."""
    return _problem(_discord_key, text)


def _discord_key(text: str) -> Ed25519PublicKey:
    raw = bytes.fromhex(text) if _HEX.fullmatch(text.strip()) else b""
    if len(raw) != 32:
        raise ValueError("a Discord public key must be 64 hex digits (the application's PUBLIC KEY)")
    return Ed25519PublicKey.from_public_bytes(raw)


# -- SendGrid ---------------------------------------------------------------------------------------------


def verify_sendgrid(public_keys_b64: Sequence[str], headers: Headers, body: bytes) -> int:
    """Check SendGrid's ECDSA P-256/SHA-256 signature over ``<timestamp><body>``; return the signed timestamp.

    Keys are the dashboard's verification key: base64 of a DER SubjectPublicKeyInfo.
    https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
    """
    keys = _usable(public_keys_b64, _sendgrid_key, "SendGrid verification key")
    signature = _decode_b64(_header(headers, SENDGRID_SIGNATURE), SENDGRID_SIGNATURE)
    ts_text = _header(headers, SENDGRID_TIMESTAMP, "missing_timestamp")
    timestamp = _timestamp(ts_text, SENDGRID_TIMESTAMP)
    message = ts_text.encode() + body  # no separator
    for key in keys:
        try:
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):  # ValueError: not a DER-encoded ECDSA signature
            continue
        return timestamp
    raise SignatureError("bad_signature", _no_match(SENDGRID_SIGNATURE, len(keys), "verification key"))


def sendgrid_key_problem(text: str) -> str | None:
    """Why ``text`` is not a usable SendGrid verification key (for the config loader), or None."""
    return _problem(_sendgrid_key, text)


def _sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    shape = "a SendGrid verification key must be base64 of a DER P-256 public key"
    try:
        key = serialization.load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, TypeError):
        raise ValueError(shape) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(shape)
    return key


# -- shared -----------------------------------------------------------------------------------------------


def _usable(texts: Sequence[str], parse: Callable[[str], K], what: str) -> list[K]:
    keys: list[K] = []
    problems: list[str] = []
    for index, text in enumerate(texts):
        try:
            keys.append(parse(text))
        except ValueError as exc:
            problems.append(f"key {index}: {exc}")
    if not texts:
        raise SignatureError("no_secret", f"no {what} is configured")
    if not keys:
        raise SignatureError("no_secret", f"no configured {what} is usable ({'; '.join(problems)})")
    return keys


def _problem(parse: Callable[[str], K], text: str) -> str | None:
    try:
        parse(text)
    except ValueError as exc:
        return str(exc)
    return None


def _header(headers: Headers, name: str, missing: str = "missing_signature") -> str:
    value = only_value(headers, name)
    if not value:  # an empty header counts as absent
        raise SignatureError(missing, f"no {name} header")
    if len(value) > MAX_HEADER:
        raise SignatureError("malformed_signature", f"{name} is longer than {MAX_HEADER} bytes")
    return value


def _timestamp(text: str, name: str) -> int:
    if not _TIMESTAMP.fullmatch(text):
        raise SignatureError("malformed_timestamp", f"{name} should be integer seconds, got {text[:40]!r}")
    return int(text)


def _decode_hex(text: str, name: str, size: int) -> bytes:
    if not _HEX.fullmatch(text) or len(text) != size * 2:
        raise SignatureError("malformed_signature", f"{name} should be {size * 2} hex digits")
    return bytes.fromhex(text)


def _decode_b64(text: str, name: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if not raw:
        raise SignatureError("malformed_signature", f"{name} should be base64")
    return raw


def _no_match(header: str, count: int, what: str) -> str:
    which = f"the configured {what}" if count == 1 else f"any of the {count} configured {what}s"
    return f"the signature in {header} does not match {which}: wrong key, or the body was altered"


# -- PayPal -----------------------------------------------------------------------------------------------

PAYPAL_SIGNATURE = "PAYPAL-TRANSMISSION-SIG"
PAYPAL_ID = "PAYPAL-TRANSMISSION-ID"
PAYPAL_TIME = "PAYPAL-TRANSMISSION-TIME"
PAYPAL_ALGO = "PAYPAL-AUTH-ALGO"
PAYPAL_CERT_URL = "PAYPAL-CERT-URL"
# The hosts PayPal's REST API lives on (live and sandbox, classic and api-m); certs are served under
# /v1/notifications/certs/. https://developer.paypal.com/api/rest/webhooks/rest/
PAYPAL_CERT_HOSTS = frozenset(
    {"api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com", "api-m.sandbox.paypal.com"}
)
# The signing certificate's subject, as PayPal's own Java SDK checks it (SSLUtil.validateCertificateChain).
PAYPAL_CERT_NAMES = frozenset(
    {"messageverificationcerts.paypal.com", "messageverificationcerts.sandbox.paypal.com"}
)


def paypal_cert_url_allowed(url: str) -> bool:
    """Whether ``url`` (the PAYPAL-CERT-URL header) may be fetched: https, a PayPal API host, one certificate
    name under the certs path (no ``..``, no query: the sender must not steer the fetch elsewhere).

    Anything else could make the gateway trust a certificate an attacker chose, or call an internal host.
    """
    if not url.isprintable() or " " in url:  # urlsplit silently drops tabs and newlines
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.hostname in PAYPAL_CERT_HOSTS
        and port in (None, 443)
        and parts.username is None
        and parts.password is None
        and _PAYPAL_CERT_PATH.fullmatch(parts.path) is not None
        and not parts.query
        and not parts.fragment
    )


# e.g. /v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77: one name, which cannot be "." or "..".
_PAYPAL_CERT_PATH = re.compile(r"/v1/notifications/certs/[A-Za-z0-9_-][A-Za-z0-9._-]*")


def verify_paypal(
    headers: Headers,
    body: bytes,
    *,
    webhook_id: str,
    certificate_pem: bytes,
    trust_anchors_pem: Sequence[bytes],
    now: float,
) -> None:
    """Check PayPal's RSA signature over ``<transmission-id>|<transmission-time>|<webhook_id>|<crc32(body)>``.

    ``certificate_pem`` is what PAYPAL-CERT-URL served (the signing certificate, then any intermediates); it
    must be valid at ``now``, be PayPal's message-verification certificate, and chain to a trust anchor.
    The body is bound only through CRC32, as PayPal designed it.
    https://developer.paypal.com/api/rest/webhooks/rest/#link-selfverificationmethod
    """
    algorithm = _header(headers, PAYPAL_ALGO, "malformed_signature")
    if algorithm != "SHA256withRSA":
        raise SignatureError("malformed_signature", f"{PAYPAL_ALGO} is {algorithm[:40]!r}, not SHA256withRSA")
    signature = _decode_b64(_header(headers, PAYPAL_SIGNATURE), PAYPAL_SIGNATURE)
    transmission_id = _header(headers, PAYPAL_ID, "malformed_signature")
    transmission_time = _header(headers, PAYPAL_TIME, "missing_timestamp")
    public_key = _paypal_certificate(certificate_pem, trust_anchors_pem, now)
    message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}".encode()
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureError(
            "bad_signature",
            f"the signature in {PAYPAL_SIGNATURE} does not match PayPal's certificate: wrong webhook id, "
            "or the body was altered",
        ) from None


def _paypal_certificate(pem: bytes, anchors_pem: Sequence[bytes], now: float) -> rsa.RSAPublicKey:
    """The signing key of a certificate chain that is valid at ``now`` and ends at one of ``anchors_pem``."""
    try:
        leaf, *intermediates = x509.load_pem_x509_certificates(pem)
        anchors = [cert for blob in anchors_pem for cert in x509.load_pem_x509_certificates(blob)]
    except ValueError:
        raise SignatureError("untrusted_certificate", "the PayPal certificate is not PEM X.509") from None
    if not anchors:
        raise SignatureError("untrusted_certificate", "no trust anchor is configured for PayPal")
    # The default WebPKI rules for the CAs; the leaf is a signing certificate, not a TLS server, so its
    # extensions are not held to server rules. Its name is checked below instead.
    builder = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(datetime.fromtimestamp(now, UTC))
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
    )
    try:
        builder.build_client_verifier().verify(leaf, intermediates)
    except VerificationError as exc:
        raise SignatureError(
            "untrusted_certificate", f"the PayPal certificate does not chain to a trust anchor at now: {exc}"
        ) from None
    names = {a.value for a in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)}
    if not names & PAYPAL_CERT_NAMES:
        raise SignatureError(
            "untrusted_certificate",
            f"the certificate is issued to {sorted(map(str, names))}, not to {sorted(PAYPAL_CERT_NAMES)}",
        )
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("untrusted_certificate", "the PayPal certificate does not hold an RSA key")
    return key


# -- signing with a test private key (for `gateway sign` and tests; the gateway never needs one) ----------


def sign_public_key_scheme(fmt: str, private_key: str, body: bytes, timestamp: int) -> list[tuple[str, str]]:
    """The headers Discord (``fmt="discord"``) or SendGrid (``"sendgrid"``) would send, signed with a private
    key the operator configured for testing (``signing_key:``): Discord a 64-hex Ed25519 seed or a PEM key,
    SendGrid a PEM P-256 key. Raises ValueError with a clear message for anything else."""
    stamp = str(timestamp)
    message = stamp.encode() + body
    key = _private_key(private_key)
    if fmt == "discord":
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("a Discord signing_key must be an Ed25519 private key (64 hex digits or PEM)")
        return [(DISCORD_SIGNATURE, key.sign(message).hex()), (DISCORD_TIMESTAMP, stamp)]
    if fmt == "sendgrid":
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("a SendGrid signing_key must be a PEM P-256 (prime256v1) private key")
        signature = base64.b64encode(key.sign(message, ec.ECDSA(hashes.SHA256()))).decode()
        return [(SENDGRID_SIGNATURE, signature), (SENDGRID_TIMESTAMP, stamp)]
    raise ValueError(f"no test signing for {fmt}")


def signing_key_problem(fmt: str, text: str) -> str | None:
    """Why ``text`` cannot sign test deliveries for ``fmt`` (config loader), or None; never shows it."""
    try:
        sign_public_key_scheme(fmt, text, b"", 0)
    except ValueError as exc:
        return str(exc)
    return None


def _private_key(text: str) -> object:
    stripped = text.strip()
    if _HEX.fullmatch(stripped) and len(stripped) == 64:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(stripped))
    try:
        return serialization.load_pem_private_key(stripped.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError("signing_key must be a private key: 64 hex digits (Ed25519 seed) or PEM") from None

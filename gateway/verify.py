"""Check a delivery's signature against a scheme row, and sign bodies the way each provider does.

Pure: no clock, no environment, no I/O; ``now`` is passed in. Vendor header formats are thin adapters
in front of one verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import SignatureError
from gateway.model import Headers, Request, Secret, Verdict, new_id
from gateway.schemes import PLACEHOLDER, Scheme

MAX_HEADER = 8 * 1024  # a longer signature header is malformed, never parsed
MAX_SIGNATURES = 20  # bounds the work one request can cause (an Ed25519 check costs ~160 µs)
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True, slots=True, repr=False)
class _Key:
    """One configured secret decoded for its scheme: an HMAC key or an Ed25519 key. Never printed."""

    mac: bytes | None = None
    public: Ed25519PublicKey | None = None
    private: Ed25519PrivateKey | None = None

    def __repr__(self) -> str:
        return "_Key(**********)"


@dataclass(frozen=True, slots=True)
class _Presented:
    """What a delivery carries: signatures as (kind, bytes), kind "mac" or "ed25519", and signed values."""

    header: str  # the signature header that was read
    signatures: tuple[tuple[str, bytes], ...]
    timestamp: tuple[str, str] | None = None  # (where it was found, text as sent)
    msg_id: str | None = None


def verify(
    scheme: Scheme, secrets: Sequence[Secret], request: Request, *, now: float, tolerance: int | None
) -> Verdict:
    """Accept ``request`` if any of ``secrets`` made one of its signatures; raise :class:`SignatureError`.

    ``tolerance`` is the resolved freshness window in seconds (None skips the time check).
    """
    if not scheme.verified:
        return Verdict(verified=False, scheme=scheme.name)
    keys = _usable_keys(scheme, secrets)
    presented = _ADAPTERS[scheme.signature_format](scheme, request.headers)
    timestamp = _parse_timestamp(*presented.timestamp) if presented.timestamp else None
    ts_text = presented.timestamp[1] if presented.timestamp else None
    message = _signed_bytes(scheme.signed, request.body, ts_text, presented.msg_id)
    key_index = _match(scheme, keys, presented.signatures, message)
    if key_index is None:
        which = "the configured secret" if len(keys) == 1 else f"any of the {len(keys)} configured secrets"
        raise SignatureError(
            "bad_signature",
            f"no signature in {presented.header} matches {which}: wrong secret, or the body was altered",
        )
    # Checked after the signature, so a stale_timestamp always means a genuine but old (or replayed) delivery.
    if timestamp is not None and tolerance is not None:
        _check_fresh(scheme, timestamp, now, tolerance)
    return Verdict(verified=True, scheme=scheme.name, timestamp=timestamp, key_index=key_index)


def sign(
    scheme: Scheme, secret: Secret | None, body: bytes, *, now: float, msg_id: str | None = None
) -> list[tuple[str, str]]:
    """The signature-related headers the provider would send with ``body`` at ``now``.

    Raises ``SignatureError("no_secret", …)`` without a secret, ``ValueError`` if the secret cannot sign.
    """
    if not scheme.verified:
        return []
    if secret is None or not secret.reveal():
        raise SignatureError("no_secret", f"{scheme.name} needs a secret to sign")
    key = _key(scheme, secret)
    timestamp = str(int(now))
    if msg_id is None and "{id}" in scheme.signed:
        msg_id = new_id("msg", now)
    message = _signed_bytes(scheme.signed, body, timestamp, msg_id)
    if scheme.signature_format == "standard-webhooks":
        if key.private is not None:
            signature = "v1a," + base64.b64encode(key.private.sign(message)).decode()
        elif key.mac is not None:
            signature = "v1," + base64.b64encode(_digest(scheme, key.mac, message)).decode()
        else:
            raise ValueError("a whpk_ public key can only verify; sign with the matching whsk_ private key")
        return [
            (scheme.id_headers[0], msg_id or ""),
            (scheme.timestamp_headers[0], timestamp),
            (scheme.signature_headers[0], signature),
        ]
    if key.mac is None:
        raise ValueError(f"{scheme.name} signs with an HMAC secret, not an Ed25519 key")
    digest = _digest(scheme, key.mac, message)
    if scheme.signature_format == "stripe":
        return [(scheme.signature_headers[0], f"t={timestamp},v1={digest.hex()}")]
    encoded = digest.hex() if scheme.encoding == "hex" else base64.b64encode(digest).decode()
    headers = [(scheme.signature_headers[0], scheme.prefix + encoded)]
    if "{timestamp}" in scheme.signed:
        headers.append((scheme.timestamp_headers[0], timestamp))
    if "{id}" in scheme.signed:
        headers.append((scheme.id_headers[0], msg_id or ""))
    return headers


def secret_problem(scheme: Scheme, secret: Secret) -> str | None:
    """Why ``secret`` cannot be used with ``scheme`` (for the config loader), or None. Never shows it."""
    try:
        _key(scheme, secret)
    except ValueError as exc:
        return str(exc)
    return None


# -- adapters: one per header format, each turning headers into a _Presented --------------------------------


def _prefixed(scheme: Scheme, headers: Headers) -> _Presented:
    """One digest in one header, optionally behind a prefix (GitHub, the generic hmac recipe)."""
    name, value = _signature_header(scheme, headers)
    size = hashlib.new(scheme.algorithm).digest_size
    encoded = value[len(scheme.prefix) :] if value.startswith(scheme.prefix) else ""
    digest = _decode(encoded, scheme.encoding)
    if digest is None or len(digest) != size:
        shape = f"{size * 2} hex digits" if scheme.encoding == "hex" else f"base64 of {size} bytes"
        raise SignatureError("malformed_signature", f"{name} should look like '{scheme.prefix}<{shape}>'")
    timestamp = _signed_header(scheme, headers, "timestamp")
    msg_id = _signed_header(scheme, headers, "id")
    return _Presented(name, (("mac", digest),), timestamp, msg_id[1] if msg_id else None)


def _stripe(scheme: Scheme, headers: Headers) -> _Presented:
    """``t=<ts>,v1=<hex>[,v1=…][,v0=…]`` — https://docs.stripe.com/webhooks#verify-manually"""
    name, value = _signature_header(scheme, headers)
    timestamp: str | None = None
    signatures: list[tuple[str, bytes]] = []
    for item in value.split(","):
        key, _, text = item.partition("=")
        if key == "t" and timestamp is None:
            timestamp = text
        # Only v1 counts: test-mode events add an unverifiable v0, which must neither match nor fail.
        elif key == "v1" and len(signatures) < MAX_SIGNATURES and (digest := _decode(text, "hex")):
            signatures.append(("mac", digest))
    if not signatures:
        raise SignatureError("malformed_signature", f"{name} has no v1=<hex> signature (v0 is ignored)")
    if timestamp is None:
        raise SignatureError("missing_timestamp", f"{name} has no t= element")
    return _Presented(name, tuple(signatures), (f"the t= in {name}", timestamp))


def _standard_webhooks(scheme: Scheme, headers: Headers) -> _Presented:
    """Space-separated ``v1,<base64>`` (HMAC) and ``v1a,<base64>`` (Ed25519) — https://www.standardwebhooks.com/"""
    name, value = _signature_header(scheme, headers)
    kinds = {"v1": "mac", "v1a": "ed25519"}  # other versions are ignored
    signatures: list[tuple[str, bytes]] = []
    for entry in value.split(" ", MAX_SIGNATURES)[:MAX_SIGNATURES]:
        version, _, text = entry.partition(",")
        if version in kinds and (digest := _decode(text, "base64")):
            signatures.append((kinds[version], digest))
    if not signatures:
        raise SignatureError("malformed_signature", f"{name} has no 'v1,<base64>' or 'v1a,<base64>' entry")
    timestamp = _signed_header(scheme, headers, "timestamp")
    msg_id = _signed_header(scheme, headers, "id")
    return _Presented(name, tuple(signatures), timestamp, msg_id[1] if msg_id else None)


_ADAPTERS: dict[str, Callable[[Scheme, Headers], _Presented]] = {
    "prefixed": _prefixed,
    "stripe": _stripe,
    "standard-webhooks": _standard_webhooks,
}


def _signature_header(scheme: Scheme, headers: Headers) -> tuple[str, str]:
    found = _first(headers, scheme.signature_headers)
    if found is None:
        raise SignatureError("missing_signature", f"no {' or '.join(scheme.signature_headers)} header")
    if len(found[1]) > MAX_HEADER:
        raise SignatureError("malformed_signature", f"{found[0]} is longer than {MAX_HEADER} bytes")
    return found


def _signed_header(scheme: Scheme, headers: Headers, name: str) -> tuple[str, str] | None:
    """The header holding a signed ``{timestamp}`` or ``{id}``, or None if the template does not sign it."""
    if f"{{{name}}}" not in scheme.signed:
        return None
    names = scheme.timestamp_headers if name == "timestamp" else scheme.id_headers
    found = _first(headers, names)
    if found is None:
        reason = "missing_timestamp" if name == "timestamp" else "missing_signature"
        raise SignatureError(reason, f"no {' or '.join(names)} header ({scheme.name} signs it)")
    return found


def _first(headers: Headers, names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        if headers.get(name):  # an empty header counts as absent
            return name, headers[name]
    return None


# -- the one verifier -------------------------------------------------------------------------------------


def _match(
    scheme: Scheme, keys: list[tuple[int, _Key]], signatures: tuple[tuple[str, bytes], ...], message: bytes
) -> int | None:
    for index, key in keys:
        if key.mac is not None:
            expected = _digest(scheme, key.mac, message)
            # compare_digest takes the same time wherever the bytes differ, so response timing cannot
            # be used to guess a valid signature byte by byte.
            if any(hmac.compare_digest(expected, sig) for kind, sig in signatures if kind == "mac"):
                return index
        public = key.private.public_key() if key.private is not None else key.public
        if public is not None and any(
            _ed25519_ok(public, sig, message) for kind, sig in signatures if kind == "ed25519"
        ):
            return index
    return None


def _ed25519_ok(public: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _digest(scheme: Scheme, key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, scheme.algorithm).digest()


def _signed_bytes(template: str, body: bytes, timestamp: str | None, msg_id: str | None) -> bytes:
    """The exact bytes a scheme signs: its template with the raw body and header values put in."""
    values = {"body": body, "timestamp": (timestamp or "").encode(), "id": (msg_id or "").encode()}
    parts: list[bytes] = []
    pos = 0
    for m in PLACEHOLDER.finditer(template):
        parts += [template[pos : m.start()].encode(), values.get(m.group(1), m.group(0).encode())]
        pos = m.end()
    parts.append(template[pos:].encode())
    return b"".join(parts)


def _parse_timestamp(where: str, text: str) -> int:
    if not _TIMESTAMP.fullmatch(text):
        raise SignatureError("malformed_timestamp", f"{where} should be integer seconds, got {text[:40]!r}")
    return int(text)


def _check_fresh(scheme: Scheme, timestamp: int, now: float, tolerance: int) -> None:
    age = now - timestamp
    if age > tolerance:
        detail = f"timestamp {timestamp} is {age:.0f} s old, past the {tolerance} s tolerance"
        raise SignatureError("stale_timestamp", f"{detail} (a replay, or a clock out of sync)")
    if scheme.reject_future and -age > tolerance:
        detail = f"timestamp {timestamp} is {-age:.0f} s in the future, past the {tolerance} s tolerance"
        raise SignatureError("stale_timestamp", f"{detail} (a clock out of sync)")


# -- keys -------------------------------------------------------------------------------------------------


def _usable_keys(scheme: Scheme, secrets: Sequence[Secret]) -> list[tuple[int, _Key]]:
    keys: list[tuple[int, _Key]] = []
    problems: list[str] = []
    for index, secret in enumerate(secrets):
        try:
            keys.append((index, _key(scheme, secret)))
        except ValueError as exc:
            problems.append(f"secret {index}: {exc}")
    if not secrets:
        raise SignatureError("no_secret", f"{scheme.name} needs a secret and none is configured")
    if not keys:
        raise SignatureError("no_secret", f"no configured secret is usable ({'; '.join(problems)})")
    return keys


def _key(scheme: Scheme, secret: Secret) -> _Key:
    """Decode a secret for its scheme. Error messages describe the shape, never the value."""
    value = secret.reveal()
    if not value:
        raise ValueError("the secret is empty")
    if scheme.key_format == "raw":
        return _Key(mac=value.encode())  # Stripe, GitHub: the string itself, `whsec_` and all
    if value.startswith("whpk_"):
        raw = _decode_key(value[5:])
        if raw is None or len(raw) != 32:
            raise ValueError("a whpk_ key must be base64 of a 32-byte Ed25519 public key")
        return _Key(public=Ed25519PublicKey.from_public_bytes(raw))
    if value.startswith("whsk_"):
        raw = _decode_key(value[5:])
        if raw is None or len(raw) not in (32, 64):  # the 32-byte seed, or seed + public key (Go's layout)
            raise ValueError("a whsk_ key must be base64 of a 32-byte Ed25519 seed")
        return _Key(private=Ed25519PrivateKey.from_private_bytes(raw[:32]))
    # Standard Webhooks: strip whsec_ and base64-decode; the spec also allows the bare base64.
    raw = _decode_key(value.removeprefix("whsec_"))
    if not raw:
        raise ValueError("a Standard Webhooks secret must be base64 (optionally after 'whsec_')")
    return _Key(mac=raw)


def _decode_key(text: str) -> bytes | None:
    # Tolerate unpadded base64, as the reference library does.
    return _decode(text + "=" * (-len(text) % 4), "base64")


def _decode(text: str, encoding: str) -> bytes | None:
    if not text:
        return None
    if encoding == "hex":
        return bytes.fromhex(text) if _HEX.fullmatch(text) and len(text) % 2 == 0 else None
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None

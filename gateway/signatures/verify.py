"""Check a delivery's signature against a scheme row (signing, for tests and `gateway sign`: signing.py).

Pure: no clock, no environment, no I/O; ``now`` is passed in. Vendor formats are thin adapters
(``gateway/signatures/adapters.py``) in front of one verifier.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import SignatureError
from gateway.model import Headers, Inbound, Secret, Verdict
from gateway.signatures.adapters import ADAPTERS, MAX_HEADER, MAX_SIGNATURES, decode, first_header
from gateway.signatures.asymmetric import (
    discord_key_problem,
    sendgrid_key_problem,
    verify_discord,
    verify_sendgrid,
)
from gateway.signatures.remote import jwt_key_problem, verify_remote
from gateway.signatures.schemes import GITLAB_SIGNING, GITLAB_TOKEN, PLACEHOLDER, RemoteSettings, Scheme

__all__ = ["MAX_HEADER", "MAX_SIGNATURES", "key_for", "secret_problem", "signed_bytes", "verify"]

_TIMESTAMP = re.compile(r"[0-9]{1,15}")


@dataclass(frozen=True, slots=True, repr=False)
class DecodedKey:
    """One configured secret decoded for its scheme: an HMAC key or an Ed25519 key. Never printed."""

    mac: bytes | None = None
    public: Ed25519PublicKey | None = None
    private: Ed25519PrivateKey | None = None

    def __repr__(self) -> str:
        return "DecodedKey(**********)"


def verify(
    scheme: Scheme,
    secrets: Sequence[Secret],
    request: Inbound,
    *,
    now: float,
    tolerance: int | None,
    material: Any = None,
    remote: RemoteSettings | None = None,
) -> Verdict:
    """Accept ``request`` if any of ``secrets`` made one of its signatures; raise :class:`SignatureError`.

    ``tolerance`` is the resolved freshness window in seconds (None skips the time check). For schemes
    that sign the URL (Twilio, Square) ``request.url`` must be the URL the sender called. Remote-key schemes
    take the fetched key as ``material`` (see gateway/keys/keyring.py) and the source's ``remote`` settings.
    """
    if not scheme.verified:
        return Verdict(verified=False, scheme=scheme.name)
    if scheme.remote_keys:
        return verify_remote(scheme, secrets, request, now, material, remote or RemoteSettings())
    if scheme.signature_format == "gitlab":
        return _gitlab(scheme, secrets, request, now=now, tolerance=tolerance)
    if scheme.signature_format in PUBLIC_KEY_CHECKS:
        return _public_key(scheme, secrets, request, now=now, tolerance=tolerance)
    keys = _usable_keys(scheme, secrets)
    if scheme.signs_url:
        _require_url(scheme, request.url)
    presented = ADAPTERS[scheme.signature_format](scheme, request)
    timestamp = _parse_timestamp(scheme, *presented.timestamp) if presented.timestamp else None
    ts_text = presented.timestamp[1] if presented.timestamp else None
    messages = presented.messages or (
        signed_bytes(scheme.signed, request.body, ts_text, presented.msg_id, request.url),
    )
    algorithm = presented.algorithm or scheme.algorithm
    key_index = _match(algorithm, keys, presented.signatures, messages)
    if key_index is None:
        which = "the configured secret" if len(keys) == 1 else f"any of the {len(keys)} configured secrets"
        if presented.signatures[0][0] == "secret":
            raise SignatureError("bad_signature", f"{presented.header} does not match {which}")
        raise SignatureError(
            "bad_signature",
            f"no signature in {presented.header} matches {which}: wrong secret, "
            f"or {presented.covers} was altered",
        )
    # Checked after the signature, so a stale_timestamp always means a genuine but old (or replayed) delivery.
    seconds = None if timestamp is None else timestamp // 1000 if scheme.timestamp_ms else timestamp
    if timestamp is not None and tolerance is not None:
        _check_fresh(scheme, timestamp, now, tolerance)
    return Verdict(verified=True, scheme=scheme.name, timestamp=seconds, key_index=key_index)


def _gitlab(
    scheme: Scheme, secrets: Sequence[Secret], request: Inbound, *, now: float, tolerance: int | None
) -> Verdict:
    """GitLab's two mechanisms. A ``whsec_`` secret is a signing token: when one is configured and the
    delivery carries ``webhook-signature``, that signature decides (Standard Webhooks). Otherwise the
    ``X-Gitlab-Token`` header must equal one of the other secrets (compared in constant time)."""
    signing = [i for i, s in enumerate(secrets) if s.reveal().startswith("whsec_")]
    tokens = [i for i in range(len(secrets)) if i not in signing]
    if signing and first_header(request.headers, GITLAB_SIGNING.signature_headers):
        verdict = verify(GITLAB_SIGNING, [secrets[i] for i in signing], request, now=now, tolerance=tolerance)
        return Verdict(True, scheme.name, verdict.timestamp, signing[verdict.key_index or 0])
    if signing and not tokens:
        raise SignatureError(
            "missing_signature", "no webhook-signature header (the whsec_ secret is a GitLab signing token)"
        )
    verdict = verify(GITLAB_TOKEN, [secrets[i] for i in tokens], request, now=now, tolerance=None)
    return Verdict(True, scheme.name, None, tokens[verdict.key_index or 0])


# Schemes signed with the provider's private key: the gateway holds public keys
# (gateway/signatures/asymmetric.py).
PUBLIC_KEY_CHECKS: dict[str, Callable[[Sequence[str], Headers, bytes], int]] = {
    "discord": verify_discord,
    "sendgrid": verify_sendgrid,
}
_PUBLIC_KEY_PROBLEMS: dict[str, Callable[[str], str | None]] = {
    "discord": discord_key_problem,
    "sendgrid": sendgrid_key_problem,
}


def _public_key(
    scheme: Scheme, secrets: Sequence[Secret], request: Inbound, *, now: float, tolerance: int | None
) -> Verdict:
    if not secrets:
        raise SignatureError("no_secret", f"{scheme.name} needs the provider's public key (public_key: …)")
    timestamp = PUBLIC_KEY_CHECKS[scheme.signature_format](
        [s.reveal() for s in secrets], request.headers, request.body
    )
    if tolerance is not None:  # checked after the signature, as for every scheme
        _check_fresh(scheme, timestamp, now, tolerance)
    return Verdict(verified=True, scheme=scheme.name, timestamp=timestamp)


def secret_problem(scheme: Scheme, secret: Secret) -> str | None:
    """Why ``secret`` cannot be used with ``scheme`` (for the config loader), or None. Never shows it."""
    if scheme.signature_format == "jwt":
        return jwt_key_problem(secret.reveal())
    if scheme.signature_format in _PUBLIC_KEY_PROBLEMS:
        return _PUBLIC_KEY_PROBLEMS[scheme.signature_format](secret.reveal())
    try:
        key_for(scheme, secret)
    except ValueError as exc:
        return str(exc)
    return None


# -- the one verifier -------------------------------------------------------------------------------------


def _match(
    algorithm: str,
    keys: list[tuple[int, DecodedKey]],
    signatures: tuple[tuple[str, bytes], ...],
    messages: tuple[bytes, ...],
) -> int | None:
    for index, key in keys:
        if key.mac is not None and _mac_matches(algorithm, key.mac, signatures, messages):
            return index
        public = key.private.public_key() if key.private is not None else key.public
        if public is not None and any(
            _ed25519_ok(public, sig, message)
            for kind, sig in signatures
            if kind == "ed25519"
            for message in messages
        ):
            return index
    return None


def _mac_matches(
    algorithm: str, key: bytes, signatures: tuple[tuple[str, bytes], ...], messages: tuple[bytes, ...]
) -> bool:
    # compare_digest takes the same time wherever the bytes differ, so response timing cannot be used to
    # guess a valid signature byte by byte. A secret sent in clear is hashed first, so neither does the
    # comparison time reveal its length.
    for kind, sig in signatures:
        if kind == "secret" and hmac.compare_digest(
            hashlib.sha256(key).digest(), hashlib.sha256(sig).digest()
        ):
            return True
        if kind == "mac" and any(
            hmac.compare_digest(hmac.digest(key, message, algorithm), sig) for message in messages
        ):
            return True
    return False


def _ed25519_ok(public: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def signed_bytes(
    template: str, body: bytes, timestamp: str | None, msg_id: str | None, url: str | None = None
) -> bytes:
    """The exact bytes a scheme signs: its template with the raw body and header values put in."""
    values = {
        "body": body,
        "timestamp": (timestamp or "").encode(),
        "id": (msg_id or "").encode(),
        "url": (url or "").encode(),
    }
    parts: list[bytes] = []
    pos = 0
    for m in PLACEHOLDER.finditer(template):
        parts += [template[pos : m.start()].encode(), values.get(m.group(1), m.group(0).encode())]
        pos = m.end()
    parts.append(template[pos:].encode())
    return b"".join(parts)


def _require_url(scheme: Scheme, url: str) -> None:
    # The URL is built from the Host header, which anyone can set: `https://[/hooks/x` must be a rejection,
    # not a ValueError from urlsplit in the adapter.
    try:
        urlsplit(url)
    except ValueError:
        raise SignatureError(
            "bad_signature", f"{scheme.name} signs the URL it called, and {url[:80]!r} is not a valid URL"
        ) from None


def _parse_timestamp(scheme: Scheme, where: str, text: str) -> int:
    if not _TIMESTAMP.fullmatch(text):
        unit = "milliseconds" if scheme.timestamp_ms else "seconds"
        raise SignatureError("malformed_timestamp", f"{where} should be integer {unit}, got {text[:40]!r}")
    return int(text)


def _check_fresh(scheme: Scheme, timestamp: int, now: float, tolerance: int) -> None:
    shown = f"{timestamp} ms" if scheme.timestamp_ms else f"{timestamp}"
    age = now - (timestamp / 1000 if scheme.timestamp_ms else timestamp)
    if age > tolerance:
        detail = f"timestamp {shown} is {age:.0f} s old, past the {tolerance} s tolerance"
        raise SignatureError("stale_timestamp", f"{detail} (a replay, or a clock out of sync)")
    if scheme.reject_future and -age > tolerance:
        detail = f"timestamp {shown} is {-age:.0f} s in the future, past the {tolerance} s tolerance"
        raise SignatureError("stale_timestamp", f"{detail} (a clock out of sync)")


# -- keys -------------------------------------------------------------------------------------------------


def _usable_keys(scheme: Scheme, secrets: Sequence[Secret]) -> list[tuple[int, DecodedKey]]:
    keys: list[tuple[int, DecodedKey]] = []
    problems: list[str] = []
    for index, secret in enumerate(secrets):
        try:
            keys.append((index, key_for(scheme, secret)))
        except ValueError as exc:
            problems.append(f"secret {index}: {exc}")
    if not secrets:
        raise SignatureError("no_secret", f"{scheme.name} needs a secret and none is configured")
    if not keys:
        raise SignatureError("no_secret", f"no configured secret is usable ({'; '.join(problems)})")
    return keys


def key_for(scheme: Scheme, secret: Secret) -> DecodedKey:
    """Decode a secret for its scheme. Error messages describe the shape, never the value."""
    value = secret.reveal()
    if not value:
        raise ValueError("the secret is empty")
    if scheme.key_format == "basic" and ":" not in value:
        raise ValueError("a basic secret must look like 'username:password'")
    if scheme.key_format in ("raw", "basic") or (
        scheme.key_format == "gitlab" and not value.startswith("whsec_")
    ):
        return DecodedKey(mac=value.encode())  # Stripe, GitHub…: the string itself, `whsec_` and all
    if value.startswith("whpk_"):
        raw = _decode_key(value[5:])
        if raw is None or len(raw) != 32:
            raise ValueError("a whpk_ key must be base64 of a 32-byte Ed25519 public key")
        return DecodedKey(public=Ed25519PublicKey.from_public_bytes(raw))
    if value.startswith("whsk_"):
        raw = _decode_key(value[5:])
        if raw is None or len(raw) not in (32, 64):  # the 32-byte seed, or seed + public key (Go's layout)
            raise ValueError("a whsk_ key must be base64 of a 32-byte Ed25519 seed")
        return DecodedKey(private=Ed25519PrivateKey.from_private_bytes(raw[:32]))
    # Standard Webhooks: strip whsec_ and base64-decode; the spec also allows the bare base64.
    raw = _decode_key(value.removeprefix("whsec_"))
    if not raw:
        raise ValueError("a Standard Webhooks secret must be base64 (optionally after 'whsec_')")
    return DecodedKey(mac=raw)


def _decode_key(text: str) -> bytes | None:
    # Tolerate unpadded base64, as the reference library does.
    return decode(text + "=" * (-len(text) % 4), "base64")

"""Per-provider signature formats: thin adapters that turn a request into what
``gateway/signatures/verify.py`` checks.

Pure: no clock, no environment, no I/O. Each adapter reads its header (or body field) and says which
signatures were presented, which signed values came with them, and, when the signed bytes are not a
template over the body (Twilio, Mailgun), the exact candidate messages.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

from gateway.errors import SignatureError
from gateway.model import Headers, Inbound
from gateway.signatures.schemes import Scheme

MAX_HEADER = 8 * 1024  # a longer signature header is malformed, never parsed
MAX_SIGNATURES = 20  # bounds the work one request can cause (an Ed25519 check costs ~160 µs)
_HEX = re.compile(r"[0-9a-fA-F]+")
# X-Twilio-Webhooks-Signature-Settings names the SharedKey algorithm (twilio-python request_validator.py).
_TWILIO_ALGORITHMS = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}


@dataclass(frozen=True, slots=True)
class Presented:
    """What a delivery carries: signatures as (kind, bytes) and the values they sign.

    kind is "mac" (an HMAC digest), "ed25519" or "secret" (a shared secret sent in clear, e.g. a token).
    ``messages``, when not empty, are the candidate signed messages (else the scheme's template is used).
    """

    header: str  # where the signature was read, for error details
    signatures: tuple[tuple[str, bytes], ...]
    timestamp: tuple[str, str] | None = None  # (where it was found, text as sent)
    msg_id: str | None = None
    messages: tuple[bytes, ...] = ()
    algorithm: str | None = None  # overrides the scheme's (Twilio SharedKey announces SHA-256)
    covers: str = "the body"  # what an altered delivery changed, for the bad_signature detail


def decode(text: str, encoding: str) -> bytes | None:
    if not text:
        return None
    if encoding == "hex":
        return bytes.fromhex(text) if _HEX.fullmatch(text) and len(text) % 2 == 0 else None
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


def only_value(headers: Headers, name: str) -> str | None:
    """The one value of a signed header (None when absent). Sent twice, which value the sender signed is
    unknowable: a valid first value followed by a forged one must not pass, so a repeat is refused."""
    values = headers.get_all(name)
    if len(values) > 1:
        raise SignatureError(
            "repeated_header", f"{name} is sent {len(values)} times; a delivery carries its signature once"
        )
    return values[0] if values else None


def first_header(headers: Headers, names: tuple[str, ...]) -> tuple[str, str] | None:
    """The first of ``names`` present (an empty header counts as absent) with its one value."""
    for name in names:
        value = only_value(headers, name)
        if value:
            return name, value
    return None


def signature_header(scheme: Scheme, headers: Headers) -> tuple[str, str]:
    found = first_header(headers, scheme.signature_headers)
    if found is None:
        raise SignatureError("missing_signature", f"no {' or '.join(scheme.signature_headers)} header")
    if len(found[1]) > MAX_HEADER:
        raise SignatureError("malformed_signature", f"{found[0]} is longer than {MAX_HEADER} bytes")
    return found


def _signed_header(scheme: Scheme, headers: Headers, name: str) -> tuple[str, str] | None:
    """The header holding a signed ``{timestamp}`` or ``{id}``, or None if the template does not sign it."""
    if f"{{{name}}}" not in scheme.signed or (name == "timestamp" and scheme.timestamp_field):
        return None
    names = scheme.timestamp_headers if name == "timestamp" else scheme.id_headers
    found = first_header(headers, names)
    if found is None:
        reason = "missing_timestamp" if name == "timestamp" else "missing_signature"
        raise SignatureError(reason, f"no {' or '.join(names)} header ({scheme.name} signs it)")
    return found


@functools.cache
def _digest_size(algorithm: str) -> int:
    return hashlib.new(algorithm).digest_size


# -- header formats ---------------------------------------------------------------------------------------


def _prefixed(scheme: Scheme, request: Inbound) -> Presented:
    """One digest in one header, optionally behind a prefix (GitHub, Slack, Shopify, Linear, the recipe…)."""
    name, value = signature_header(scheme, request.headers)
    size = _digest_size(scheme.algorithm)
    encoded = value[len(scheme.prefix) :] if value.startswith(scheme.prefix) else ""
    digest = decode(encoded, scheme.encoding)
    if digest is None or len(digest) != size:
        shape = f"{size * 2} hex digits" if scheme.encoding == "hex" else f"base64 of {size} bytes"
        raise SignatureError("malformed_signature", f"{name} should look like '{scheme.prefix}<{shape}>'")
    timestamp = _signed_header(scheme, request.headers, "timestamp")
    if scheme.timestamp_field:
        timestamp = _body_timestamp(scheme, request.body)
    msg_id = _signed_header(scheme, request.headers, "id")
    covers = "the URL or the body" if "{url}" in scheme.signed else "the body"
    return Presented(name, (("mac", digest),), timestamp, msg_id[1] if msg_id else None, covers=covers)


def _body_timestamp(scheme: Scheme, body: bytes) -> tuple[str, str]:
    """Linear puts its signed timestamp inside the (signed) JSON body, in milliseconds."""
    field = scheme.timestamp_field or ""
    data = _json_object(body)
    value = data.get(field) if data is not None else None
    if value is None:
        raise SignatureError("missing_timestamp", f"the body has no {field} ({scheme.name} signs it there)")
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else repr(value)
    return f"{field} in the body", text


def _stripe(scheme: Scheme, request: Inbound) -> Presented:
    """``t=<ts>,v1=<hex>[,v1=…][,v0=…]`` — https://docs.stripe.com/webhooks#verify-manually"""
    name, value = signature_header(scheme, request.headers)
    timestamp: str | None = None
    signatures: list[tuple[str, bytes]] = []
    for item in value.split(","):
        key, _, text = item.partition("=")
        if key == "t" and timestamp is None:
            timestamp = text
        # Only v1 counts: test-mode events add an unverifiable v0, which must neither match nor fail.
        elif key == "v1" and len(signatures) < MAX_SIGNATURES and (digest := decode(text, "hex")):
            signatures.append(("mac", digest))
    if not signatures:
        raise SignatureError("malformed_signature", f"{name} has no v1=<hex> signature (v0 is ignored)")
    if timestamp is None:
        raise SignatureError("missing_timestamp", f"{name} has no t= element")
    return Presented(name, tuple(signatures), (f"the t= in {name}", timestamp))


def _paddle(scheme: Scheme, request: Inbound) -> Presented:
    """``ts=<ts>;h1=<hex>[;h1=…]`` — https://developer.paddle.com/webhooks/signature-verification

    Every h1 is tried (up to 20); entries that are not 64 hex digits (the SDK's tests send ``h1=dummy``)
    and unknown keys are skipped, so a future algorithm added beside h1 does not break verification.
    """
    name, value = signature_header(scheme, request.headers)
    timestamp: str | None = None
    signatures: list[tuple[str, bytes]] = []
    for item in value.split(";"):
        key, _, text = item.strip().partition("=")
        if key == "ts" and timestamp is None:
            timestamp = text
        elif key == "h1" and len(signatures) < MAX_SIGNATURES and (digest := decode(text, "hex")):
            signatures.append(("mac", digest))
    if not signatures:
        raise SignatureError("malformed_signature", f"{name} has no h1=<64 hex digits> signature")
    if timestamp is None:
        raise SignatureError("missing_timestamp", f"{name} has no ts= element")
    return Presented(name, tuple(signatures), (f"the ts= in {name}", timestamp))


def _standard_webhooks(scheme: Scheme, request: Inbound) -> Presented:
    """Space-separated ``v1,<base64>`` (HMAC) and ``v1a,<base64>`` (Ed25519) — https://www.standardwebhooks.com/"""
    name, value = signature_header(scheme, request.headers)
    kinds = {"v1": "mac", "v1a": "ed25519"}  # other versions are ignored
    signatures: list[tuple[str, bytes]] = []
    for entry in value.split(" ", MAX_SIGNATURES)[:MAX_SIGNATURES]:
        version, _, text = entry.partition(",")
        if version in kinds and (digest := decode(text, "base64")):
            signatures.append((kinds[version], digest))
    if not signatures:
        raise SignatureError("malformed_signature", f"{name} has no 'v1,<base64>' or 'v1a,<base64>' entry")
    timestamp = _signed_header(scheme, request.headers, "timestamp")
    msg_id = _signed_header(scheme, request.headers, "id")
    return Presented(name, tuple(signatures), timestamp, msg_id[1] if msg_id else None)


def _token(scheme: Scheme, request: Inbound) -> Presented:
    """A shared secret sent in clear, in a header (X-Gitlab-Token, X-Api-Key) or a query parameter."""
    if scheme.signature_headers:
        name, value = signature_header(scheme, request.headers)
    else:
        param = scheme.secret_query[0]
        name = f"the {param} query parameter"
        value = next((v for k, v in request.query if k == param and v), "")
        if not value:
            raise SignatureError("missing_signature", f"no {param} query parameter")
    return Presented(name, (("secret", value.encode()),), covers="")


def _basic(scheme: Scheme, request: Inbound) -> Presented:
    """``Authorization: Basic <base64 of user:password>`` (RFC 7617)."""
    name, value = signature_header(scheme, request.headers)
    kind, _, encoded = value.partition(" ")
    credentials = decode(encoded.strip(), "base64") if kind.lower() == "basic" else None
    if credentials is None or b":" not in credentials:
        raise SignatureError(
            "malformed_signature", f"{name} should look like 'Basic <base64 of user:password>'"
        )
    return Presented(name, (("secret", credentials),), covers="")


# -- formats that sign more than a template over the body --------------------------------------------------


def _twilio(scheme: Scheme, request: Inbound) -> Presented:
    """HMAC over the URL Twilio called + sorted ``name+value`` of the form parameters, base64.

    https://www.twilio.com/docs/usage/webhooks/webhooks-security — a JSON body is bound through a
    ``bodySHA256=<hex>`` query parameter instead (the signature then covers the URL only). Like the SDK,
    the URL is tried as received, without its port and with the default port.
    """
    name, value = signature_header(scheme, request.headers)
    settings = only_value(request.headers, "X-Twilio-Webhooks-Signature-Settings") or ""
    algorithm = _twilio_algorithm(settings)
    digest = decode(value.strip(), "base64")
    if digest is None or len(digest) != _digest_size(algorithm):
        size = _digest_size(algorithm)
        raise SignatureError("malformed_signature", f"{name} should look like '<base64 of {size} bytes>'")
    query = parse_qs(urlsplit(request.url).query, keep_blank_values=True)
    params: list[tuple[str, str]] = []
    if "bodySHA256" in query:
        if not hmac.compare_digest(hashlib.sha256(request.body).hexdigest(), query["bodySHA256"][0]):
            raise SignatureError(
                "bad_signature", "the bodySHA256 in the URL does not match the body: the body was altered"
            )
    elif _is_form(request) or not request.body:
        params = parse_qsl(request.body.decode("utf-8", errors="replace"), keep_blank_values=True)
    else:
        raise SignatureError(
            "bad_signature",
            f"{name} covers form parameters, or the body through bodySHA256 in the URL; this body is "
            "neither form-encoded nor hashed in the URL",
        )
    messages = tuple(dict.fromkeys(twilio_string(url, params).encode() for url in _twilio_urls(request.url)))
    return Presented(
        name, (("mac", digest),), messages=messages, algorithm=algorithm, covers="the URL or the body"
    )


def twilio_string(url: str, params: list[tuple[str, str]]) -> str:
    """What Twilio signs: the URL, then each parameter name+value, sorted by name then value (repeated
    parameters each count once per distinct value, as in twilio-python's ``compute_signature``)."""
    values: dict[str, set[str]] = {}
    for key, value in params:
        values.setdefault(key, set()).add(value)
    return url + "".join(key + value for key in sorted(values) for value in sorted(values[key]))


def _twilio_algorithm(settings: str) -> str:
    for part in settings.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip() == "algorithm" and value.strip():
            name = value.strip().upper()
            if name not in _TWILIO_ALGORITHMS:
                raise SignatureError(
                    "malformed_signature",
                    "X-Twilio-Webhooks-Signature-Settings names an unsupported algorithm "
                    f"{value.strip()[:40]!r} (known: HMAC_SHA1, HMAC_SHA256)",
                )
            return _TWILIO_ALGORITHMS[name]
    return "sha1"


def _twilio_urls(url: str) -> list[str]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return [url]
    bare = parts.netloc.rsplit(":", 1)[0] if port else parts.netloc
    with_port = parts.netloc if port else f"{parts.netloc}:{443 if parts.scheme == 'https' else 80}"
    return list(
        dict.fromkeys(
            [url, urlunsplit(parts._replace(netloc=bare)), urlunsplit(parts._replace(netloc=with_port))]
        )
    )


def _is_form(request: Inbound) -> bool:
    mime = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return mime == "application/x-www-form-urlencoded"


def _mailgun(scheme: Scheme, request: Inbound) -> Presented:
    """hex HMAC-SHA256 of ``<timestamp><token>``, all three inside the body — JSON ``signature`` object,
    or form fields. https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks
    The event data is NOT covered (``binds_body=False``)."""
    data = _json_object(request.body)
    if data is not None:
        inner = data.get("signature")
        fields, label = (inner if isinstance(inner, dict) else {}), "signature."
    else:
        fields, label = dict(parse_qsl(request.body.decode("utf-8", errors="replace"))), ""
    text = {key: _scalar(fields.get(key)) for key in ("timestamp", "token", "signature")}
    if not text["signature"]:
        raise SignatureError(
            "missing_signature", f"the body has no {label}signature (Mailgun signs inside the body)"
        )
    digest = decode(text["signature"], "hex")
    if digest is None or len(digest) != _digest_size(scheme.algorithm):
        raise SignatureError("malformed_signature", f"{label}signature in the body should be 64 hex digits")
    if not text["timestamp"]:
        raise SignatureError("missing_timestamp", f"the body has no {label}timestamp (Mailgun signs it)")
    if not text["token"]:
        raise SignatureError("missing_signature", f"the body has no {label}token (Mailgun signs it)")
    message = (text["timestamp"] + text["token"]).encode()
    return Presented(
        f"{label}signature in the body",
        (("mac", digest),),
        (f"{label}timestamp in the body", text["timestamp"]),
        messages=(message,),
        covers="the timestamp or the token",
    )


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else ""


def _json_object(body: bytes) -> dict[str, Any] | None:
    if body.lstrip()[:1] != b"{":
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


ADAPTERS: dict[str, Callable[[Scheme, Inbound], Presented]] = {
    "prefixed": _prefixed,
    "stripe": _stripe,
    "paddle": _paddle,
    "standard-webhooks": _standard_webhooks,
    "twilio": _twilio,
    "mailgun": _mailgun,
    "token": _token,
    "basic": _basic,
}

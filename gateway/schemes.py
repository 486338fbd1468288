"""Signature schemes as rows of data: the presets, and the generic `hmac` recipe read from routes.yaml.

Pure: no I/O. The checking itself lives in ``gateway/verify.py``; a new provider is a new row here.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import Problem


@dataclass(frozen=True, slots=True)
class Scheme:
    """How one provider signs a delivery. ``signature_format`` names the adapter in ``gateway/verify.py``."""

    name: str
    signature_headers: tuple[str, ...]  # alternatives; the first one present is used. () for none
    signature_format: str  # "prefixed" | "stripe" | "standard-webhooks" | "none"
    algorithm: str = "sha256"  # hashlib name: sha1 | sha256 | sha512
    encoding: str = "hex"  # hex | base64
    prefix: str = ""  # e.g. "sha256="
    signed: str = "{body}"  # signed-string template; placeholders {body} {timestamp} {id}
    timestamp_headers: tuple[str, ...] = ()
    id_headers: tuple[str, ...] = ()
    tolerance: int | None = None  # default freshness window in seconds; None = no time check
    reject_future: bool = True  # False = only old timestamps fail (Stripe's SDK is one-sided)
    key_format: str = "raw"  # raw: utf-8 of the secret | whsec: strip whsec_, base64-decode
    dedupe: str | None = None  # default dedupe key path
    event_type: str | None = None  # default event type path
    sender_timeout: float | None = None  # the provider's delivery timeout in seconds
    binds_body: bool = True  # False for schemes whose signature does not cover the body
    verified: bool = True  # False only for "none"


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
    "none": Scheme(
        name="none", signature_headers=(), signature_format="none", binds_body=False, verified=False
    ),
}

RECIPE_KEYS = (
    "scheme", "header", "algorithm", "encoding", "prefix", "signed", "timestamp_header", "id_header",
    "tolerance", "dedupe", "event_type",
)  # fmt: skip


def placeholders(template: str) -> list[str]:
    """The placeholder names a signed-string template uses, in order (``"{timestamp}.{body}"`` → two)."""
    return PLACEHOLDER.findall(template)


def scheme_from_spec(spec: object, path: str, problems: list[Problem]) -> Scheme | None:
    """The scheme a ``verify:`` value names: a preset name, or a mapping for the generic ``hmac`` recipe.

    Every problem found is appended to ``problems``; returns None if there was any.
    """
    if isinstance(spec, str):
        if spec in PRESETS:
            return PRESETS[spec]
        if spec == "hmac":
            problems.append(Problem(path, "scheme hmac needs a mapping: {scheme: hmac, header: X-Signature}"))
        else:
            problems.append(Problem(path, _unknown("scheme", spec, (*PRESETS, "hmac"))))
        return None
    if not isinstance(spec, Mapping):
        problems.append(Problem(path, f"expected a scheme name or a mapping, got {type(spec).__name__}"))
        return None
    return _recipe(spec, path, problems)


def _recipe(spec: Mapping[object, object], path: str, problems: list[Problem]) -> Scheme | None:
    before = len(problems)
    for key in spec:
        if key not in RECIPE_KEYS:
            problems.append(Problem(f"{path}.{key}", _unknown("key", key, RECIPE_KEYS, "allowed")))
    text = {key: _text(spec, key, path, problems) for key in RECIPE_KEYS if key != "tolerance"}
    if spec.get("scheme") is None:
        problems.append(Problem(path, "missing required key 'scheme' (scheme: hmac)"))
    elif text["scheme"] is not None and text["scheme"] != "hmac":
        name = text["scheme"]
        fix = f"write `verify: {name}` for the preset" if name in PRESETS else "use scheme: hmac"
        problems.append(Problem(f"{path}.scheme", f"unknown scheme {name!r} in a mapping ({fix})"))
    if spec.get("header") is None:
        problems.append(Problem(path, "missing required key 'header' (the header carrying the signature)"))
    algorithm = text["algorithm"] or "sha256"
    if algorithm not in ALGORITHMS:
        problems.append(Problem(f"{path}.algorithm", _unknown("algorithm", algorithm, ALGORITHMS)))
    encoding = text["encoding"] or "hex"
    if encoding not in ENCODINGS:
        problems.append(Problem(f"{path}.encoding", _unknown("encoding", encoding, ENCODINGS)))
    signed = text["signed"] if text["signed"] is not None else "{body}"
    used = placeholders(signed)
    _check_template(used, text, path, problems)
    tolerance = _tolerance(spec, "timestamp" in used, path, problems)
    if len(problems) > before:
        return None
    return Scheme(
        name="hmac",
        signature_headers=(text["header"] or "",),
        signature_format="prefixed",
        algorithm=algorithm,
        encoding=encoding,
        prefix=text["prefix"] or "",
        signed=signed,
        timestamp_headers=(text["timestamp_header"],) if text["timestamp_header"] else (),
        id_headers=(text["id_header"],) if text["id_header"] else (),
        tolerance=tolerance,
        dedupe=text["dedupe"],
        event_type=text["event_type"],
    )


def _check_template(used: list[str], text: dict[str, str | None], path: str, problems: list[Problem]) -> None:
    at = f"{path}.signed"
    for name in used:
        if name not in PLACEHOLDERS:
            close = difflib.get_close_matches(name, PLACEHOLDERS, n=1)
            tail = f"did you mean {{{close[0]}}}?" if close else "known: {body}, {timestamp}, {id}"
            problems.append(Problem(at, f"unknown placeholder {{{name}}} ({tail})"))
    if "body" not in used:
        problems.append(Problem(at, "the signed string must include {body}, or the body is not protected"))
    for name, key in (("timestamp", "timestamp_header"), ("id", "id_header")):
        if name in used and not text[key]:
            problems.append(Problem(at, f"{{{name}}} is signed but {key} is not set (name its header)"))
        elif text[key] and name not in used:
            problems.append(Problem(f"{path}.{key}", f"{key} is set but signed does not use {{{name}}}"))


def _tolerance(spec: Mapping[object, object], signed: bool, path: str, problems: list[Problem]) -> int | None:
    if "tolerance" not in spec:
        return DEFAULT_TOLERANCE if signed else None
    value = spec["tolerance"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(Problem(f"{path}.tolerance", f"expected seconds >= 0 or null, got {value!r}"))
    elif not signed:
        problems.append(Problem(f"{path}.tolerance", "a tolerance needs a signed {timestamp} to check"))
    else:
        return value
    return None


def _text(spec: Mapping[object, object], key: str, path: str, problems: list[Problem]) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or (not value and key != "prefix"):
        problems.append(Problem(f"{path}.{key}", f"expected a non-empty string, got {value!r}"))
        return None
    return value


def _unknown(what: str, value: object, choices: tuple[str, ...], label: str = "known") -> str:
    close = difflib.get_close_matches(str(value), choices, n=1)
    tail = f"did you mean {close[0]!r}?" if close else f"{label}: {', '.join(choices)}"
    return f"unknown {what} {value!r} ({tail})"

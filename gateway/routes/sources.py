"""The ``sources:`` section of routes.yaml: who sends webhooks, how they sign, how their events are keyed.

Pure but for one read: PayPal ``trust_anchors`` PEM files are loaded (by ``gateway/signatures/remote.py``)
when the file loads, so a missing one is a config problem. Secrets arrive already interpolated.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import Problem, unknown_key
from gateway.model import RejectionKeep, Secret
from gateway.routes.keeping import DEFAULT_REJECTIONS, parse_dedupe_window, parse_rejections
from gateway.routes.paths import check_path
from gateway.routes.retention import parse_retention
from gateway.routes.sizes import parse_size
from gateway.signatures.asymmetric import signing_key_problem
from gateway.signatures.recipes import scheme_from_spec
from gateway.signatures.remote import check_keys, parse_settings
from gateway.signatures.schemes import RemoteSettings, Scheme
from gateway.signatures.verify import secret_problem

DEFAULT_MAX_BODY = 10 * 1024 * 1024
SOURCE_KEYS = (
    "verify",
    "secret",
    "secrets",
    "public_key",
    "public_keys",
    "tolerance",
    "dedupe",
    "event_type",
    "path",
    "max_body",
    "public_url",
    "signing_key",
    "client_id",
    "environment",
    "audience",
    "service_account",
    "webhook_id",
    "trust_anchors",
    "jwks_url",
    "issuer",
    "algorithms",
    "retention",
    "sender_timeout",
    "rejections",
    "dedupe_window",
)
SECRET_KEYS = ("secret", "secrets", "public_key", "public_keys")
# A source's secrets and keys: an unset variable in one is that source's problem, deferred to the commands
# that use its secrets (serve and check all, sign its own), so the commands on stored records run without it.
DEFERRED_KEYS = (*SECRET_KEYS, "signing_key")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class Source:
    """A configured webhook sender: where it posts, how it signs, how its events are keyed."""

    name: str
    path: str  # URL path it posts to, e.g. /hooks/github
    scheme: Scheme
    secrets: tuple[Secret, ...]
    tolerance: int | None  # resolved: the source's override, else the scheme's default
    dedupe: str | None  # path of the dedupe key, e.g. headers.X-GitHub-Delivery
    event_type: str | None  # path of the event type
    max_body: int
    # The URL the sender calls, as it sees it (scheme://host[:port]/path), when a proxy in front of the
    # gateway changes it; the app then verifies against public_url + the received query string.
    public_url: str | None = None
    remote: RemoteSettings | None = None  # plaid, pubsub, paypal and jwt settings
    # A test private key for `gateway sign` (discord, sendgrid); it never verifies anything.
    signing_key: Secret | None = None
    # `retention:` in seconds (None: forever), used only when retention_set; a source that says nothing
    # inherits the top-level default (Config.retention, gateway/routes/retention.py).
    retention: float | None = None
    retention_set: bool = False
    # The sender's delivery timeout in seconds (`sender_timeout:`, else the preset's): the ack budget that
    # /metrics measures acks against. None: unknown, no budget metrics.
    sender_timeout: float | None = None
    # `rejections: {keep: …}`: bytes of refused requests kept whole to verify again (routes/keeping.py)
    rejections: RejectionKeep = DEFAULT_REJECTIONS
    dedupe_window: float | None = None  # `dedupe_window:` in seconds; None: a key holds as long as its event


def source_warnings(source: Source) -> list[str]:
    """Things `gateway check` should warn about for ``source`` that are not errors."""
    fmt, remote = source.scheme.signature_format, source.remote
    if fmt == "pubsub" and remote is not None and remote.service_account is None:
        return [
            f"sources.{source.name}: verify: pubsub without service_account accepts a token Google signed "
            "for this audience on behalf of any account; set service_account to the push subscription's"
        ]
    if fmt == "jwt" and remote is not None and remote.audience is None:
        return [
            f"sources.{source.name}: verify: jwt without audience accepts any token its keys signed, "
            "including ones meant for other services; set audience"
        ]
    if source.scheme.signs_url and source.public_url is None:
        return [
            f"sources.{source.name}: verify: {source.scheme.name} signs the URL it calls; set public_url "
            "(e.g. https://hooks.example.com/hooks/" + source.name + ") or deliveries that pass a proxy "
            "rewriting the scheme, host or port fail with bad_signature"
        ]
    return []


def _public_url(value: object, where: str, problems: list[Problem]) -> str | None:
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
    except ValueError:  # a broken IPv6 literal, like https://[::1/x
        parts = None
    if parts is not None and (parts.username is not None or parts.password is not None):
        problems.append(
            Problem(where, "public_url must not carry a user name or password (the value is not shown)")
        )
        return None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(
            Problem(
                where,
                f"expected an absolute http(s) URL like https://hooks.example.com/hooks/x, got {value!r}",
            )
        )
        return None
    if parts.query or parts.fragment or str(value).endswith(("?", "#")):
        problems.append(
            Problem(
                where, "public_url must not carry a query string or fragment: the received query is appended"
            )
        )
        return None
    return str(value)


def secret_paths(raw_sources: object, keys: tuple[str, ...] = DEFERRED_KEYS) -> dict[str, str]:
    """Where each secret of a raw ``sources:`` section is (``sources.stripe.secret``,
    ``sources.stripe.secrets[1]``, the paths the loader reports), to the name of its source."""
    paths: dict[str, str] = {}
    for name, raw in raw_sources.items() if isinstance(raw_sources, dict) else ():
        for key in keys if isinstance(raw, dict) else ():
            if key in raw:
                at = f"sources.{name}.{key}"
                paths[at] = str(name)
                items = raw[key] if isinstance(raw[key], list) else []
                paths.update((f"{at}[{i}]", str(name)) for i in range(len(items)))
    return paths


def _secrets(
    raw: Mapping[str, Any], where: str, problems: list[Problem], unset: Collection[str]
) -> tuple[list[tuple[str, Secret]], bool]:
    """The source's secrets with their paths, and whether any is left out because its variable is unset."""
    out: list[tuple[str, Secret]] = []
    deferred = False
    for key in SECRET_KEYS:
        if key not in raw:
            continue
        value = raw[key]
        items = value if key.endswith("s") else [value]
        if not isinstance(items, list) or not items:
            problems.append(Problem(f"{where}.{key}", "expected a non-empty list of strings"))
            continue
        for i, item in enumerate(items):
            at = f"{where}.{key}[{i}]" if key.endswith("s") else f"{where}.{key}"
            if at in unset:  # the commands that use this source's secrets report the variable
                deferred = True
            elif not isinstance(item, str) or not item:
                problems.append(Problem(at, "expected a non-empty string (the value is not shown)"))
            else:
                out.append((at, Secret(item)))
    return out, deferred


def _check_keys(
    scheme: Scheme | None,
    raw: Mapping[str, Any],
    where: str,
    problems: list[Problem],
    unset: Collection[str],
) -> tuple[Secret, ...]:
    """The source's secrets or keys, each checked against the scheme that will use it (those whose variable is
    unset are left out, and count as given)."""
    located, deferred = _secrets(raw, where, problems, unset)
    if scheme is None or not scheme.verified:
        return tuple(secret for _, secret in located)
    if scheme.signature_format in ("pubsub", "paypal", "jwt"):
        check_keys(scheme, raw, where, bool(located) or deferred, problems, SECRET_KEYS)
    for at, secret in located:
        unusable = secret_problem(scheme, secret)
        if unusable:
            problems.append(Problem(at, unusable))
    if scheme.signature_format in ("pubsub", "paypal", "jwt"):
        return tuple(secret for _, secret in located)
    if not located and not deferred:
        problems.append(
            Problem(f"{where}.secret", f"verify: {scheme.name} needs a secret (or secrets: [...])")
        )
    if scheme.signature_format not in ("standard-webhooks", "discord", "sendgrid"):
        problems += [
            Problem(
                f"{where}.{key}",
                f"verify: {scheme.name} uses shared secrets, not public keys "
                "(public keys are for standard-webhooks/svix v1a, discord and sendgrid)",
            )
            for key in ("public_key", "public_keys")
            if key in raw
        ]
    return tuple(secret for _, secret in located)


def _tolerance(
    scheme: Scheme | None, raw: Mapping[str, Any], where: str, problems: list[Problem]
) -> int | None:
    """The freshness window: the source's `tolerance:` if given, else the scheme's default."""
    default = scheme.tolerance if scheme else None
    if "tolerance" not in raw:
        return default
    if scheme is not None and scheme.remote_keys:
        problems.append(
            Problem(
                f"{where}.tolerance",
                f"verify: {scheme.name} checks freshness by its own rules (the token's iat/exp, or none "
                "for paypal); remove tolerance",
            )
        )
        return default
    if (
        scheme is not None
        and scheme.verified
        and not scheme.timestamp_headers
        and not scheme.timestamp_field
        and scheme.signature_format in ("prefixed", "twilio", "token", "basic")
    ):
        problems.append(
            Problem(
                f"{where}.tolerance",
                f"verify: {scheme.name} signs no timestamp, so there is no freshness "
                "to check; remove tolerance",
            )
        )
        return default
    t = raw["tolerance"]
    if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t < 0):
        problems.append(Problem(f"{where}.tolerance", f"expected seconds >= 0 or null, got {t!r}"))
        return default
    return t


def _source(
    name: str, raw: object, problems: list[Problem], base_dir: Path, unset: Collection[str]
) -> Source | None:
    where = f"sources.{name}"
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(Problem(where, "source names may use letters, digits, '.', '_' and '-' only"))
        return None
    if not isinstance(raw, dict):
        problems.append(Problem(where, "expected a mapping with at least `verify:`"))
        return None
    problems += [unknown_key(key, SOURCE_KEYS, f"{where}.{key}") for key in raw if key not in SOURCE_KEYS]
    if "verify" not in raw:
        problems.append(Problem(f"{where}.verify", "missing (a preset like github, or none to skip checks)"))
        return None
    scheme = scheme_from_spec(raw["verify"], f"{where}.verify", problems)
    secrets = _check_keys(scheme, raw, where, problems, unset)
    tolerance = _tolerance(scheme, raw, where, problems)
    paths = {}
    for key in ("dedupe", "event_type"):
        value = raw.get(key, getattr(scheme, key, None))
        paths[key] = check_path(value, f"{where}.{key}", problems) if value is not None else None
    path = raw.get("path", f"/hooks/{name}")
    if not isinstance(path, str) or not path.startswith("/") or "?" in path:
        problems.append(Problem(f"{where}.path", f"expected a URL path starting with '/', got {path!r}"))
    max_body = (
        parse_size(raw["max_body"], f"{where}.max_body", problems, DEFAULT_MAX_BODY)
        if "max_body" in raw
        else DEFAULT_MAX_BODY
    )
    public_url = (
        _public_url(raw["public_url"], f"{where}.public_url", problems) if "public_url" in raw else None
    )
    remote = parse_settings(scheme, raw, where, problems, base_dir)
    signing_key = _signing_key(scheme, raw, where, problems, unset)
    retention = parse_retention(raw.get("retention"), f"{where}.retention", problems)
    sender_timeout = _sender_timeout(scheme, raw, f"{where}.sender_timeout", problems)
    rejections = parse_rejections(raw, where, problems)
    dedupe_window = parse_dedupe_window(raw, where, problems, has_key=paths["dedupe"] is not None)
    if scheme is None:
        return None
    return Source(
        name,
        str(path),
        scheme,
        secrets,
        tolerance,
        paths["dedupe"],
        paths["event_type"],
        max_body,
        public_url,
        remote,
        signing_key,
        retention=retention,
        retention_set="retention" in raw,
        sender_timeout=sender_timeout,
        rejections=rejections,
        dedupe_window=dedupe_window,
    )


def _sender_timeout(
    scheme: Scheme | None, raw: Mapping[str, Any], where: str, problems: list[Problem]
) -> float | None:
    """``sender_timeout:`` in seconds (how long the provider waits for an answer), else the preset's;
    ``null`` says there is no budget to measure acks against."""
    if "sender_timeout" not in raw:
        return scheme.sender_timeout if scheme is not None else None
    value = raw["sender_timeout"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        problems.append(
            Problem(
                where,
                f"expected the sender's delivery timeout in seconds (e.g. 10; at most 3600), got {value!r}",
            )
        )
        return None
    return float(value)


def _signing_key(
    scheme: Scheme | None, raw: Mapping[str, Any], where: str, problems: list[Problem], unset: Collection[str]
) -> Secret | None:
    """``signing_key:``: a test private key so `gateway sign` can sign for a public-key preset."""
    if "signing_key" not in raw or scheme is None:
        return None
    value, at = raw["signing_key"], f"{where}.signing_key"
    if scheme.signature_format not in ("discord", "sendgrid"):
        problems.append(
            Problem(
                at,
                f"signing_key is only for discord and sendgrid; verify: {scheme.name} signs with its secret",
            )
        )
        return None
    if at in unset:  # reported by `gateway sign` (and serve, check), which need it
        return None
    if not isinstance(value, str) or not value:
        problems.append(Problem(at, "expected a private key (the value is not shown)"))
        return None
    problem = signing_key_problem(scheme.signature_format, value)
    if problem:
        problems.append(Problem(at, problem))
        return None
    return Secret(value)


def parse_sources(
    raw_sources: object,
    problems: list[Problem],
    base_dir: Path | None = None,
    unset: Collection[str] = (),
) -> dict[str, Source]:
    """Every source under ``sources:``; problems are appended with their paths. Relative file paths in a
    source (PayPal's trust_anchors) are read from ``base_dir``, routes.yaml's folder (default: the cwd).
    ``unset``: the paths of secrets whose variable is not set (reported apart): each is left out of its source
    and no other problem is reported about it."""
    if not isinstance(raw_sources, dict):
        problems.append(Problem("sources", "expected a mapping of source name to settings"))
        return {}
    sources: dict[str, Source] = {}
    for name, raw in raw_sources.items():
        built = _source(name, raw, problems, base_dir or Path(), unset)
        if built is not None:
            sources[name] = built
    seen_paths: dict[str, str] = {}
    for s in sources.values():
        if s.path in seen_paths:
            problems.append(
                Problem(f"sources.{s.name}.path", f"{s.path} is already used by {seen_paths[s.path]}")
            )
        seen_paths[s.path] = s.name
    return sources

"""The remote-key presets (plaid, pubsub, paypal, jwt): their per-source settings and their verification.

Their keys are fetched by ``gateway/keys/keyring.py`` (I/O); everything here is pure except that PayPal's
``trust_anchors`` PEM files are read when routes.yaml loads, so a missing one is a config problem.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.errors import Problem, SignatureError
from gateway.model import Headers, Inbound, Secret, Verdict
from gateway.signatures.adapters import only_value
from gateway.signatures.asymmetric import verify_paypal
from gateway.signatures.jwts import SUPPORTED, verify_google_oidc, verify_jwt, verify_plaid
from gateway.signatures.schemes import RemoteSettings, Scheme

# The settings of the remote-key schemes: which scheme takes each, and which of them it requires.
REMOTE_KEYS: Mapping[str, tuple[str, ...]] = {
    "plaid": ("client_id", "environment"),
    "pubsub": ("audience", "service_account"),
    "paypal": ("webhook_id", "trust_anchors"),
    "jwt": ("algorithms", "jwks_url", "audience", "issuer"),
}
REQUIRED_KEYS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "plaid": (("client_id", "your Plaid client id"), ("environment", "sandbox or production")),
    "pubsub": (("audience", "the audience set on the push subscription"),),
    "paypal": (
        ("webhook_id", "the id PayPal shows for this webhook"),
        ("trust_anchors", "a list of PEM files of the CAs PayPal's certificate chains to"),
    ),
    "jwt": (("algorithms", "the algorithms the issuer signs with, e.g. [RS256]"),),
}
PLAID_HOSTS = {"sandbox": "https://sandbox.plaid.com", "production": "https://production.plaid.com"}


def check_keys(
    scheme: Scheme,
    raw: Mapping[str, Any],
    where: str,
    has_keys: bool,
    problems: list[Problem],
    secret_keys: tuple[str, ...],
) -> None:
    """Pub/Sub and PayPal keys are always fetched; a jwt source has a jwks_url or static keys, not both."""
    name = scheme.name
    if scheme.signature_format == "jwt":
        if has_keys == ("jwks_url" in raw):
            problems.append(
                Problem(where, f"verify: {name} needs exactly one of jwks_url: or secret(s)/public_key(s)")
            )
        return
    problems += [
        Problem(
            f"{where}.{key}", f"verify: {name} takes no {key}: the provider's keys are fetched over https"
        )
        for key in secret_keys
        if key in raw
    ]


def parse_settings(
    scheme: Scheme | None, raw: Mapping[str, Any], where: str, problems: list[Problem], base_dir: Path
) -> RemoteSettings | None:
    """The settings of a remote-key scheme; each key is refused for every other scheme."""
    fmt = scheme.signature_format if scheme is not None else None
    allowed = REMOTE_KEYS.get(fmt or "", ())
    for key in dict.fromkeys(k for keys in REMOTE_KEYS.values() for k in keys):
        if key in raw and key not in allowed and scheme is not None:
            owners = ", ".join(f for f, keys in REMOTE_KEYS.items() if key in keys)
            problems.append(
                Problem(f"{where}.{key}", f"{key} is a setting of verify: {owners}, not {scheme.name}")
            )
    if fmt not in REMOTE_KEYS:
        return None
    problems += [
        Problem(f"{where}.{key}", f"verify: {fmt} needs {key} ({hint})")
        for key, hint in REQUIRED_KEYS[str(fmt)]
        if key not in raw
    ]
    text = {
        k: _setting(raw, k, where, problems)
        for k in ("client_id", "audience", "service_account", "webhook_id", "issuer")
    }
    return RemoteSettings(
        client_id=text["client_id"],
        base_url=_environment(raw, where, problems),
        audience=text["audience"],
        service_account=_account(text["service_account"], where, problems),
        webhook_id=text["webhook_id"],
        trust_anchors=_anchors(raw, where, problems, base_dir),
        jwks_url=_jwks_url(raw, where, problems),
        issuer=text["issuer"],
        algorithms=_algorithms(raw, where, problems),
    )


def _setting(raw: Mapping[str, Any], key: str, where: str, problems: list[Problem]) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(Problem(f"{where}.{key}", f"expected a non-empty string, got {value!r}"))
        return None
    return value


def _environment(raw: Mapping[str, Any], where: str, problems: list[Problem]) -> str | None:
    value = raw.get("environment")
    if value is None:
        return None
    if not isinstance(value, str) or value not in PLAID_HOSTS:
        close = difflib.get_close_matches(str(value), PLAID_HOSTS, n=1)
        tail = f"did you mean {close[0]!r}?" if close else "sandbox or production"
        problems.append(Problem(f"{where}.environment", f"unknown Plaid environment {value!r} ({tail})"))
        return None
    return PLAID_HOSTS[value]


def _account(value: str | None, where: str, problems: list[Problem]) -> str | None:
    if value is not None and "@" not in value:
        problems.append(
            Problem(
                f"{where}.service_account",
                f"expected the service account's email (name@project.iam.gserviceaccount.com), got {value!r}",
            )
        )
    return value


def _jwks_url(raw: Mapping[str, Any], where: str, problems: list[Problem]) -> str | None:
    value = raw.get("jwks_url")
    if value is None:
        return None
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
    except ValueError:  # a broken IPv6 literal
        parts = None
    if parts is not None and (parts.username is not None or parts.password is not None):
        # Never quoted: the user info may be a password.
        problems.append(
            Problem(f"{where}.jwks_url", "must not carry a user name or password (the value is not shown)")
        )
        return None
    if parts is None or parts.scheme != "https" or not parts.hostname:
        problems.append(
            Problem(
                f"{where}.jwks_url",
                f"expected an https URL like https://issuer.example/jwks.json, got {value!r}",
            )
        )
        return None
    return str(value)


def _algorithms(raw: Mapping[str, Any], where: str, problems: list[Problem]) -> tuple[str, ...]:
    value = raw.get("algorithms")
    if value is None:
        return ()
    at = f"{where}.algorithms"
    if not isinstance(value, list) or not value:
        problems.append(Problem(at, f"expected a non-empty list like [RS256], got {value!r}"))
        return ()
    for i, alg in enumerate(value):
        if alg not in SUPPORTED:
            close = difflib.get_close_matches(str(alg), SUPPORTED, n=1)
            tail = f"did you mean {close[0]!r}?" if close else f"supported: {', '.join(SUPPORTED)}"
            problems.append(Problem(f"{at}[{i}]", f"unsupported algorithm {alg!r} ({tail})"))
    return tuple(str(alg) for alg in value)


def _anchors(
    raw: Mapping[str, Any], where: str, problems: list[Problem], base_dir: Path
) -> tuple[bytes, ...]:
    """The PEM files under ``trust_anchors:`` (relative paths from routes.yaml's folder), read now: a missing
    or unreadable one is a config problem."""
    value = raw.get("trust_anchors")
    if value is None:
        return ()
    at = f"{where}.trust_anchors"
    if not isinstance(value, list) or not value:
        problems.append(Problem(at, f"expected a non-empty list of PEM file paths, got {value!r}"))
        return ()
    anchors: list[bytes] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name:
            problems.append(Problem(f"{at}[{i}]", f"expected a PEM file path, got {name!r}"))
            continue
        try:
            pem = (base_dir / name).read_bytes()
        except OSError as exc:
            problems.append(Problem(f"{at}[{i}]", f"cannot read {name!r}: {exc.strerror or exc}"))
            continue
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            problems.append(
                Problem(f"{at}[{i}]", f"{name!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
            )
            continue
        anchors.append(pem)
    return tuple(anchors)


def bearer(scheme: Scheme, headers: Headers) -> str:
    """The token in a JWT scheme's header, without its ``Bearer `` prefix (required on Authorization)."""
    header = scheme.signature_headers[0]
    value = (only_value(headers, header) or "").strip()
    if not value:
        raise SignatureError("missing_signature", f"no {header} header")
    kind, _, token = value.partition(" ")
    if kind.lower() == "bearer":
        return token.strip()
    if header.lower() == "authorization":
        raise SignatureError("malformed_signature", f"{header} should be 'Bearer <token>'")
    return value


def verify_remote(
    scheme: Scheme,
    secrets: Sequence[Secret],
    request: Inbound,
    now: float,
    material: Any,
    remote: RemoteSettings,
) -> Verdict:
    """Plaid, Pub/Sub, PayPal and generic JWTs: each checked by its own function, freshness included."""
    fmt = scheme.signature_format
    if material is None and not (fmt == "jwt" and secrets):  # a jwt source may hold static keys instead
        raise SignatureError("key_unavailable", f"{scheme.name}'s verification key could not be fetched")
    if fmt == "plaid":
        token = only_value(request.headers, "Plaid-Verification") or ""
        verify_plaid(token, request.body, _mapping(material), now)
    elif fmt == "pubsub":
        verify_google_oidc(
            bearer(scheme, request.headers),
            _mapping(material),
            audience=remote.audience or "",
            email=remote.service_account,
            now=now,
        )
    elif fmt == "paypal":
        verify_paypal(
            request.headers,
            request.body,
            webhook_id=remote.webhook_id or "",
            certificate_pem=material,
            trust_anchors_pem=remote.trust_anchors,
            now=now,
        )
    elif fmt == "jwt":
        verify_jwt(
            bearer(scheme, request.headers),
            keys=[_mapping(material)] if material is not None else list(secrets),
            algorithms=remote.algorithms,
            audience=remote.audience,
            issuer=remote.issuer,
            now=now,
        )
    else:
        raise SignatureError("no_secret", f"{scheme.name}: unknown remote-key format {fmt!r}")
    return Verdict(verified=True, scheme=scheme.name)


def _mapping(material: Any) -> Mapping[str, Any]:
    if not isinstance(material, Mapping):
        raise SignatureError("key_unavailable", "the fetched key document is not a JSON object")
    return material


def jwt_key_problem(value: str) -> str | None:
    """A jwt source's static key: a PEM public key or certificate (RSA/EC), or an HMAC secret."""
    if "-----BEGIN" not in value:
        # RFC 7518 §3.2: an HMAC key at least as long as the hash; PyJWT warns on every token otherwise.
        return None if len(value.encode()) >= 32 else "an HMAC secret for jwt must be at least 32 bytes"
    try:
        key: object = (
            x509.load_pem_x509_certificate(value.encode()).public_key()
            if "CERTIFICATE" in value
            else serialization.load_pem_public_key(value.encode())
        )
    except ValueError:
        key = None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return "a PEM key for jwt must be an RSA or EC public key or certificate"
    return None


def sign_jwt(secret: Secret, remote: RemoteSettings, now: int) -> str:
    """A short-lived token a ``jwt`` source with a shared HMAC secret accepts (for `gateway sign`): aud/iss
    from the source's settings, ``iat`` now, ``exp`` 5 minutes on. Public keys cannot sign: ValueError."""
    algorithm = next((a for a in remote.algorithms if a.startswith("HS")), None)
    if algorithm is None or "-----BEGIN" in secret.reveal():
        raise ValueError("only a jwt source with a shared HMAC secret (HS256/384/512) can be signed here")
    claims: dict[str, Any] = {"iat": now, "exp": now + 300}
    if remote.audience:
        claims["aud"] = remote.audience
    if remote.issuer:
        claims["iss"] = remote.issuer
    return str(jwt.encode(claims, secret.reveal(), algorithm=algorithm))

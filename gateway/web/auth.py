"""Admin API tokens: JWTs for /api, checked by a shared secret (HS256) or a public key (RS256/ES256).

Pure (``now`` is passed in) except :func:`read_key_file`, the one function here that reads a file.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.durations import UNITS
from gateway.errors import AccessDenied, Invalid
from gateway.model import Secret

AUDIENCE = "webhook-gateway-admin"
SCOPES = ("read", "replay", "trigger")
ALGORITHMS = ("HS256", "RS256", "ES256")
LEEWAY = 10  # seconds of clock drift tolerated on exp, iat and nbf
MAX_TTL = 366 * 86400
MIN_SECRET = 32  # bytes: RFC 7518 §3.2 wants an HS256 key at least as long as the hash output
MIN_RSA_BITS = 2048
MAX_TOKEN = 16 * 1024  # a longer Authorization header is refused before parsing
MAX_KEY_FILE = 64 * 1024  # a PEM public key is a few hundred bytes; more is the wrong file
MAKE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_REQUIRED = ("sub", "scope", "iat", "exp", "aud")
_TTL = re.compile(r"([0-9]{1,9})([smhdw])")

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class AdminKey:
    """How admin tokens are verified: a Secret for HS256, a public key object for RS256/ES256.

    The algorithm is fixed by the key, so a token can never pick another (no ``none``, no HS/RS confusion).
    """

    algorithm: str
    key: Secret | PublicKey = field(repr=False)

    def __post_init__(self) -> None:
        if _algorithm_of(self.key) != self.algorithm:
            raise ValueError(f"an AdminKey for {self.algorithm} needs a key of that kind")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token speaks for, and which known scopes it grants."""

    subject: str
    scopes: frozenset[str]
    expires_at: float
    token_id: str | None


# -- configuration ----------------------------------------------------------------------------------------


def admin_key(secret: str | None, public_key_file: str | None) -> AdminKey | None:
    """The verification key from configuration, or None when none is set (the admin API is then off).

    An empty secret counts as unset. Reads ``public_key_file`` when given; raises Invalid for anything wrong.
    """
    secret = secret or None
    if secret is not None and public_key_file is not None:
        raise Invalid(
            "both GATEWAY_ADMIN_SECRET and --admin-public-key are set; choose one: the secret for HS256 "
            "tokens, or the public key for RS256/ES256 tokens, and unset the other"
        )
    if secret is not None:
        _check_secret(secret.encode(), "GATEWAY_ADMIN_SECRET")
        return AdminKey("HS256", Secret(secret))
    if public_key_file is not None:
        return public_key(read_key_file(public_key_file), public_key_file)
    return None


def read_key_file(path: str) -> bytes:
    """The bytes of a configured key file: the only I/O in this module."""
    try:
        with open(path, "rb") as f:
            pem = f.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise Invalid(
            f"--admin-public-key: cannot read {path!r} ({exc.strerror or type(exc).__name__}); "
            "give the path of a PEM public key file"
        ) from None
    if len(pem) > MAX_KEY_FILE:
        raise Invalid(f"--admin-public-key: {path!r} is larger than {MAX_KEY_FILE} bytes; is it a key file?")
    return pem


def public_key(pem: bytes, where: str = "--admin-public-key") -> AdminKey:
    """An RS256 (RSA, 2048 bits or more) or ES256 (EC P-256) key from PEM bytes; ``where`` names it in errors.

    Messages never quote the file: it may be a private key given by mistake.
    """
    if b"PRIVATE KEY" in pem:
        raise Invalid(
            f"{where} holds a private key; give the public half instead "
            "(openssl pkey -in private.pem -pubout -out public.pem) and keep the private key for minting"
        )
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise Invalid(
            f"{where} is not a PEM public key (a file starting with -----BEGIN PUBLIC KEY-----); "
            "make one with: openssl pkey -in private.pem -pubout -out public.pem"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise Invalid(f"{where} has key type {_kind(key)}; use an RSA key (RS256) or an EC P-256 key (ES256)")
    _check_strength(key, where)
    return AdminKey("RS256" if isinstance(key, rsa.RSAPublicKey) else "ES256", key)


# -- verification -----------------------------------------------------------------------------------------


def authenticate(authorization: str | None, key: AdminKey, *, now: float) -> Principal:
    """The principal of an ``Authorization: Bearer <token>`` header value, or AccessDenied (401).

    Signature, algorithm and audience are PyJWT's checks; exp/iat/nbf are checked here against ``now``
    (PyJWT would read the wall clock), with LEEWAY seconds either way.
    """
    token = _bearer(authorization)
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.DecodeError:
        raise _bad("the bearer token is not a JWT (header.payload.signature)") from None
    except jwt.PyJWTError:  # the library's base: a kid that is not a string, a crit extension, …
        raise _bad("the bearer token's header is not one this gateway reads") from None
    if alg != key.algorithm:
        # Refused before any key is touched: stops `none` and HS/RS confusion outright.
        raise _bad(
            f"the token is signed with alg {str(alg)[:20]!r}; this gateway accepts only {key.algorithm}"
        )
    claims = _decode(token, key)
    exp = _number(claims, "exp")
    if now > exp + LEEWAY:
        raise AccessDenied(
            401,
            "expired_token",
            f"the token expired at {_iso(exp)}; create a new one with `gateway token create`",
        )
    iat = _number(claims, "iat")
    if iat > now + LEEWAY:
        raise _bad("the token's iat is in the future (is a clock out of sync?)")
    if exp - iat > MAX_TTL + LEEWAY:  # `gateway token create` refuses such a lifetime; so does the gateway
        raise _bad(
            f"the token would be valid for {(exp - iat) / 86400:.0f} days; at most {MAX_TTL // 86400} are "
            "accepted: create a shorter-lived one with `gateway token create --ttl`"
        )
    if "nbf" in claims and _number(claims, "nbf") > now + LEEWAY:
        raise _bad(f"the token is not valid before {_iso(_number(claims, 'nbf'))}")
    subject, scope, jti = claims["sub"], claims["scope"], claims.get("jti")
    if not isinstance(subject, str) or not subject:
        raise _bad("the token's sub claim should be a non-empty string")
    if not isinstance(scope, str):
        raise _bad("the token's scope claim should be a space-separated string, e.g. 'read replay'")
    if jti is not None and not isinstance(jti, str):
        raise _bad("the token's jti claim should be a string")
    # Scopes this gateway does not know are ignored, not refused: a newer issuer may add some.
    scopes = frozenset(s for s in scope.split() if s in SCOPES)
    return Principal(subject=subject, scopes=scopes, expires_at=exp, token_id=jti)


def require(principal: Principal, scope: str) -> None:
    """Raise AccessDenied (403) unless the principal holds ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r} (known: {', '.join(SCOPES)})")
    if scope not in principal.scopes:
        held = " ".join(s for s in SCOPES if s in principal.scopes)
        has = f"has scopes {held}" if held else "has no scopes"
        raise AccessDenied(403, "missing_scope", f"this token {has}; this call needs {scope}")


def check_bearer(authorization: str | None, expected: Secret) -> None:
    """A fixed bearer token (the /metrics scrape token), compared in constant time; AccessDenied (401).
    Both sides are hashed first, so the comparison time does not reveal the token's length either."""
    given = hashlib.sha256(_bearer(authorization).encode()).digest()
    if not hmac.compare_digest(given, hashlib.sha256(expected.reveal().encode()).digest()):
        raise _bad("this is not the scrape token (GATEWAY_METRICS_TOKEN)")


def _bearer(authorization: str | None) -> str:
    # The header is never quoted back: without a scheme, its first word may be the token itself.
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AccessDenied(401, "missing_token", "send the header 'Authorization: Bearer <token>'")
    if len(token) > MAX_TOKEN:
        raise _bad(f"the bearer token is longer than {MAX_TOKEN} bytes")
    return token


def _decode(token: str, key: AdminKey) -> dict[str, Any]:
    material: bytes | PublicKey = key.key.reveal().encode() if isinstance(key.key, Secret) else key.key
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            material,
            algorithms=[key.algorithm],
            audience=AUDIENCE,
            options={
                "require": list(_REQUIRED),
                "verify_signature": True,
                "verify_aud": True,
                "strict_aud": True,  # aud must be exactly AUDIENCE, not a list that contains it
                "verify_exp": False,  # time claims: checked by authenticate against `now`
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise _bad("the token's signature does not match the configured admin key") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _bad(f"the token has no {exc.claim!r} claim") from None
    except jwt.InvalidAudienceError:
        raise _bad(f"the token's aud is not {AUDIENCE!r}") from None
    except jwt.DecodeError:
        raise _bad("the token's header, payload or signature is not decodable") from None
    except jwt.PyJWTError as exc:  # the library's base; messages may quote claims: only the kind is told
        raise _bad(f"the token is not valid ({type(exc).__name__})") from None
    return claims


def _bad(detail: str) -> AccessDenied:
    return AccessDenied(401, "bad_token", detail)


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"the token's {name} claim should be a number of seconds since the epoch")
    return float(value)


def _iso(timestamp: float) -> str:
    try:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{timestamp:.0f} (unix time)"


# -- minting ----------------------------------------------------------------------------------------------


def mint(
    signing_key: str | bytes,
    algorithm: str,
    *,
    subject: str,
    scopes: Sequence[str],
    ttl: float,
    now: float,
    token_id: str | None = None,
) -> str:
    """A signed admin token. HS256 takes the shared secret; RS256/ES256 a PEM private key (no passphrase).

    Adds a random ``jti`` unless ``token_id`` is given. Raises Invalid for a bad key, scope, subject or ttl.
    """
    if algorithm not in ALGORITHMS:
        raise Invalid(f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    if not isinstance(subject, str) or not subject.strip():
        raise Invalid("the token needs a subject: who or what will use it, e.g. 'deploy-bot'")
    if token_id is not None and not token_id:
        raise Invalid("token_id must not be empty; leave it out for a random one")
    claims = {
        "sub": subject,
        "scope": " ".join(_scopes(scopes)),
        "aud": AUDIENCE,
        "iat": int(now),
        "exp": int(now + _ttl(ttl)),
        "jti": token_id if token_id is not None else secrets.token_hex(8),
    }
    return jwt.encode(claims, _signing_material(signing_key, algorithm), algorithm=algorithm)


def parse_ttl(text: str) -> float:
    """Seconds in a lifetime like ``90s``, ``15m``, ``1h``, ``7d`` or ``2w``; Invalid for anything else."""
    m = _TTL.fullmatch(text.strip())
    if m is None:
        raise Invalid(
            f"ttl {text[:40]!r} is not understood; use a whole number and a unit: "
            "90s, 15m, 1h, 7d or 2w (s, m, h, d, w)"
        )
    return float(int(m.group(1)) * UNITS[m.group(2)])


def _scopes(scopes: Sequence[str]) -> list[str]:
    wanted = scopes.split() if isinstance(scopes, str) else list(scopes)
    if not wanted:
        raise Invalid(f"the token needs at least one scope: {', '.join(SCOPES)}")
    for scope in wanted:
        if scope not in SCOPES:
            hint = difflib.get_close_matches(str(scope), SCOPES, n=1)
            why = f"did you mean {hint[0]!r}?" if hint else f"known: {', '.join(SCOPES)}"
            raise Invalid(f"unknown scope {str(scope)[:40]!r} ({why})")
    return [s for s in SCOPES if s in wanted]


def _ttl(ttl: float) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or math.isnan(ttl):
        raise Invalid(f"ttl should be a number of seconds, got {ttl!r}")
    if ttl <= 0:
        raise Invalid(f"ttl must be positive, got {ttl:g} s; e.g. 1h or 7d")
    if ttl > MAX_TTL:
        raise Invalid(f"ttl {ttl:g} s is longer than 366 days; mint a shorter-lived token and renew it")
    return ttl


def _signing_material(
    signing_key: str | bytes, algorithm: str
) -> bytes | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    raw = signing_key.encode() if isinstance(signing_key, str) else signing_key
    if algorithm == "HS256":
        _check_secret(raw, "the HS256 signing secret")
        return raw
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError):
        raise Invalid(
            f"{algorithm} needs a PEM private key without a passphrase (-----BEGIN PRIVATE KEY-----); "
            "the key given is not one"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise Invalid(f"the signing key has key type {_kind(key)}; {algorithm} needs {_NEEDS[algorithm]}")
    _check_strength(key.public_key(), "the signing key")
    if _algorithm_of(key.public_key()) != algorithm:
        raise Invalid(f"the signing key does not fit {algorithm}: {algorithm} needs {_NEEDS[algorithm]}")
    return key


_NEEDS = {"RS256": "an RSA key", "ES256": "an EC P-256 key"}


def signing_algorithm(pem: str | bytes) -> str:
    """RS256 or ES256, as the PEM private key's type decides; Invalid for anything else."""
    raw = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError):
        raise Invalid(
            "--private-key: not a PEM private key without a passphrase (-----BEGIN PRIVATE KEY-----)"
        ) from None
    algorithm = (
        _algorithm_of(key.public_key())
        if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        else None
    )
    if algorithm is None:
        raise Invalid(
            f"--private-key: a {_kind(key)} key; admin tokens are signed with an RSA or EC P-256 key"
        )
    return algorithm


# -- keys -------------------------------------------------------------------------------------------------


def _check_secret(raw: bytes, what: str) -> None:
    if len(raw) < MIN_SECRET:
        raise Invalid(
            f"{what} is {len(raw)} bytes; it needs at least {MIN_SECRET}. Make one with: {MAKE_SECRET}"
        )
    try:
        jwt.get_algorithm_by_name("HS256").prepare_key(raw)
    except jwt.InvalidKeyError:  # PyJWT refuses PEM, SSH, DER and JWK text as HMAC secrets
        raise Invalid(
            f"{what} looks like a key file's content, not a random secret; for a public key use "
            f"--admin-public-key, else make a secret with: {MAKE_SECRET}"
        ) from None


def _check_strength(key: PublicKey, where: str) -> None:
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise Invalid(f"{where} is a {key.key_size}-bit RSA key; use {MIN_RSA_BITS} bits or more")
    if isinstance(key, ec.EllipticCurvePublicKey) and not isinstance(key.curve, ec.SECP256R1):
        raise Invalid(f"{where} is an EC key on curve {key.curve.name}; ES256 needs P-256 (secp256r1)")


def _algorithm_of(key: object) -> str | None:
    if isinstance(key, Secret):
        return "HS256"
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    return None


def _kind(key: object) -> str:
    return (
        type(key).__name__.removeprefix("_").replace("PublicKey", "").replace("PrivateKey", "") or "unknown"
    )

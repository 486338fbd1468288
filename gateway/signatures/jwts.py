"""JWT-signed deliveries: Plaid's body-hash token, Google Pub/Sub push OIDC tokens, and generic JWTs.

Pure: no clock, no environment, no I/O; keys and ``now`` are passed in. Parsing and signatures are PyJWT's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.errors import SignatureError
from gateway.model import Secret

# Key material for verify_jwt: an HMAC secret (Secret, or str/bytes that is not PEM), a PEM public key or
# certificate, one JWK, or a JWK set ({"keys": [...]}).
KeyMaterial = Secret | str | bytes | Mapping[str, Any]
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

MAX_TOKEN = 16 * 1024  # a longer token is malformed, never parsed
PLAID_MAX_AGE = (
    5 * 60
)  # https://plaid.com/docs/api/webhooks/webhook-verification/: iat older than 5 min fails
PLAID_SKEW = 30  # Plaid's docs set no bound on a future iat; allow a little clock drift, no more
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
GOOGLE_SKEW = 10  # seconds of clock drift tolerated on exp/iat, as google-auth's verifiers do by default
_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
SUPPORTED = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512")


HEADER_REFUSED = "the token's header is not one this gateway reads (kid must be a string; no crit extensions)"


def unverified_kid(token: str) -> str | None:
    """The ``kid`` in a token's header, read without checking anything: only for choosing a key to fetch."""
    kid = _header(token).get("kid")
    return kid if isinstance(kid, str) and kid else None


def verify_plaid(token: str, body: bytes, jwk: Mapping[str, Any], now: float) -> None:
    """Check a ``Plaid-Verification`` token: ES256 by ``jwk``, ``iat`` at most 5 minutes old, and
    ``request_body_sha256`` equal to the SHA-256 of the exact body bytes (Plaid pretty-prints bodies).

    https://plaid.com/docs/api/webhooks/webhook-verification/
    """
    header = _header(token)
    _require_alg(header, ("ES256",))
    if jwk.get("expired_at") is not None:
        raise SignatureError("unknown_key", f"Plaid key {jwk.get('kid')!r} has expired; it signs nothing new")
    kid = header.get("kid")
    if kid is not None and jwk.get("kid") not in (None, kid):
        raise SignatureError(
            "unknown_key", f"the token names key {kid!r}, the key given is {jwk.get('kid')!r}"
        )
    key = _from_jwk(jwk, "ES256")
    claims = _decode(token, [key], "ES256")
    iat = _number(claims, "iat")
    _fresh("iat", iat - PLAID_SKEW, iat + PLAID_MAX_AGE, now)
    claimed = claims.get("request_body_sha256")
    if not isinstance(claimed, str):
        raise SignatureError("bad_token", "the token has no request_body_sha256 claim")
    # compare_digest: the time taken must not reveal how much of the hash matched.
    if not hmac.compare_digest(hashlib.sha256(body).hexdigest().encode(), claimed.encode()):
        raise SignatureError(
            "bad_signature", "request_body_sha256 does not match the body: the body was altered"
        )


def verify_google_oidc(
    token: str, certs: Mapping[str, Any], *, audience: str, email: str | None, now: float
) -> dict[str, Any]:
    """Check a Pub/Sub push ``Authorization: Bearer`` token; return its claims.

    ``certs`` is Google's JWK set (https://www.googleapis.com/oauth2/v3/certs) or its ``{kid: PEM}`` map
    (…/oauth2/v1/certs). The token covers identity, audience and time only, never the body.
    https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions
    """
    header = _header(token)
    _require_alg(header, ("RS256",))
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SignatureError("malformed_signature", "the token's header has no kid")
    key = _google_key(certs, kid)
    claims = _decode(token, [key], "RS256", audience=audience)
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise SignatureError("bad_token", f"issuer {str(claims.get('iss'))[:80]!r} is not Google")
    iat, exp = _number(claims, "iat"), _number(claims, "exp")
    _fresh("iat", iat - GOOGLE_SKEW, exp + GOOGLE_SKEW, now)
    if email is not None:
        if claims.get("email") != email:
            got = str(claims.get("email"))[:120]
            raise SignatureError(
                "bad_token", f"the token is for {got!r}, not the configured account {email!r}"
            )
        if claims.get("email_verified") is not True:
            raise SignatureError("bad_token", f"Google has not verified the email {email!r}")
    return claims


def verify_jwt(
    token: str,
    *,
    keys: Sequence[KeyMaterial],
    algorithms: Sequence[str],
    audience: str | None,
    issuer: str | None,
    now: float,
    leeway: int = 0,
) -> dict[str, Any]:
    """Check a JWT signed with a static key (HMAC secret, PEM public key, JWK or JWK set); return its claims.

    Only ``algorithms`` are accepted, and a key is only tried with algorithms of its own kind, so an HS256
    token can never be checked against an RSA public key used as an HMAC secret. ``exp``, ``nbf`` and ``iat``
    are checked against ``now`` when present, give or take ``leeway`` seconds.
    """
    header = _header(token)
    alg = _require_alg(header, tuple(a for a in algorithms if a in SUPPORTED))
    kid = header.get("kid")
    loaded = [k for material in keys for k in _load(material)]
    fitting = [key for key_id, key in loaded if _fits(key, alg)]
    if not fitting:
        raise SignatureError("bad_token", f"the token's alg {alg} does not fit any configured key")
    if isinstance(kid, str):
        fitting = [key for key_id, key in loaded if _fits(key, alg) and key_id in (None, kid)]
        if not fitting:
            raise SignatureError("unknown_key", f"no configured key has kid {kid[:80]!r}")
    claims = _decode(token, fitting, alg, audience=audience, issuer=issuer)
    if "exp" in claims:
        _fresh("exp", None, _number(claims, "exp") + leeway, now)
    if "nbf" in claims:
        _fresh("nbf", _number(claims, "nbf") - leeway, None, now)
    if "iat" in claims:
        _fresh("iat", _number(claims, "iat") - leeway, None, now)
    return claims


# -- parsing ----------------------------------------------------------------------------------------------


def _header(token: str) -> dict[str, Any]:
    if not token:
        raise SignatureError("missing_signature", "no token")
    if len(token) > MAX_TOKEN:
        raise SignatureError("malformed_signature", f"the token is longer than {MAX_TOKEN} bytes")
    try:
        return jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise SignatureError(
            "malformed_signature", "the token is not a compact JWT (header.payload.signature)"
        ) from None
    except jwt.PyJWTError:  # the library's base: a kid that is not a string, a crit extension, …
        raise SignatureError("malformed_signature", HEADER_REFUSED) from None


def _require_alg(header: Mapping[str, Any], allowed: Sequence[str]) -> str:
    alg = header.get("alg")
    if alg not in allowed:
        # Refusing before any key is touched stops `none` and HS/RS confusion outright.
        raise SignatureError(
            "bad_token", f"alg {str(alg)[:20]!r} is not accepted here (allowed: {', '.join(allowed)})"
        )
    return str(alg)


def _decode(
    token: str,
    keys: Sequence[bytes | PublicKey],
    alg: str,
    *,
    audience: str | None = None,
    issuer: str | None = None,
) -> dict[str, Any]:
    """The token's claims if one of ``keys`` signed it; audience and issuer checked by PyJWT, time by us."""
    for key in keys:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                # PyJWT reads the wall clock for exp/nbf/iat, so those checks are off here and done by
                # _fresh against the caller's `now`: verification stays pure and testable with a fixed clock.
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": audience is not None,
                    "verify_iss": issuer is not None,
                },
                audience=audience,
                issuer=issuer,
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidAudienceError:
            raise SignatureError(
                "wrong_audience", f"the token is not meant for audience {audience!r}"
            ) from None
        except jwt.InvalidIssuerError:
            raise SignatureError("bad_token", f"the token was not issued by {issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise SignatureError("bad_token", f"the token has no {exc.claim!r} claim") from None
        except jwt.DecodeError:
            raise SignatureError(
                "malformed_signature", "the token's payload or signature is not decodable"
            ) from None
        except jwt.PyJWTError as exc:  # the library's base (InvalidKeyError …): never echo key material
            raise SignatureError("bad_token", f"the token cannot be checked ({type(exc).__name__})") from None
        return claims
    which = "the configured key" if len(keys) == 1 else f"any of the {len(keys)} candidate keys"
    raise SignatureError("bad_signature", f"the token's signature does not match {which}")


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignatureError(
            "bad_token", f"the token's {name} claim should be a number, got {str(value)[:40]!r}"
        )
    return float(value)


def _fresh(claim: str, earliest: float | None, latest: float | None, now: float) -> None:
    if earliest is not None and now < earliest:
        raise SignatureError("stale_timestamp", f"the token's {claim} is in the future (a clock out of sync)")
    if latest is not None and now > latest:
        raise SignatureError(
            "stale_timestamp", f"the token has expired ({claim} is too old: a replay, or a slow clock)"
        )


# -- keys -------------------------------------------------------------------------------------------------


def _fits(key: bytes | PublicKey, alg: str) -> bool:
    if alg.startswith("HS"):
        return isinstance(key, bytes)
    if alg.startswith("RS"):
        return isinstance(key, rsa.RSAPublicKey)
    return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _CURVES.get(alg)


def _from_jwk(jwk: Mapping[str, Any], alg: str | None = None) -> bytes | PublicKey:
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=alg).key
    except (jwt.PyJWKError, jwt.InvalidKeyError):  # their messages may quote the key: not repeated
        raise SignatureError(
            "no_secret", f"a configured JWK (kid {jwk.get('kid')!r}) is not usable"
        ) from None
    if isinstance(key, bytes | rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return key
    raise SignatureError("no_secret", f"JWK {jwk.get('kid')!r} is not an HMAC, RSA or EC public key")


def _load(material: KeyMaterial) -> list[tuple[str | None, bytes | PublicKey]]:
    """Key material as (kid, key) pairs: a JWK set gives several, anything else one."""
    if isinstance(material, Mapping):
        if "keys" in material:
            return [
                (jwk.get("kid"), _from_jwk(jwk))
                for jwk in material["keys"]
                if jwk.get("use") in (None, "sig")
            ]
        return [(material.get("kid"), _from_jwk(material))]
    raw = material.reveal().encode() if isinstance(material, Secret) else material
    raw = raw.encode() if isinstance(raw, str) else raw
    if b"-----BEGIN" in raw:
        return [(None, _pem_key(raw))]
    if not raw:
        raise SignatureError("no_secret", "a configured JWT secret is empty")
    return [(None, raw)]


def _pem_key(pem: bytes) -> PublicKey:
    try:
        if b"CERTIFICATE" in pem:
            key: object = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise SignatureError("no_secret", "a configured PEM key is not a public key or certificate") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise SignatureError("no_secret", "a configured PEM key is neither RSA nor EC")
    return key


def _google_key(certs: Mapping[str, Any], kid: str) -> bytes | PublicKey:
    if "keys" in certs:
        for jwk in certs["keys"]:
            if jwk.get("kid") == kid:
                return _from_jwk(jwk, "RS256")
    elif isinstance(pem := certs.get(kid), str):
        return _pem_key(pem.encode())
    raise SignatureError("unknown_key", f"Google's certs have no key {kid[:80]!r} (fetch them again)")

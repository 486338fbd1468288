"""JWT deliveries: Plaid's genuine webhook, Google OIDC judged by google-auth, generic JWTs, alg confusion."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from google.auth import _helpers as google_helpers
from google.oauth2 import id_token

from gateway.errors import SignatureError
from gateway.model import Secret
from gateway.signatures.jwts import unverified_kid, verify_google_oidc, verify_jwt, verify_plaid
from tests.support.keys import (
    PLAID_BODY,
    PLAID_IAT,
    PLAID_JWK,
    PLAID_KID,
    PLAID_TOKEN,
    b64url,
    hs256_by_hand,
    public_pem,
)

# -- Plaid: a genuine sandbox delivery (Stack Overflow question 62117400) ------------------------------------


def test_plaid_genuine_delivery_verifies() -> None:
    assert unverified_kid(PLAID_TOKEN) == PLAID_KID
    verify_plaid(PLAID_TOKEN, PLAID_BODY, PLAID_JWK, now=PLAID_IAT + 60)


def test_plaid_body_reserialised_compactly_is_rejected() -> None:
    compact = json.dumps(json.loads(PLAID_BODY)).encode()
    with pytest.raises(SignatureError) as exc:
        verify_plaid(PLAID_TOKEN, compact, PLAID_JWK, now=PLAID_IAT)
    assert (exc.value.reason, exc.value.detail) == (
        "bad_signature",
        "request_body_sha256 does not match the body: the body was altered",
    )


def test_plaid_iat_older_than_five_minutes_is_stale() -> None:
    verify_plaid(PLAID_TOKEN, PLAID_BODY, PLAID_JWK, now=PLAID_IAT + 300)
    with pytest.raises(SignatureError) as exc:
        verify_plaid(PLAID_TOKEN, PLAID_BODY, PLAID_JWK, now=PLAID_IAT + 301)
    assert (exc.value.reason, exc.value.detail) == (
        "stale_timestamp",
        "the token has expired (iat is too old: a replay, or a slow clock)",
    )


def test_plaid_iat_in_the_future_is_stale() -> None:
    verify_plaid(PLAID_TOKEN, PLAID_BODY, PLAID_JWK, now=PLAID_IAT - 30)
    with pytest.raises(SignatureError) as exc:
        verify_plaid(PLAID_TOKEN, PLAID_BODY, PLAID_JWK, now=PLAID_IAT - 31)
    assert (exc.value.reason, exc.value.detail) == (
        "stale_timestamp",
        "the token's iat is in the future (a clock out of sync)",
    )


def test_plaid_token_from_another_key_is_rejected() -> None:
    other = jwt.PyJWK.from_dict(
        json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    )
    jwk = {**other._jwk_data, "kid": PLAID_KID}
    with pytest.raises(SignatureError) as exc:
        verify_plaid(PLAID_TOKEN, PLAID_BODY, jwk, now=PLAID_IAT)
    assert (exc.value.reason, exc.value.detail) == (
        "bad_signature",
        "the token's signature does not match the configured key",
    )


def test_plaid_expired_key_is_refused() -> None:
    with pytest.raises(SignatureError) as exc:
        verify_plaid(PLAID_TOKEN, PLAID_BODY, {**PLAID_JWK, "expired_at": 1600000000}, now=PLAID_IAT)
    assert exc.value.reason == "unknown_key"


def test_plaid_key_for_another_kid_is_refused() -> None:
    with pytest.raises(SignatureError) as exc:
        verify_plaid(PLAID_TOKEN, PLAID_BODY, {**PLAID_JWK, "kid": "other"}, now=PLAID_IAT)
    assert exc.value.reason == "unknown_key"


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), b64url(signature)]
    )


def test_plaid_alg_none_is_refused() -> None:
    claims = {"iat": PLAID_IAT, "request_body_sha256": "b63a07b5"}
    with pytest.raises(SignatureError) as exc:
        verify_plaid(forge({"alg": "none", "kid": PLAID_KID}, claims), PLAID_BODY, PLAID_JWK, now=PLAID_IAT)
    assert (exc.value.reason, exc.value.detail) == (
        "bad_token",
        "alg 'none' is not accepted here (allowed: ES256)",
    )


def test_plaid_hs256_signed_with_the_public_key_is_refused() -> None:
    # The classic confusion: HS256 with the public key's PEM bytes as the HMAC secret.
    pem = jwt.PyJWK.from_dict(PLAID_JWK).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = hs256_by_hand(
        {"alg": "HS256", "kid": PLAID_KID}, {"iat": PLAID_IAT, "request_body_sha256": "x"}, pem
    )
    with pytest.raises(SignatureError) as exc:
        verify_plaid(token, PLAID_BODY, PLAID_JWK, now=PLAID_IAT)
    assert (exc.value.reason, exc.value.detail) == (
        "bad_token",
        "alg 'HS256' is not accepted here (allowed: ES256)",
    )


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "x" * 20000])
def test_plaid_malformed_tokens_are_rejected(token: str) -> None:
    with pytest.raises(SignatureError) as exc:
        verify_plaid(token, PLAID_BODY, PLAID_JWK, now=PLAID_IAT)
    assert exc.value.reason in ("malformed_signature", "missing_signature")


# -- Google Pub/Sub push OIDC --------------------------------------------------------------------------------

AUDIENCE = "https://hooks.example.com/pubsub"
ACCOUNT = "pusher@project.iam.gserviceaccount.com"
NOW = 1_750_000_000


@dataclass(frozen=True)
class Google:
    key: rsa.RSAPrivateKey
    kid: str
    jwks: dict[str, Any]
    pem_map: dict[str, str]

    def token(self, **overrides: Any) -> str:
        claims: dict[str, Any] = {
            "aud": AUDIENCE,
            "azp": "1234567890",
            "email": ACCOUNT,
            "email_verified": True,
            "exp": NOW + 3600,
            "iat": NOW,
            "iss": "https://accounts.google.com",
            "sub": "1234567890",
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


def _self_signed(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.google.com")])
    start = datetime.fromtimestamp(NOW, UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=14))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def google() -> Google:
    key = rsa.generate_private_key(65537, 2048)
    kid = "f5f4bf46e52b31d9b6249f7309ad0338400680cd"
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = {"keys": [{**jwk, "kid": kid, "alg": "RS256", "use": "sig"}]}
    return Google(key, kid, jwks, {kid: _self_signed(key)})


class _Response:
    def __init__(self, data: bytes) -> None:
        self.status = 200
        self.data = data


def google_auth_accepts(token: str, certs: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """google-auth's own verifier, fed the certs offline and a fixed clock."""
    monkeypatch.setattr(
        google_helpers, "utcnow", lambda: datetime.fromtimestamp(NOW, UTC).replace(tzinfo=None)
    )

    def request(url: str, method: str = "GET", **_: Any) -> _Response:
        return _Response(json.dumps(certs).encode())

    return dict(id_token.verify_oauth2_token(token, request, audience=AUDIENCE))  # type: ignore[arg-type]


def test_google_token_accepted_by_google_auth_verifies_with_both_cert_forms(
    google: Google, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = google.token()
    judged = google_auth_accepts(token, google.pem_map, monkeypatch)
    assert verify_google_oidc(token, google.jwks, audience=AUDIENCE, email=ACCOUNT, now=NOW) == judged
    assert verify_google_oidc(token, google.pem_map, audience=AUDIENCE, email=ACCOUNT, now=NOW) == judged


def test_google_legacy_issuer_without_scheme_verifies(google: Google) -> None:
    token = google.token(iss="accounts.google.com")
    assert (
        verify_google_oidc(token, google.jwks, audience=AUDIENCE, email=None, now=NOW)["iss"]
        == "accounts.google.com"
    )


def test_google_wrong_audience_is_rejected_as_google_auth_does(
    google: Google, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = google.token(aud="https://other.example.com/")
    with pytest.raises(ValueError):
        google_auth_accepts(token, google.pem_map, monkeypatch)
    with pytest.raises(SignatureError) as exc:
        verify_google_oidc(token, google.jwks, audience=AUDIENCE, email=ACCOUNT, now=NOW)
    assert (exc.value.reason, exc.value.detail) == (
        "wrong_audience",
        "the token is not meant for audience 'https://hooks.example.com/pubsub'",
    )


def test_google_other_issuer_is_rejected(google: Google) -> None:
    with pytest.raises(SignatureError) as exc:
        verify_google_oidc(
            google.token(iss="https://evil.example"), google.jwks, audience=AUDIENCE, email=None, now=NOW
        )
    assert (exc.value.reason, exc.value.detail) == (
        "bad_token",
        "issuer 'https://evil.example' is not Google",
    )


def test_google_wrong_email_is_rejected(google: Google) -> None:
    token = google.token(email="someone@else.iam.gserviceaccount.com")
    with pytest.raises(SignatureError) as exc:
        verify_google_oidc(token, google.jwks, audience=AUDIENCE, email=ACCOUNT, now=NOW)
    assert (exc.value.reason, exc.value.detail) == (
        "bad_token",
        f"the token is for 'someone@else.iam.gserviceaccount.com', not the configured account {ACCOUNT!r}",
    )


def test_google_unverified_email_is_rejected(google: Google) -> None:
    with pytest.raises(SignatureError) as exc:
        verify_google_oidc(
            google.token(email_verified=False), google.jwks, audience=AUDIENCE, email=ACCOUNT, now=NOW
        )
    assert exc.value.detail == f"Google has not verified the email {ACCOUNT!r}"


def test_google_expired_token_is_stale_as_google_auth_says(
    google: Google, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = google.token(iat=NOW - 3700, exp=NOW - 100)
    with pytest.raises(ValueError, match="Token expired"):
        google_auth_accepts(token, google.pem_map, monkeypatch)
    with pytest.raises(SignatureError) as exc:
        verify_google_oidc(token, google.jwks, audience=AUDIENCE, email=None, now=NOW)
    assert exc.value.reason == "stale_timestamp"


def test_google_token_from_the_future_is_stale(google: Google) -> None:
    with pytest.raises(SignatureError) as exc:
        verify_google_oidc(
            google.token(iat=NOW + 60, exp=NOW + 3660), google.jwks, audience=AUDIENCE, email=None, now=NOW
        )
    assert exc.value.detail == "the token's iat is in the future (a clock out of sync)"


def test_google_token_without_exp_is_rejected(google: Google) -> None:
    with pytest.raises(SignatureError) as exc:
        verify_google_oidc(google.token(exp=None), google.jwks, audience=AUDIENCE, email=None, now=NOW)
    assert (exc.value.reason, exc.value.detail) == (
        "bad_token",
        "the token's exp claim should be a number, got 'None'",
    )


def test_google_unknown_kid_asks_for_fresh_certs(google: Google) -> None:
    token = jwt.encode({"aud": AUDIENCE}, google.key, algorithm="RS256", headers={"kid": "rotated"})
    with pytest.raises(SignatureError) as exc:
        verify_google_oidc(token, google.jwks, audience=AUDIENCE, email=None, now=NOW)
    assert (exc.value.reason, exc.value.detail) == (
        "unknown_key",
        "Google's certs have no key 'rotated' (fetch them again)",
    )


def test_google_token_signed_by_another_key_under_a_known_kid_is_rejected(google: Google) -> None:
    stranger = rsa.generate_private_key(65537, 2048)
    token = jwt.encode(
        {"aud": AUDIENCE, "iat": NOW, "exp": NOW + 60},
        stranger,
        algorithm="RS256",
        headers={"kid": google.kid},
    )
    with pytest.raises(SignatureError) as exc:
        verify_google_oidc(token, google.pem_map, audience=AUDIENCE, email=None, now=NOW)
    assert exc.value.reason == "bad_signature"


# -- generic JWT ---------------------------------------------------------------------------------------------

HS_SECRET = "a-shared-secret-that-is-at-least-32-bytes"


def check(
    token: str, keys: list[Any], algorithms: tuple[str, ...] = ("HS256", "RS256", "ES256"), **kw: Any
) -> dict[str, Any]:
    args: dict[str, Any] = {"audience": None, "issuer": None, "now": NOW}
    args.update(kw)
    return verify_jwt(token, keys=keys, algorithms=algorithms, **args)


def test_hs256_token_with_a_shared_secret_verifies() -> None:
    token = jwt.encode({"sub": "x", "iat": NOW, "exp": NOW + 60}, HS_SECRET, algorithm="HS256")
    assert check(token, [Secret(HS_SECRET)])["sub"] == "x"


def test_rs256_and_es256_tokens_with_pem_keys_verify(rsa_key: rsa.RSAPrivateKey) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    assert check(jwt.encode({"n": 1}, rsa_key, algorithm="RS256"), [public_pem(rsa_key)]) == {"n": 1}
    assert check(
        jwt.encode({"n": 2}, ec_key, algorithm="ES256"), [public_pem(rsa_key), public_pem(ec_key)]
    ) == {"n": 2}


def test_jwks_key_is_picked_by_kid(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(65537, 2048)
    jwks = {
        "keys": [
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(other.public_key())), "kid": "a"},
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "b"},
        ]
    }
    token = jwt.encode({"n": 1}, rsa_key, algorithm="RS256", headers={"kid": "b"})
    assert check(token, [jwks]) == {"n": 1}
    stray = jwt.encode({"n": 1}, rsa_key, algorithm="RS256", headers={"kid": "c"})
    with pytest.raises(SignatureError) as exc:
        check(stray, [jwks])
    assert (exc.value.reason, exc.value.detail) == ("unknown_key", "no configured key has kid 'c'")


def test_hs256_token_signed_with_the_rsa_public_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    token = hs256_by_hand({"alg": "HS256", "typ": "JWT"}, {"sub": "admin"}, public_pem(rsa_key))
    with pytest.raises(SignatureError) as exc:
        check(token, [public_pem(rsa_key)])
    assert (exc.value.reason, exc.value.detail) == (
        "bad_token",
        "the token's alg HS256 does not fit any configured key",
    )


def test_alg_outside_the_configured_list_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode({"n": 1}, rsa_key, algorithm="RS256")
    with pytest.raises(SignatureError) as exc:
        check(token, [public_pem(rsa_key)], algorithms=("ES256",))
    assert (exc.value.reason, exc.value.detail) == (
        "bad_token",
        "alg 'RS256' is not accepted here (allowed: ES256)",
    )


def test_alg_none_is_refused_even_when_configured() -> None:
    with pytest.raises(SignatureError) as exc:
        check(forge({"alg": "none"}, {"sub": "admin"}), [Secret(HS_SECRET)], algorithms=("none", "HS256"))
    assert exc.value.detail == "alg 'none' is not accepted here (allowed: HS256)"


def test_es256_token_against_a_p384_key_is_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    token = forge({"alg": "ES256"}, {"n": 1}, b"\x00" * 64)
    with pytest.raises(SignatureError) as exc:
        check(token, [public_pem(p384)])
    assert exc.value.reason == "bad_token"


def test_wrong_secret_is_a_bad_signature() -> None:
    token = jwt.encode({"n": 1}, "another-shared-secret-also-32-bytes-long", algorithm="HS256")
    with pytest.raises(SignatureError) as exc:
        check(token, [Secret(HS_SECRET)])
    assert (exc.value.reason, exc.value.detail) == (
        "bad_signature",
        "the token's signature does not match the configured key",
    )


def test_audience_and_issuer_are_enforced_when_configured() -> None:
    token = jwt.encode({"aud": "a", "iss": "me"}, HS_SECRET, algorithm="HS256")
    assert check(token, [HS_SECRET], audience="a", issuer="me") == {"aud": "a", "iss": "me"}
    with pytest.raises(SignatureError) as aud:
        check(token, [HS_SECRET], audience="b")
    assert aud.value.reason == "wrong_audience"
    with pytest.raises(SignatureError) as iss:
        check(token, [HS_SECRET], issuer="you")
    assert (iss.value.reason, iss.value.detail) == ("bad_token", "the token was not issued by 'you'")
    with pytest.raises(SignatureError) as missing:
        check(jwt.encode({"n": 1}, HS_SECRET, algorithm="HS256"), [HS_SECRET], audience="a")
    assert (missing.value.reason, missing.value.detail) == ("bad_token", "the token has no 'aud' claim")


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"exp": NOW - 1}, "the token has expired (exp is too old: a replay, or a slow clock)"),
        ({"nbf": NOW + 1}, "the token's nbf is in the future (a clock out of sync)"),
        ({"iat": NOW + 1}, "the token's iat is in the future (a clock out of sync)"),
    ],
)
def test_times_are_checked_against_the_given_now(claims: dict[str, int], detail: str) -> None:
    token = jwt.encode(claims, HS_SECRET, algorithm="HS256")
    with pytest.raises(SignatureError) as exc:
        check(token, [HS_SECRET])
    assert (exc.value.reason, exc.value.detail) == ("stale_timestamp", detail)
    assert check(token, [HS_SECRET], leeway=1) == claims


def test_jwt_key_errors_never_show_key_material() -> None:
    with pytest.raises(SignatureError) as exc:
        check(jwt.encode({"n": 1}, HS_SECRET, algorithm="HS256"), [{"k": "c2VjcmV0LXZhbHVl", "kid": "k1"}])
    assert exc.value.reason == "no_secret"
    assert "c2VjcmV0" not in str(exc.value)

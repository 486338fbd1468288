"""Admin API tokens: keys from configuration, every refusal, alg none and confusion, minting, ttl parsing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.errors import AccessDenied, Invalid
from gateway.model import Secret
from gateway.web.auth import (
    AUDIENCE,
    MAX_TTL,
    SCOPES,
    AdminKey,
    Principal,
    admin_key,
    authenticate,
    mint,
    parse_ttl,
    public_key,
    require,
)
from tests.support.keys import public_pem

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z
SECRET = "Vq3wQm8nZ1xK7pL0sR4tY6uE2iO9aD5fG3hJ8kM1nB"  # 42 bytes, as secrets.token_urlsafe(32) makes
DROP = object()  # a claim to leave out
HS256_HEADER = b'{"alg":"HS256","typ":"JWT"}'


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_pem(key: Any) -> str:
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


def write(tmp_path: Path, data: bytes, name: str = "admin.pub") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def claims(**changes: Any) -> dict[str, Any]:
    """Valid admin claims, with ``changes`` applied (DROP removes a claim)."""
    base: dict[str, Any] = {
        "sub": "deploy-bot",
        "scope": "read replay",
        "aud": AUDIENCE,
        "iat": int(NOW),
        "exp": int(NOW) + 3600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not DROP}


def hs_token(payload: dict[str, Any], secret: str = SECRET) -> str:
    """A token from PyJWT directly: an encoder independent of gateway.web.auth.mint."""
    return jwt.encode(payload, secret, algorithm="HS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed_hs256(payload: bytes, key: bytes) -> str:
    """An HS256 token signed by hand: any payload bytes, any key (even a PEM, which PyJWT refuses)."""
    signing_input = f"{b64(HS256_HEADER)}.{b64(payload)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def denied(authorization: str | None, key: AdminKey) -> AccessDenied:
    with pytest.raises(AccessDenied) as info:
        authenticate(authorization, key, now=NOW)
    exc = info.value
    assert SECRET not in str(exc)
    words = (authorization or "").split()
    if len(words) > 1:
        assert words[-1] not in str(exc)  # the token is never quoted back
    return exc


@pytest.fixture
def hs_key() -> AdminKey:
    key = admin_key(SECRET, None)
    assert key is not None
    return key


# -- round trips ----------------------------------------------------------------------------------------


def test_hs256_token_round_trips(hs_key: AdminKey) -> None:
    token = mint(SECRET, "HS256", subject="ci", scopes=["replay", "read"], ttl=3600, now=NOW, token_id="t1")

    principal = authenticate(f"Bearer {token}", hs_key, now=NOW + 5)

    assert hs_key.algorithm == "HS256"
    assert principal == Principal(
        subject="ci", scopes=frozenset({"read", "replay"}), expires_at=NOW + 3600, token_id="t1"
    )
    assert jwt.decode(token, options={"verify_signature": False})["scope"] == "read replay"


@pytest.mark.parametrize(("which", "algorithm"), [("rsa", "RS256"), ("ec", "ES256")])
def test_public_key_token_round_trips(
    which: str, algorithm: str, tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    private = rsa_key if which == "rsa" else ec_key
    key = admin_key(None, write(tmp_path, public_pem(private)))
    assert key is not None and key.algorithm == algorithm

    token = mint(private_pem(private), algorithm, subject="ops", scopes=["trigger"], ttl=60, now=NOW)
    principal = authenticate(f"Bearer {token}", key, now=NOW)

    assert jwt.get_unverified_header(token)["alg"] == algorithm
    assert (principal.subject, principal.scopes, principal.expires_at) == ("ops", {"trigger"}, NOW + 60)


def test_mint_adds_a_random_token_id(hs_key: AdminKey) -> None:
    first, second = (
        authenticate(
            "Bearer " + mint(SECRET, "HS256", subject="a", scopes=["read"], ttl=60, now=NOW), hs_key, now=NOW
        ).token_id
        for _ in range(2)
    )
    assert first is not None and second is not None and first != second
    assert len(first) == 16 and int(first, 16) >= 0


def test_mint_accepts_scopes_as_one_space_separated_string(hs_key: AdminKey) -> None:
    token = mint(SECRET, "HS256", subject="a", scopes="trigger read", ttl=60, now=NOW)
    assert authenticate(f"Bearer {token}", hs_key, now=NOW).scopes == {"read", "trigger"}


def test_unknown_scopes_from_an_independent_encoder_still_authenticate(hs_key: AdminKey) -> None:
    token = hs_token(claims(scope="read admin:everything replay-v2", jti="j-1", extra={"x": 1}))

    principal = authenticate(f"Bearer {token}", hs_key, now=NOW)

    assert principal.scopes == {"read"}
    assert principal.token_id == "j-1"
    require(principal, "read")
    with pytest.raises(AccessDenied):
        require(principal, "replay")


def test_bearer_scheme_is_case_insensitive(hs_key: AdminKey) -> None:
    token = hs_token(claims())
    for scheme in ("bearer", "BEARER", "Bearer"):
        assert authenticate(f"{scheme} {token}", hs_key, now=NOW).subject == "deploy-bot"


# -- 401 reasons ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "Bearer", "Bearer    ", "Basic dXNlcjpwYXNz", "Token abc.def.ghi", "abc.def.ghi"],
)
def test_missing_or_non_bearer_header_is_401_missing_token(header: str | None, hs_key: AdminKey) -> None:
    exc = denied(header, hs_key)
    assert (exc.status, exc.reason) == (401, "missing_token")
    assert exc.detail == "send the header 'Authorization: Bearer <token>'"


def test_a_bare_token_without_scheme_is_not_quoted_back(hs_key: AdminKey) -> None:
    token = hs_token(claims())
    exc = denied(token, hs_key)
    assert exc.reason == "missing_token"
    assert token not in str(exc) and token.split(".")[0] not in str(exc)


def test_expired_token_is_401_expired_token(hs_key: AdminKey) -> None:
    exc = denied(f"Bearer {hs_token(claims(exp=int(NOW) - 11))}", hs_key)
    assert (exc.status, exc.reason) == (401, "expired_token")
    assert exc.detail == (
        "the token expired at 2025-06-15T15:06:29Z; create a new one with `gateway token create`"
    )


@pytest.mark.parametrize("days", [367, 36_500])
def test_a_token_living_longer_than_mint_allows_is_refused_when_checked_too(
    hs_key: AdminKey, days: int
) -> None:
    # `gateway token create` refuses a ttl over 366 days; a token minted elsewhere must not outlive that.
    exc = denied(f"Bearer {hs_token(claims(exp=int(NOW) + days * 86400))}", hs_key)
    assert (exc.status, exc.reason) == (401, "bad_token")
    assert exc.detail.startswith(f"the token would be valid for {days} days; at most 366 are accepted")


def test_a_token_of_exactly_the_longest_lifetime_is_accepted(hs_key: AdminKey) -> None:
    assert authenticate(f"Bearer {hs_token(claims(exp=int(NOW) + 366 * 86400))}", hs_key, now=NOW)


def test_expiry_within_the_ten_second_leeway_is_accepted(hs_key: AdminKey) -> None:
    assert authenticate(f"Bearer {hs_token(claims(exp=int(NOW) - 10))}", hs_key, now=NOW)


def test_iat_in_the_future_beyond_leeway_is_bad_token(hs_key: AdminKey) -> None:
    assert authenticate(f"Bearer {hs_token(claims(iat=int(NOW) + 10))}", hs_key, now=NOW)
    exc = denied(f"Bearer {hs_token(claims(iat=int(NOW) + 11))}", hs_key)
    assert (exc.status, exc.reason) == (401, "bad_token")
    assert exc.detail == "the token's iat is in the future (is a clock out of sync?)"


def test_not_yet_valid_nbf_is_bad_token(hs_key: AdminKey) -> None:
    assert authenticate(f"Bearer {hs_token(claims(nbf=int(NOW) + 10))}", hs_key, now=NOW)
    exc = denied(f"Bearer {hs_token(claims(nbf=int(NOW) + 60))}", hs_key)
    assert (exc.status, exc.reason) == (401, "bad_token")
    assert exc.detail == "the token is not valid before 2025-06-15T15:07:40Z"


def test_bad_signature_is_bad_token(hs_key: AdminKey) -> None:
    token = hs_token(claims(), secret="another-secret-that-is-also-32-bytes-long")
    exc = denied(f"Bearer {token}", hs_key)
    assert (exc.status, exc.reason) == (401, "bad_token")
    assert exc.detail == "the token's signature does not match the configured admin key"


def test_tampered_payload_is_bad_token(hs_key: AdminKey) -> None:
    header, _, signature = hs_token(claims(scope="read")).split(".")
    forged = f"{header}.{b64(json.dumps(claims(scope='read replay trigger')).encode())}.{signature}"
    assert denied(f"Bearer {forged}", hs_key).detail == (
        "the token's signature does not match the configured admin key"
    )


@pytest.mark.parametrize(
    ("aud", "detail"),
    [
        ("webhook-gateway", "the token's aud is not 'webhook-gateway-admin'"),
        ([AUDIENCE, "billing-api"], "the token's aud is not 'webhook-gateway-admin'"),
        (DROP, "the token has no 'aud' claim"),
    ],
)
def test_wrong_or_missing_audience_is_bad_token(aud: Any, detail: str, hs_key: AdminKey) -> None:
    exc = denied(f"Bearer {hs_token(claims(aud=aud))}", hs_key)
    assert (exc.status, exc.reason, exc.detail) == (401, "bad_token", detail)


@pytest.mark.parametrize("claim", ["sub", "scope", "iat", "exp"])
def test_missing_required_claim_is_bad_token(claim: str, hs_key: AdminKey) -> None:
    exc = denied(f"Bearer {hs_token(claims(**{claim: DROP}))}", hs_key)
    assert (exc.status, exc.reason, exc.detail) == (401, "bad_token", f"the token has no {claim!r} claim")


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        (
            {"scope": ["read", "replay"]},
            "the token's scope claim should be a space-separated string, e.g. 'read replay'",
        ),
        ({"exp": "tomorrow"}, "the token's exp claim should be a number of seconds since the epoch"),
        ({"exp": True}, "the token's exp claim should be a number of seconds since the epoch"),
        ({"iat": "now"}, "the token's iat claim should be a number of seconds since the epoch"),
        ({"nbf": None}, "the token's nbf claim should be a number of seconds since the epoch"),
        ({"sub": ""}, "the token's sub claim should be a non-empty string"),
    ],
)
def test_ill_typed_claim_is_bad_token(changes: dict[str, Any], detail: str, hs_key: AdminKey) -> None:
    exc = denied(f"Bearer {hs_token(claims(**changes))}", hs_key)
    assert (exc.status, exc.reason, exc.detail) == (401, "bad_token", detail)


@pytest.mark.parametrize("changes", [{"sub": 42}, {"jti": 7}])
def test_non_string_sub_or_jti_is_bad_token(changes: dict[str, Any], hs_key: AdminKey) -> None:
    # PyJWT >= 2.10 refuses these itself, older ones let authenticate do it: the outcome is the same.
    exc = denied(f"Bearer {hs_token(claims(**changes))}", hs_key)
    assert (exc.status, exc.reason) == (401, "bad_token")


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("not-a-jwt", "the bearer token is not a JWT (header.payload.signature)"),
        ("abc.def.ghi", "the bearer token is not a JWT (header.payload.signature)"),
        (
            hand_signed_hs256(b"not json", SECRET.encode()),
            "the token's header, payload or signature is not decodable",
        ),
        ("x" * 20_000, "the bearer token is longer than 16384 bytes"),
    ],
)
def test_malformed_token_is_bad_token(token: str, detail: str, hs_key: AdminKey) -> None:
    exc = denied(f"Bearer {token}", hs_key)
    assert (exc.status, exc.reason, exc.detail) == (401, "bad_token", detail)


# -- algorithm: none and confusion ------------------------------------------------------------------------


def test_alg_none_token_is_refused(hs_key: AdminKey, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(claims(), None, algorithm="none")
    rs_key = admin_key(None, write(tmp_path, public_pem(rsa_key)))
    assert rs_key is not None
    for key in (hs_key, rs_key):
        exc = denied(f"Bearer {token}", key)
        assert (exc.status, exc.reason) == (401, "bad_token")
        assert exc.detail == f"the token is signed with alg 'none'; this gateway accepts only {key.algorithm}"


def test_hs256_token_signed_with_the_rsa_public_pem_is_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    pem = public_pem(rsa_key)
    key = admin_key(None, write(tmp_path, pem))
    assert key is not None
    # Sanity: the forgery is a correct HMAC over the PEM bytes, what a naive verifier would accept.
    forged = hand_signed_hs256(json.dumps(claims(scope="read replay trigger")).encode(), pem)
    header, payload, signature = forged.split(".")
    expected = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert signature == b64(expected)

    exc = denied(f"Bearer {forged}", key)

    assert (exc.status, exc.reason) == (401, "bad_token")
    assert exc.detail == "the token is signed with alg 'HS256'; this gateway accepts only RS256"


def test_token_of_another_key_type_is_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    es_key = admin_key(None, write(tmp_path, public_pem(ec_key)))
    assert es_key is not None
    token = mint(private_pem(rsa_key), "RS256", subject="a", scopes=["read"], ttl=60, now=NOW)
    assert denied(f"Bearer {token}", es_key).detail == (
        "the token is signed with alg 'RS256'; this gateway accepts only ES256"
    )


def test_rs256_token_of_another_rsa_key_is_bad_token(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = admin_key(None, write(tmp_path, public_pem(rsa_key)))
    assert key is not None
    token = mint(private_pem(other), "RS256", subject="a", scopes=["read"], ttl=60, now=NOW)
    assert denied(f"Bearer {token}", key).detail == (
        "the token's signature does not match the configured admin key"
    )


def test_admin_key_cannot_pair_an_algorithm_with_a_key_of_another_kind(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="an AdminKey for HS256 needs a key of that kind"):
        AdminKey("HS256", rsa_key.public_key())
    with pytest.raises(ValueError, match="an AdminKey for RS256 needs a key of that kind"):
        AdminKey("RS256", Secret(SECRET))


# -- configuration --------------------------------------------------------------------------------------


def test_no_secret_and_no_public_key_turns_the_api_off() -> None:
    assert admin_key(None, None) is None
    assert admin_key("", None) is None


def test_both_secret_and_public_key_is_invalid(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(Invalid) as info:
        admin_key(SECRET, write(tmp_path, public_pem(rsa_key)))
    assert str(info.value) == (
        "both GATEWAY_ADMIN_SECRET and --admin-public-key are set; choose one: the secret for HS256 "
        "tokens, or the public key for RS256/ES256 tokens, and unset the other"
    )


def test_short_secret_is_refused_with_how_to_make_one() -> None:
    short = "x" * 31
    with pytest.raises(Invalid) as info:
        admin_key(short, None)
    assert str(info.value) == (
        "GATEWAY_ADMIN_SECRET is 31 bytes; it needs at least 32. "
        "Make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )
    assert admin_key("x" * 32, None) is not None


def test_key_file_content_as_secret_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = public_pem(rsa_key).decode()
    with pytest.raises(Invalid, match="GATEWAY_ADMIN_SECRET looks like a key file's content") as info:
        admin_key(pem, None)
    assert "BEGIN" not in str(info.value)


def test_repr_of_admin_key_shows_no_key_material(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    hs = admin_key(SECRET, None)
    rs = admin_key(None, write(tmp_path, public_pem(rsa_key)))
    assert repr(hs) == "AdminKey(algorithm='HS256')"
    assert repr(rs) == "AdminKey(algorithm='RS256')"


@pytest.mark.parametrize(
    "content",
    [
        b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5IGF0IGFsbCwganVzdCB0ZXh0\n-----END PUBLIC KEY-----\n",
        b"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 me@laptop\n",
        b"",
    ],
)
def test_bad_pem_is_invalid_and_not_quoted(content: bytes, tmp_path: Path) -> None:
    path = write(tmp_path, content)
    with pytest.raises(Invalid) as info:
        admin_key(None, path)
    assert str(info.value) == (
        f"{path} is not a PEM public key (a file starting with -----BEGIN PUBLIC KEY-----); "
        "make one with: openssl pkey -in private.pem -pubout -out public.pem"
    )
    for line in content.splitlines()[1:2]:
        assert line.decode() not in str(info.value)


def test_private_key_file_is_refused_without_quoting_it(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    pem = private_pem(ec_key)
    with pytest.raises(Invalid) as info:
        admin_key(None, write(tmp_path, pem.encode()))
    message = str(info.value)
    assert message.endswith(
        "holds a private key; give the public half instead "
        "(openssl pkey -in private.pem -pubout -out public.pem) and keep the private key for minting"
    )
    assert all(line not in message for line in pem.splitlines())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: ec.generate_private_key(ec.SECP384R1()),
            "--admin-public-key is an EC key on curve secp384r1; ES256 needs P-256 (secp256r1)",
        ),
        (
            lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
            "--admin-public-key is a 1024-bit RSA key; use 2048 bits or more",
        ),
        (
            ed25519.Ed25519PrivateKey.generate,
            "--admin-public-key has key type Ed25519; use an RSA key (RS256) or an EC P-256 key (ES256)",
        ),
    ],
)
def test_unsupported_public_key_is_invalid(make: Any, message: str) -> None:
    with pytest.raises(Invalid) as info:
        public_key(public_pem(make()))
    assert str(info.value) == message


def test_missing_key_file_is_invalid(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.pem")
    with pytest.raises(Invalid) as info:
        admin_key(None, path)
    assert str(info.value) == (
        f"--admin-public-key: cannot read {path!r} (No such file or directory); "
        "give the path of a PEM public key file"
    )


def test_oversized_key_file_is_invalid(tmp_path: Path) -> None:
    path = write(tmp_path, b"-" * 70_000)
    with pytest.raises(Invalid) as info:
        admin_key(None, path)
    assert str(info.value) == f"--admin-public-key: {path!r} is larger than 65536 bytes; is it a key file?"


def test_error_messages_never_contain_the_secret(hs_key: AdminKey) -> None:
    tokens = [
        hs_token(claims(exp=int(NOW) - 100)),
        hs_token(claims(aud="x")),
        hs_token(claims(), secret=SECRET[::-1]),
        jwt.encode(claims(), None, algorithm="none"),
    ]
    messages = [str(denied(f"Bearer {t}", hs_key)) for t in tokens]
    with pytest.raises(Invalid) as short:
        mint(SECRET[:20], "HS256", subject="a", scopes=["read"], ttl=60, now=NOW)
    messages.append(str(short.value))
    assert all(SECRET not in m and SECRET[:20] not in m for m in messages)


# -- scopes ---------------------------------------------------------------------------------------------


def test_require_passes_a_held_scope() -> None:
    require(Principal("a", frozenset({"read", "replay"}), NOW, None), "replay")


def test_require_without_the_scope_is_403_missing_scope() -> None:
    with pytest.raises(AccessDenied) as info:
        require(Principal("a", frozenset({"read"}), NOW, None), "replay")
    exc = info.value
    assert (exc.status, exc.reason) == (403, "missing_scope")
    assert exc.detail == "this token has scopes read; this call needs replay"


def test_require_lists_held_scopes_in_order_or_none() -> None:
    with pytest.raises(AccessDenied) as info:
        require(Principal("a", frozenset({"trigger", "read"}), NOW, None), "replay")
    assert info.value.detail == "this token has scopes read trigger; this call needs replay"
    with pytest.raises(AccessDenied) as info:
        require(Principal("a", frozenset(), NOW, None), "read")
    assert info.value.detail == "this token has no scopes; this call needs read"


def test_require_of_an_unknown_scope_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown scope 'admin'"):
        require(Principal("a", frozenset(SCOPES), NOW, None), "admin")


# -- minting refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "message"),
    [
        (["reed"], "unknown scope 'reed' (did you mean 'read'?)"),
        (["read", "admin"], "unknown scope 'admin' (known: read, replay, trigger)"),
        ([], "the token needs at least one scope: read, replay, trigger"),
        ("", "the token needs at least one scope: read, replay, trigger"),
    ],
)
def test_mint_refuses_unknown_or_no_scopes(scopes: Any, message: str) -> None:
    with pytest.raises(Invalid) as info:
        mint(SECRET, "HS256", subject="a", scopes=scopes, ttl=60, now=NOW)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        (0, "ttl must be positive, got 0 s; e.g. 1h or 7d"),
        (-5, "ttl must be positive, got -5 s; e.g. 1h or 7d"),
        (MAX_TTL + 1, "ttl 3.16224e+07 s is longer than 366 days; mint a shorter-lived token and renew it"),
        (float("nan"), "ttl should be a number of seconds, got nan"),
        (True, "ttl should be a number of seconds, got True"),
    ],
)
def test_mint_refuses_bad_ttl(ttl: Any, message: str) -> None:
    with pytest.raises(Invalid) as info:
        mint(SECRET, "HS256", subject="a", scopes=["read"], ttl=ttl, now=NOW)
    assert str(info.value) == message


def test_mint_accepts_the_longest_ttl(hs_key: AdminKey) -> None:
    token = mint(SECRET, "HS256", subject="a", scopes=["read"], ttl=MAX_TTL, now=NOW)
    assert authenticate(f"Bearer {token}", hs_key, now=NOW).expires_at == NOW + MAX_TTL


def test_mint_refuses_an_unsupported_algorithm_or_empty_subject() -> None:
    with pytest.raises(Invalid) as info:
        mint(SECRET, "none", subject="a", scopes=["read"], ttl=60, now=NOW)
    assert str(info.value) == "unknown algorithm 'none'; use one of HS256, RS256, ES256"
    with pytest.raises(Invalid) as info:
        mint(SECRET, "HS256", subject=" ", scopes=["read"], ttl=60, now=NOW)
    assert str(info.value) == "the token needs a subject: who or what will use it, e.g. 'deploy-bot'"


def test_mint_refuses_a_private_key_of_the_wrong_kind(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(Invalid) as info:
        mint(private_pem(ec_key), "RS256", subject="a", scopes=["read"], ttl=60, now=NOW)
    assert str(info.value) == "the signing key does not fit RS256: RS256 needs an RSA key"
    with pytest.raises(Invalid) as info:
        mint(private_pem(rsa_key), "ES256", subject="a", scopes=["read"], ttl=60, now=NOW)
    assert str(info.value) == "the signing key does not fit ES256: ES256 needs an EC P-256 key"


def test_mint_refuses_a_pem_as_hs256_secret_or_garbage_as_private_key(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = private_pem(rsa_key)
    with pytest.raises(Invalid, match=r"^the HS256 signing secret looks like a key file's content") as info:
        mint(pem, "HS256", subject="a", scopes=["read"], ttl=60, now=NOW)
    assert all(line not in str(info.value) for line in pem.splitlines())
    with pytest.raises(Invalid) as info:
        mint(SECRET, "RS256", subject="a", scopes=["read"], ttl=60, now=NOW)
    assert str(info.value) == (
        "RS256 needs a PEM private key without a passphrase (-----BEGIN PRIVATE KEY-----); "
        "the key given is not one"
    )


# -- ttl ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604_800), ("2w", 1_209_600), (" 12h\n", 43_200)],
)
def test_parse_ttl_reads_a_number_and_a_unit(text: str, seconds: float) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "90", "h", "1.5h", "-1h", "+1h", "1 h", "1H", "1y", "1h30m", "\u0661h", "1234567890d", "one hour"],
)
def test_parse_ttl_refuses_other_forms_and_names_the_accepted_ones(text: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_ttl(text)
    assert str(info.value) == (
        f"ttl {text!r} is not understood; use a whole number and a unit: "
        "90s, 15m, 1h, 7d or 2w (s, m, h, d, w)"
    )

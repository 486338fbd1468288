"""The remote-key presets as data (plaid, pubsub, paypal, jwt): rows, their per-source settings, and the pure
dispatch in gateway/signatures/verify.py given already-fetched key material."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.errors import Problem, SignatureError
from gateway.model import Headers, Inbound, Secret
from gateway.routes.sources import Source, parse_sources, source_warnings
from gateway.signatures.recipes import scheme_from_spec
from gateway.signatures.remote import bearer
from gateway.signatures.schemes import PRESETS, RemoteSettings
from gateway.signatures.signing import sign
from gateway.signatures.verify import verify
from tests.support.keys import PLAID_BODY, PLAID_IAT, PLAID_JWK, PLAID_TOKEN

REMOTE = ("plaid", "pubsub", "paypal", "jwt")
HS_SECRET = "a-shared-jwt-secret-of-at-least-32-bytes"


def req(headers: list[tuple[str, str]], body: bytes = b"{}") -> Inbound:
    return Inbound("POST", "https://hooks.example.com/hooks/x", Headers(headers), body)


def sources(raw: dict[str, Any]) -> tuple[dict[str, Source], list[Problem]]:
    problems: list[Problem] = []
    return parse_sources(raw, problems), problems


def messages(raw: dict[str, Any]) -> list[str]:
    return [str(p) for p in sources(raw)[1]]


# -- rows -------------------------------------------------------------------------------------------------

# name: (header, format, dedupe, event type, binds body, tolerance)
ROWS = {
    "plaid": ("Plaid-Verification", "plaid", None, "body.webhook_code", True, None),
    "pubsub": ("Authorization", "pubsub", "body.message.messageId", None, False, None),
    "paypal": ("PAYPAL-TRANSMISSION-SIG", "paypal", "body.id", "body.event_type", True, None),
    "jwt": ("Authorization", "jwt", None, None, False, None),
}


@pytest.mark.parametrize("name", REMOTE)
def test_remote_preset_rows(name: str) -> None:
    s = PRESETS[name]
    row = (s.signature_headers[0], s.signature_format, s.dedupe, s.event_type, s.binds_body, s.tolerance)
    assert (row, s.remote_keys) == (ROWS[name], True)


def test_only_the_remote_presets_fetch_keys() -> None:
    assert {n for n, s in PRESETS.items() if s.remote_keys} == set(REMOTE)


@pytest.mark.parametrize("name", REMOTE)
def test_remote_presets_cannot_be_signed_by_the_gateway(name: str) -> None:
    with pytest.raises(ValueError) as exc:
        sign(PRESETS[name], Secret("anything"), b"{}", now=0)
    assert str(exc.value) == (
        f"{name} deliveries are signed with a key only the sender holds; the gateway fetches public keys "
        "to check them, so it cannot sign them"
    )


def test_jwt_mapping_moves_the_token_to_another_header() -> None:
    problems: list[Problem] = []
    scheme = scheme_from_spec({"scheme": "jwt", "header": "X-Token", "dedupe": "body.id"}, "v", problems)
    assert problems == []
    assert scheme is not None
    assert (scheme.name, scheme.signature_headers, scheme.dedupe, scheme.secret_headers) == (
        "jwt",
        ("X-Token",),
        "body.id",
        ("X-Token",),
    )


def test_jwt_mapping_points_source_settings_to_their_place() -> None:
    problems: list[Problem] = []
    assert scheme_from_spec({"scheme": "jwt", "algorithms": ["RS256"]}, "v", problems) is None
    assert problems == [
        Problem(
            "v.algorithms",
            "unknown key 'algorithms' (allowed: scheme, header, dedupe, event_type) "
            "(it is a source setting, next to verify:)",
        )
    ]


# -- the pure dispatch ------------------------------------------------------------------------------------


def test_plaid_verifies_with_its_fetched_jwk() -> None:
    request = req([("Plaid-Verification", PLAID_TOKEN)], PLAID_BODY)
    verdict = verify(
        PRESETS["plaid"], [Secret("s")], request, now=PLAID_IAT + 1, tolerance=None, material=PLAID_JWK
    )
    assert verdict.label == "verified:plaid"


@pytest.mark.parametrize("name", ("plaid", "pubsub", "paypal", "jwt"))
def test_remote_scheme_without_material_is_key_unavailable(name: str) -> None:
    request = req([("Authorization", "Bearer x.y.z"), ("Plaid-Verification", PLAID_TOKEN)])
    with pytest.raises(SignatureError) as exc:
        verify(
            PRESETS[name], [], request, now=0, tolerance=None, remote=RemoteSettings(algorithms=("RS256",))
        )
    assert (exc.value.reason, exc.value.detail) == (
        "key_unavailable",
        f"{name}'s verification key could not be fetched",
    )


def test_jwt_with_static_secrets_needs_no_material() -> None:
    token = jwt.encode({"sub": "svc"}, HS_SECRET, algorithm="HS256")
    request = req([("Authorization", f"Bearer {token}")])
    settings = RemoteSettings(algorithms=("HS256",))
    verdict = verify(PRESETS["jwt"], [Secret(HS_SECRET)], request, now=0, tolerance=None, remote=settings)
    assert verdict.verified
    with pytest.raises(SignatureError) as exc:
        verify(PRESETS["jwt"], [Secret("y" * 40)], request, now=0, tolerance=None, remote=settings)
    assert exc.value.reason == "bad_signature"
    assert HS_SECRET not in str(exc.value)


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        ("Authorization", "Bearer abc.def.ghi", "abc.def.ghi"),
        ("Authorization", "bearer   abc.def.ghi ", "abc.def.ghi"),
        ("X-Token", "abc.def.ghi", "abc.def.ghi"),
        ("X-Token", "Bearer abc.def.ghi", "abc.def.ghi"),
    ],
)
def test_bearer_token_is_read_with_or_without_its_prefix(header: str, value: str, expected: str) -> None:
    scheme = (
        PRESETS["jwt"]
        if header == "Authorization"
        else scheme_from_spec({"scheme": "jwt", "header": header}, "v", [])
    )
    assert scheme is not None
    assert bearer(scheme, Headers([(header, value)])) == expected


def test_authorization_without_bearer_is_malformed() -> None:
    with pytest.raises(SignatureError) as exc:
        bearer(PRESETS["pubsub"], Headers([("Authorization", "Basic dXNlcjpwYXNz")]))
    assert (exc.value.reason, exc.value.detail) == (
        "malformed_signature",
        "Authorization should be 'Bearer <token>'",
    )


# -- per-source settings ----------------------------------------------------------------------------------


@pytest.fixture
def anchor(tmp_path: Path) -> Path:
    path = tmp_path / "root.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return path


def test_complete_remote_sources_load_their_settings(anchor: Path) -> None:
    loaded, problems = sources(
        {
            "plaid": {
                "verify": "plaid",
                "secret": "plaid-secret",
                "client_id": "c1",
                "environment": "production",
            },
            "push": {
                "verify": "pubsub",
                "audience": "https://h/x",
                "service_account": "a@p.iam.gserviceaccount.com",
            },
            "pp": {"verify": "paypal", "webhook_id": "WH1", "trust_anchors": [str(anchor)]},
            "tok": {"verify": "jwt", "jwks_url": "https://i.example/jwks", "algorithms": ["RS256", "ES256"]},
        }
    )
    assert problems == []
    assert loaded["plaid"].remote == RemoteSettings(client_id="c1", base_url="https://production.plaid.com")
    assert loaded["push"].remote == RemoteSettings(
        audience="https://h/x", service_account="a@p.iam.gserviceaccount.com"
    )
    assert loaded["pp"].remote == RemoteSettings(webhook_id="WH1", trust_anchors=(anchor.read_bytes(),))
    assert loaded["tok"].remote == RemoteSettings(
        jwks_url="https://i.example/jwks", algorithms=("RS256", "ES256")
    )
    assert [source_warnings(s) for s in loaded.values()] == [
        [],
        [],
        [],
        [
            "sources.tok: verify: jwt without audience accepts any token its keys signed, including ones "
            "meant for other services; set audience"
        ],
    ]


def test_missing_required_settings_are_named_with_what_to_put() -> None:
    assert messages({"p": {"verify": "plaid", "secret": "s"}, "q": {"verify": "pubsub"}}) == [
        "sources.p.client_id: verify: plaid needs client_id (your Plaid client id)",
        "sources.p.environment: verify: plaid needs environment (sandbox or production)",
        "sources.q.audience: verify: pubsub needs audience (the audience set on the push subscription)",
    ]
    assert messages({"pp": {"verify": "paypal"}, "t": {"verify": "jwt", "secret": HS_SECRET}}) == [
        "sources.pp.webhook_id: verify: paypal needs webhook_id (the id PayPal shows for this webhook)",
        "sources.pp.trust_anchors: verify: paypal needs trust_anchors "
        "(a list of PEM files of the CAs PayPal's certificate chains to)",
        "sources.t.algorithms: verify: jwt needs algorithms "
        "(the algorithms the issuer signs with, e.g. [RS256])",
    ]


def test_plaid_needs_its_secret() -> None:
    assert messages({"p": {"verify": "plaid", "client_id": "c", "environment": "sandbox"}}) == [
        "sources.p.secret: verify: plaid needs a secret (or secrets: [...])"
    ]


def test_bad_setting_values_are_reported(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello")
    got = messages(
        {
            "p": {"verify": "plaid", "secret": "s", "client_id": "", "environment": "sandbx"},
            "q": {"verify": "pubsub", "audience": "a", "service_account": "pusher"},
            "pp": {"verify": "paypal", "webhook_id": "W", "trust_anchors": [str(missing), str(not_pem)]},
            "t": {"verify": "jwt", "jwks_url": "http://i.example/jwks", "algorithms": ["RS265", "none"]},
        }
    )
    assert got == [
        "sources.p.client_id: expected a non-empty string, got ''",
        "sources.p.environment: unknown Plaid environment 'sandbx' (did you mean 'sandbox'?)",
        "sources.q.service_account: expected the service account's email "
        "(name@project.iam.gserviceaccount.com), got 'pusher'",
        f"sources.pp.trust_anchors[0]: cannot read '{missing}': No such file or directory",
        f"sources.pp.trust_anchors[1]: '{not_pem}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        "sources.t.jwks_url: expected an https URL like https://issuer.example/jwks.json, "
        "got 'http://i.example/jwks'",
        "sources.t.algorithms[0]: unsupported algorithm 'RS265' (did you mean 'RS256'?)",
        "sources.t.algorithms[1]: unsupported algorithm 'none' "
        "(supported: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512)",
    ]


def test_settings_are_refused_for_schemes_that_do_not_use_them() -> None:
    assert messages(
        {
            "gh": {"verify": "github", "secret": "s", "webhook_id": "W"},
            "p": {
                "verify": "plaid",
                "secret": "s",
                "client_id": "c",
                "environment": "sandbox",
                "audience": "a",
            },
        }
    ) == [
        "sources.gh.webhook_id: webhook_id is a setting of verify: paypal, not github",
        "sources.p.audience: audience is a setting of verify: pubsub, jwt, not plaid",
    ]


def test_fetched_key_schemes_refuse_secrets_and_tolerance() -> None:
    assert messages(
        {
            "q": {"verify": "pubsub", "audience": "a", "secret": "s", "tolerance": 60},
            "pp": {"verify": "paypal", "webhook_id": "W", "trust_anchors": [], "public_key": "k"},
        }
    ) == [
        "sources.q.secret: verify: pubsub takes no secret: the provider's keys are fetched over https",
        "sources.q.tolerance: verify: pubsub checks freshness by its own rules (the token's iat/exp, or none "
        "for paypal); remove tolerance",
        "sources.pp.public_key: verify: paypal takes no public_key: "
        "the provider's keys are fetched over https",
        "sources.pp.trust_anchors: expected a non-empty list of PEM file paths, got []",
    ]


def test_jwt_takes_a_jwks_url_or_static_keys_but_not_both() -> None:
    both = {"verify": "jwt", "jwks_url": "https://i.example/k", "secret": HS_SECRET, "algorithms": ["HS256"]}
    neither = {"verify": "jwt", "algorithms": ["RS256"]}
    assert messages({"a": both, "b": neither}) == [
        "sources.a: verify: jwt needs exactly one of jwks_url: or secret(s)/public_key(s)",
        "sources.b: verify: jwt needs exactly one of jwks_url: or secret(s)/public_key(s)",
    ]


def test_jwt_static_keys_are_checked_at_load_time() -> None:
    pem = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n"
    raw = {"verify": "jwt", "secrets": ["short-secret", pem], "algorithms": ["HS256", "RS256"]}
    assert messages({"t": raw}) == [
        "sources.t.secrets[0]: an HMAC secret for jwt must be at least 32 bytes",
        "sources.t.secrets[1]: a PEM key for jwt must be an RSA or EC public key or certificate",
    ]


def test_misspelt_setting_suggests_the_right_one() -> None:
    assert messages({"pp": {"verify": "paypal", "webhookid": "W"}})[0] == (
        "sources.pp.webhookid: unknown key 'webhookid' (did you mean 'webhook_id'?)"
    )


def test_pubsub_without_service_account_is_warned_about() -> None:
    loaded, _ = sources({"q": {"verify": "pubsub", "audience": "a"}})
    assert source_warnings(loaded["q"]) == [
        "sources.q: verify: pubsub without service_account accepts a token Google signed for this audience "
        "on behalf of any account; set service_account to the push subscription's"
    ]


def test_no_repr_or_problem_shows_a_plaid_or_jwt_secret() -> None:
    raw = {
        "p": {"verify": "plaid", "secret": "plaid-secret-value", "client_id": "c", "environment": "nowhere"},
        "t": {"verify": "jwt", "secret": HS_SECRET, "algorithms": ["XX"], "jwks_url": "https://i/k"},
    }
    loaded, problems = sources(raw)
    loaded_ok, _ = sources({"p": {**raw["p"], "environment": "sandbox"}})
    texts = [str(p) for p in problems] + [repr(s) for s in loaded_ok.values()] + [repr(loaded)]
    assert problems  # the check below must have had something to look at
    assert [t for t in texts if "plaid-secret-value" in t or HS_SECRET in t] == []

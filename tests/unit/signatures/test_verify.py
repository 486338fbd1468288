"""Verifying and signing: published vectors, the official SDKs as judges, one test per failure mode."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks.webhooks
import stripe
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import Problem, SignatureError
from gateway.model import Headers, Inbound, Secret, Verdict
from gateway.signatures.recipes import scheme_from_spec
from gateway.signatures.schemes import PRESETS, Scheme
from gateway.signatures.signing import sign
from gateway.signatures.verify import MAX_HEADER, secret_problem, verify

GITHUB, STRIPE, SW, SVIX, NONE = (
    PRESETS[n] for n in ("github", "stripe", "standard-webhooks", "svix", "none")
)

# Published vectors (see /work/shared/PROVIDERS.md for their origins).
GH_SECRET, GH_BODY = "It's a Secret to Everybody", b"Hello, World!"
GH_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID, SW_TS, SW_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
SW_V1 = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
SW_SEED = "VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="
SW_V1A = "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
STRIPE_SECRET = "whsec_test_secret"  # the dummy secret of stripe-python's own webhook tests
STRIPE_BODY = b'{"id": "evt_test_webhook", "object": "event", "type": "charge.succeeded"}'
NOW = 1_700_000_000


def req(headers: list[tuple[str, str]], body: bytes = b"{}") -> Inbound:
    return Inbound("POST", "https://gw.example/hooks/x", Headers(headers), body)


def signed(scheme: Scheme, secret: str, body: bytes, now: float = NOW, **kw: str) -> Inbound:
    return req(sign(scheme, Secret(secret), body, now=now, **kw), body)


def check(
    scheme: Scheme, secrets: list[str], request: Inbound, now: float = NOW, tolerance: int | None = 300
) -> Verdict:
    return verify(scheme, [Secret(s) for s in secrets], request, now=now, tolerance=tolerance)


def rejected(scheme: Scheme, secrets: list[str], request: Inbound, **kw: float | None) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        check(scheme, secrets, request, **kw)  # type: ignore[arg-type]
    return info.value


def recipe(**spec: object) -> Scheme:
    problems: list[Problem] = []
    scheme = scheme_from_spec({"scheme": "hmac", **spec}, "verify", problems)
    assert scheme is not None, problems
    return scheme


def sw_headers(
    signature: str, ts: int = SW_TS, msg_id: str = SW_ID, family: str = "webhook"
) -> list[tuple[str, str]]:
    return [(f"{family}-id", msg_id), (f"{family}-timestamp", str(ts)), (f"{family}-signature", signature)]


def whpk_from_seed(seed_b64: str) -> str:
    public = Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed_b64)).public_key()
    return "whpk_" + base64.b64encode(public.public_bytes_raw()).decode()


# -- GitHub -----------------------------------------------------------------------------------------------


def test_github_published_vector_verifies() -> None:
    verdict = check(GITHUB, [GH_SECRET], req([("X-Hub-Signature-256", GH_SIG)], GH_BODY))
    assert verdict == Verdict(verified=True, scheme="github", timestamp=None, key_index=0)
    assert verdict.label == "verified:github"


def test_github_sign_reproduces_the_published_vector() -> None:
    assert sign(GITHUB, Secret(GH_SECRET), GH_BODY, now=NOW) == [("X-Hub-Signature-256", GH_SIG)]


def test_header_names_are_matched_case_insensitively() -> None:
    assert check(GITHUB, [GH_SECRET], req([("x-hub-signature-256", GH_SIG)], GH_BODY)).verified


def test_github_legacy_sha1_header_alone_is_a_missing_signature() -> None:
    legacy = "sha1=" + hmac.new(GH_SECRET.encode(), GH_BODY, "sha1").hexdigest()
    err = rejected(GITHUB, [GH_SECRET], req([("X-Hub-Signature", legacy)], GH_BODY))
    assert (err.reason, err.detail) == ("missing_signature", "no X-Hub-Signature-256 header")


@pytest.mark.parametrize("value", [GH_SIG[7:], "sha256=xyz", GH_SIG[:-2], "sha1=" + GH_SIG[7:], "sha256="])
def test_github_signature_of_the_wrong_shape_is_malformed(value: str) -> None:
    err = rejected(GITHUB, [GH_SECRET], req([("X-Hub-Signature-256", value)], GH_BODY))
    assert err.reason == "malformed_signature"
    assert err.detail == "X-Hub-Signature-256 should look like 'sha256=<64 hex digits>'"


def test_oversized_signature_header_is_malformed_without_being_parsed() -> None:
    err = rejected(GITHUB, [GH_SECRET], req([("X-Hub-Signature-256", GH_SIG + "0" * MAX_HEADER)], GH_BODY))
    assert (err.reason, err.detail) == (
        "malformed_signature",
        "X-Hub-Signature-256 is longer than 8192 bytes",
    )


def test_tampered_body_is_rejected() -> None:
    err = rejected(GITHUB, [GH_SECRET], req([("X-Hub-Signature-256", GH_SIG)], b"Hello, World?"))
    assert err.reason == "bad_signature"
    assert err.detail == (
        "no signature in X-Hub-Signature-256 matches the configured secret: "
        "wrong secret, or the body was altered"
    )


def test_wrong_secret_is_rejected() -> None:
    err = rejected(GITHUB, ["another secret", "and another"], req([("X-Hub-Signature-256", GH_SIG)], GH_BODY))
    assert err.reason == "bad_signature"
    assert "any of the 2 configured secrets" in err.detail


def test_rotation_reports_which_secret_matched() -> None:
    verdict = check(GITHUB, ["old secret", GH_SECRET], req([("X-Hub-Signature-256", GH_SIG)], GH_BODY))
    assert verdict.key_index == 1


def test_no_configured_secret_is_its_own_reason() -> None:
    err = rejected(GITHUB, [], req([("X-Hub-Signature-256", GH_SIG)], GH_BODY))
    assert (err.reason, err.detail) == ("no_secret", "github needs a secret and none is configured")


def test_signing_without_a_secret_is_refused() -> None:
    for secret in (None, Secret("")):
        with pytest.raises(SignatureError) as info:
            sign(GITHUB, secret, GH_BODY, now=NOW)
        assert (info.value.reason, info.value.detail) == ("no_secret", "github needs a secret to sign")


# -- Stripe -----------------------------------------------------------------------------------------------


def stripe_header(timestamp: int, *entries: str) -> list[tuple[str, str]]:
    return [("Stripe-Signature", ",".join([f"t={timestamp}", *entries]))]


def stripe_v1(timestamp: int, body: bytes = STRIPE_BODY, secret: str = STRIPE_SECRET) -> str:
    return hmac.new(secret.encode(), b"%d." % timestamp + body, "sha256").hexdigest()


def test_stripe_sdk_accepts_what_we_sign() -> None:
    now = time.time()  # the SDK reads the wall clock
    [(name, value)] = sign(STRIPE, Secret(STRIPE_SECRET), STRIPE_BODY, now=now)
    assert name == "Stripe-Signature"
    assert stripe.WebhookSignature.verify_header(STRIPE_BODY.decode(), value, STRIPE_SECRET, tolerance=300)


def test_header_built_by_the_stripe_sdk_is_accepted() -> None:
    header = stripe.WebhookSignature.generate_signature_header(STRIPE_BODY.decode(), STRIPE_SECRET, NOW)
    verdict = check(STRIPE, [STRIPE_SECRET], req([("Stripe-Signature", header)], STRIPE_BODY))
    assert verdict == Verdict(verified=True, scheme="stripe", timestamp=NOW, key_index=0)


def test_stripe_key_is_the_whsec_string_itself_not_its_base64_decoding() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    decoded = base64.b64decode(secret.removeprefix("whsec_"))
    wrong = hmac.new(decoded, b"%d." % NOW + STRIPE_BODY, "sha256").hexdigest()
    err = rejected(STRIPE, [secret], req(stripe_header(NOW, f"v1={wrong}"), STRIPE_BODY))
    assert err.reason == "bad_signature"
    right = stripe_v1(NOW, secret=secret)
    assert check(STRIPE, [secret], req(stripe_header(NOW, f"v1={right}"), STRIPE_BODY)).verified


def test_stripe_test_mode_v0_entry_is_ignored() -> None:
    header = stripe_header(
        NOW, f"v1={stripe_v1(NOW)}", "v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
    )
    assert check(STRIPE, [STRIPE_SECRET], req(header, STRIPE_BODY)).verified


def test_stripe_v0_entry_never_counts_even_when_it_would_match() -> None:
    err = rejected(STRIPE, [STRIPE_SECRET], req(stripe_header(NOW, f"v0={stripe_v1(NOW)}"), STRIPE_BODY))
    assert (err.reason, err.detail) == (
        "malformed_signature",
        "Stripe-Signature has no v1=<hex> signature (v0 is ignored)",
    )


def test_stripe_any_of_several_v1_signatures_may_match() -> None:
    header = stripe_header(NOW, f"v1={stripe_v1(NOW, secret='rolled')}", f"v1={stripe_v1(NOW)}")
    assert check(STRIPE, [STRIPE_SECRET], req(header, STRIPE_BODY)).key_index == 0


def test_stripe_signatures_past_the_twentieth_are_not_looked_at() -> None:
    junk = [f"v1={'00' * 32}"] * 20
    err = rejected(
        STRIPE, [STRIPE_SECRET], req(stripe_header(NOW, *junk, f"v1={stripe_v1(NOW)}"), STRIPE_BODY)
    )
    assert err.reason == "bad_signature"


def test_stripe_header_without_t_is_a_missing_timestamp() -> None:
    err = rejected(STRIPE, [STRIPE_SECRET], req([("Stripe-Signature", f"v1={stripe_v1(NOW)}")], STRIPE_BODY))
    assert (err.reason, err.detail) == ("missing_timestamp", "Stripe-Signature has no t= element")


@pytest.mark.parametrize("t", ["abc", "1700000000.5", "-5", ""])
def test_stripe_non_integer_timestamp_is_malformed(t: str) -> None:
    header = [("Stripe-Signature", f"t={t},v1={stripe_v1(NOW)}")]
    err = rejected(STRIPE, [STRIPE_SECRET], req(header, STRIPE_BODY))
    assert (err.reason, err.detail) == (
        "malformed_timestamp",
        f"the t= in Stripe-Signature should be integer seconds, got {t!r}",
    )


def test_stripe_stale_timestamp_is_rejected() -> None:
    request = signed(STRIPE, STRIPE_SECRET, STRIPE_BODY)
    err = rejected(STRIPE, [STRIPE_SECRET], request, now=NOW + 301)
    assert (err.reason, err.detail) == (
        "stale_timestamp",
        f"timestamp {NOW} is 301 s old, past the 300 s tolerance (a replay, or a clock out of sync)",
    )


def test_stripe_timestamp_exactly_at_the_tolerance_is_accepted() -> None:
    assert check(STRIPE, [STRIPE_SECRET], signed(STRIPE, STRIPE_SECRET, STRIPE_BODY), now=NOW + 300).verified


def test_stripe_future_timestamp_is_accepted_like_the_sdk_does() -> None:
    assert check(STRIPE, [STRIPE_SECRET], signed(STRIPE, STRIPE_SECRET, STRIPE_BODY), now=NOW - 3600).verified


def test_no_tolerance_skips_the_time_check() -> None:
    request = signed(STRIPE, STRIPE_SECRET, STRIPE_BODY)
    assert check(STRIPE, [STRIPE_SECRET], request, now=NOW + 10**6, tolerance=None).timestamp == NOW


# -- Standard Webhooks / Svix -----------------------------------------------------------------------------


def test_standard_webhooks_v1_published_vector_verifies() -> None:
    verdict = check(SW, [SW_SECRET], req(sw_headers(SW_V1), SW_BODY), now=SW_TS)
    assert verdict == Verdict(verified=True, scheme="standard-webhooks", timestamp=SW_TS, key_index=0)


def test_standard_webhooks_v1a_published_vector_verifies_with_the_derived_public_key() -> None:
    verdict = check(SW, [whpk_from_seed(SW_SEED)], req(sw_headers(SW_V1A), SW_BODY), now=SW_TS)
    assert verdict.verified


@pytest.mark.parametrize(("secret", "expected"), [(SW_SECRET, SW_V1), ("whsk_" + SW_SEED, SW_V1A)])
def test_standard_webhooks_sign_reproduces_the_published_vectors(secret: str, expected: str) -> None:
    headers = sign(SW, Secret(secret), SW_BODY, now=SW_TS, msg_id=SW_ID)
    assert headers == sw_headers(expected)


def test_secret_without_the_whsec_prefix_is_read_as_base64() -> None:
    bare = SW_SECRET.removeprefix("whsec_")
    assert check(SW, [bare], req(sw_headers(SW_V1), SW_BODY), now=SW_TS).verified


def test_standardwebhooks_library_signature_is_accepted() -> None:
    now = int(time.time())
    signature = standardwebhooks.webhooks.Webhook(SW_SECRET).sign(
        "msg_sdk", datetime.fromtimestamp(now, tz=UTC), SW_BODY.decode()
    )
    assert check(SW, [SW_SECRET], req(sw_headers(signature, now, "msg_sdk"), SW_BODY), now=now).verified


def test_standardwebhooks_library_accepts_what_we_sign() -> None:
    headers = sign(SW, Secret(SW_SECRET), SW_BODY, now=time.time())  # the library reads the wall clock
    assert standardwebhooks.webhooks.Webhook(SW_SECRET).verify(SW_BODY, dict(headers)) == {"test": 2432232314}


def test_sign_makes_up_a_message_id_when_none_is_given() -> None:
    headers = dict(sign(SW, Secret(SW_SECRET), SW_BODY, now=NOW))
    assert headers["webhook-id"].startswith("msg_")
    assert check(SW, [SW_SECRET], req(list(headers.items()), SW_BODY)).verified


@pytest.mark.parametrize("scheme", [SW, SVIX])
def test_svix_header_family_is_accepted_by_both_presets(scheme: Scheme) -> None:
    verdict = check(scheme, [SW_SECRET], req(sw_headers(SW_V1, family="svix"), SW_BODY), now=SW_TS)
    assert (verdict.verified, verdict.scheme) == (True, scheme.name)


def test_any_entry_of_the_signature_list_may_match_and_unknown_versions_are_ignored() -> None:
    listed = f"v2,bm90IGEgc2lnbmF0dXJl v1,{base64.b64encode(bytes(32)).decode()} {SW_V1}"
    assert check(SW, [SW_SECRET], req(sw_headers(listed), SW_BODY), now=SW_TS).verified


def test_signature_list_entries_past_the_twentieth_are_not_looked_at() -> None:
    junk = " ".join([f"v1,{base64.b64encode(bytes(32)).decode()}"] * 20)
    err = rejected(SW, [SW_SECRET], req(sw_headers(f"{junk} {SW_V1}"), SW_BODY), now=SW_TS)
    assert err.reason == "bad_signature"


def test_signature_list_with_no_known_version_is_malformed() -> None:
    err = rejected(SW, [SW_SECRET], req(sw_headers("v2,abcd v1,not-base64!"), SW_BODY), now=SW_TS)
    assert (err.reason, err.detail) == (
        "malformed_signature",
        "webhook-signature has no 'v1,<base64>' or 'v1a,<base64>' entry",
    )


def test_standard_webhooks_future_timestamp_is_rejected() -> None:
    err = rejected(SW, [SW_SECRET], req(sw_headers(SW_V1), SW_BODY), now=SW_TS - 301)
    assert (err.reason, err.detail) == (
        "stale_timestamp",
        f"timestamp {SW_TS} is 301 s in the future, past the 300 s tolerance (a clock out of sync)",
    )


def test_standard_webhooks_stale_timestamp_is_rejected() -> None:
    err = rejected(SW, [SW_SECRET], req(sw_headers(SW_V1), SW_BODY), now=SW_TS + 301)
    assert err.reason == "stale_timestamp"


def test_missing_webhook_timestamp_is_reported() -> None:
    headers = [h for h in sw_headers(SW_V1) if h[0] != "webhook-timestamp"]
    err = rejected(SW, [SW_SECRET], req(headers, SW_BODY), now=SW_TS)
    assert (err.reason, err.detail) == (
        "missing_timestamp",
        "no webhook-timestamp or svix-timestamp header (standard-webhooks signs it)",
    )


def test_missing_webhook_id_is_reported() -> None:
    headers = [h for h in sw_headers(SW_V1) if h[0] != "webhook-id"]
    err = rejected(SW, [SW_SECRET], req(headers, SW_BODY), now=SW_TS)
    assert (err.reason, err.detail) == (
        "missing_signature",
        "no webhook-id or svix-id header (standard-webhooks signs it)",
    )


def test_missing_webhook_signature_is_reported() -> None:
    headers = [h for h in sw_headers(SW_V1) if h[0] != "webhook-signature"]
    err = rejected(SW, [SW_SECRET], req(headers, SW_BODY), now=SW_TS)
    assert (err.reason, err.detail) == ("missing_signature", "no webhook-signature or svix-signature header")


def test_fractional_webhook_timestamp_is_malformed() -> None:
    headers = [("webhook-id", SW_ID), ("webhook-timestamp", f"{SW_TS}.5"), ("webhook-signature", SW_V1)]
    err = rejected(SW, [SW_SECRET], req(headers, SW_BODY), now=SW_TS)
    assert (err.reason, err.detail) == (
        "malformed_timestamp",
        f"webhook-timestamp should be integer seconds, got '{SW_TS}.5'",
    )


def test_standard_webhooks_tampered_body_is_rejected() -> None:
    err = rejected(SW, [SW_SECRET], req(sw_headers(SW_V1), b'{"test": 2432232315}'), now=SW_TS)
    assert err.reason == "bad_signature"


def test_tampered_message_id_is_rejected() -> None:
    err = rejected(SW, [SW_SECRET], req(sw_headers(SW_V1, msg_id="msg_other"), SW_BODY), now=SW_TS)
    assert err.reason == "bad_signature"


def test_hmac_v1_signature_does_not_match_an_ed25519_public_key() -> None:
    err = rejected(SW, [whpk_from_seed(SW_SEED)], req(sw_headers(SW_V1), SW_BODY), now=SW_TS)
    assert err.reason == "bad_signature"


def test_rotation_across_key_kinds_reports_the_matching_index() -> None:
    other = whpk_from_seed(base64.b64encode(bytes(range(32))).decode())
    secrets = [other, "whsec_" + base64.b64encode(b"old key").decode(), "whsk_" + SW_SEED]
    assert check(SW, secrets, req(sw_headers(SW_V1A), SW_BODY), now=SW_TS).key_index == 2


def test_a_public_key_cannot_sign() -> None:
    with pytest.raises(ValueError) as info:
        sign(SW, Secret(whpk_from_seed(SW_SEED)), SW_BODY, now=NOW)
    assert str(info.value) == "a whpk_ public key can only verify; sign with the matching whsk_ private key"


def test_unusable_secrets_are_skipped_and_reported_when_none_is_left() -> None:
    assert check(SW, ["not base64!", SW_SECRET], req(sw_headers(SW_V1), SW_BODY), now=SW_TS).key_index == 1
    err = rejected(SW, ["not base64!", "whpk_c2hvcnQ="], req(sw_headers(SW_V1), SW_BODY), now=SW_TS)
    assert (err.reason, err.detail) == (
        "no_secret",
        "no configured secret is usable (secret 0: a Standard Webhooks secret must be base64 "
        "(optionally after 'whsec_'); secret 1: a whpk_ key must be base64 of a 32-byte Ed25519 public key)",
    )


def test_secret_problem_explains_an_unusable_secret_for_the_config_loader() -> None:
    assert secret_problem(SW, Secret(SW_SECRET)) is None
    assert secret_problem(SW, Secret("whsk_AAAA")) == "a whsk_ key must be base64 of a 32-byte Ed25519 seed"
    assert secret_problem(STRIPE, Secret("anything goes")) is None
    assert secret_problem(GITHUB, Secret("")) == "the secret is empty"


# -- the generic hmac recipe ------------------------------------------------------------------------------


def test_recipe_verifies_the_published_shopify_vector_in_base64() -> None:
    shopify = recipe(header="X-Shopify-Hmac-Sha256", encoding="base64")
    request = req(
        [("X-Shopify-Hmac-Sha256", "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=")], b'{"foo": "bar"}'
    )
    assert check(shopify, ["test_secret_key"], request).verified


def test_recipe_verifies_the_published_slack_vector_with_a_signed_timestamp() -> None:
    slack = recipe(
        header="X-Slack-Signature",
        prefix="v0=",
        signed="v0:{timestamp}:{body}",
        timestamp_header="X-Slack-Request-Timestamp",
    )
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    headers = [
        ("X-Slack-Request-Timestamp", "1531420618"),
        ("X-Slack-Signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"),
    ]
    verdict = check(slack, ["8f742231b10e8888abcd99yyyzzz85a5"], req(headers, body), now=1531420618)
    assert verdict == Verdict(verified=True, scheme="hmac", timestamp=1531420618, key_index=0)


def test_recipe_with_sha1_and_a_prefix_verifies() -> None:
    intercom = recipe(header="X-Hub-Signature", algorithm="sha1", prefix="sha1=")
    digest = hmac.new(b"s3cret", b'{"ok": true}', "sha1").hexdigest()
    assert check(intercom, ["s3cret"], req([("X-Hub-Signature", "sha1=" + digest)], b'{"ok": true}')).verified


def test_recipe_with_sha512_in_base64_verifies_and_signs_alike() -> None:
    scheme = recipe(header="X-Sig", algorithm="sha512", encoding="base64")
    digest = base64.b64encode(hmac.new(b"k", b"payload", hashlib.sha512).digest()).decode()
    assert sign(scheme, Secret("k"), b"payload", now=NOW) == [("X-Sig", digest)]
    assert check(scheme, ["k"], req([("X-Sig", digest)], b"payload")).verified


def test_recipe_with_the_wrong_digest_length_is_malformed() -> None:
    scheme = recipe(header="X-Sig", algorithm="sha512", encoding="base64")
    short = base64.b64encode(bytes(32)).decode()
    err = rejected(scheme, ["k"], req([("X-Sig", short)], b"payload"))
    assert (err.reason, err.detail) == (
        "malformed_signature",
        "X-Sig should look like '<base64 of 64 bytes>'",
    )


def test_recipe_with_id_and_timestamp_signs_those_headers_and_verifies_them() -> None:
    scheme = recipe(
        header="X-Acme-Signature",
        prefix="v1=",
        signed="{id}.{timestamp}.{body}",
        timestamp_header="X-Acme-Timestamp",
        id_header="X-Acme-Id",
    )
    headers = sign(scheme, Secret("k"), b"{}", now=NOW, msg_id="d-1")
    expected = hmac.new(b"k", f"d-1.{NOW}.{{}}".encode(), "sha256").hexdigest()
    assert headers == [
        ("X-Acme-Signature", "v1=" + expected),
        ("X-Acme-Timestamp", str(NOW)),
        ("X-Acme-Id", "d-1"),
    ]
    assert check(scheme, ["k"], req(headers)).timestamp == NOW
    moved = [(k, "d-2" if k == "X-Acme-Id" else v) for k, v in headers]
    assert rejected(scheme, ["k"], req(moved)).reason == "bad_signature"
    missing = [h for h in headers if h[0] != "X-Acme-Id"]
    assert rejected(scheme, ["k"], req(missing)).detail == "no X-Acme-Id header (hmac signs it)"


# -- none -------------------------------------------------------------------------------------------------


def test_none_accepts_anything_as_unverified() -> None:
    verdict = verify(NONE, [], req([]), now=NOW, tolerance=300)
    assert verdict == Verdict(verified=False, scheme="none")
    assert verdict.label == "unverified"
    assert sign(NONE, None, b"{}", now=NOW) == []


# -- properties and secrecy -------------------------------------------------------------------------------


@given(body=st.binary(max_size=256), flip=st.integers(min_value=0))
@pytest.mark.parametrize(
    "scheme", [GITHUB, STRIPE, SW, *(PRESETS[n] for n in ("slack", "shopify", "intercom", "paddle", "zoom"))]
)
def test_what_we_sign_verifies_and_any_changed_byte_does_not(scheme: Scheme, body: bytes, flip: int) -> None:
    secret = SW_SECRET
    request = signed(scheme, secret, body)
    assert check(scheme, [secret], request).verified
    if body:
        i = flip % len(body)
        changed = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        with pytest.raises(SignatureError):
            check(scheme, [secret], req(list(request.headers.pairs), changed))


def test_no_error_verdict_or_scheme_shows_a_configured_secret() -> None:
    secrets = {
        GH_SECRET,
        SW_SECRET,
        SW_SECRET.removeprefix("whsec_"),
        "whsk_" + SW_SEED,
        SW_SEED,
        STRIPE_SECRET,
    }
    texts = [repr(s) for s in PRESETS.values()]
    cases: list[tuple[Scheme, list[str], Inbound]] = [
        (GITHUB, [GH_SECRET], req([("X-Hub-Signature-256", GH_SIG)], b"tampered")),
        (GITHUB, [GH_SECRET], req([("X-Hub-Signature-256", "nope")], GH_BODY)),
        (STRIPE, [STRIPE_SECRET], req(stripe_header(NOW - 999, f"v1={stripe_v1(NOW - 999)}"), STRIPE_BODY)),
        (STRIPE, [STRIPE_SECRET], req(stripe_header(NOW, f"v1={stripe_v1(NOW)}"), b"tampered")),
        (SW, [SW_SECRET, "whsk_" + SW_SEED], req(sw_headers(SW_V1), b"tampered")),
        (SW, [SW_SECRET], req(sw_headers("v1,AAAA", ts=SW_TS), SW_BODY)),
        (SW, ["whsk_" + SW_SEED[:8]], req(sw_headers(SW_V1), SW_BODY)),
    ]
    for scheme, keys, request in cases:
        with pytest.raises(SignatureError) as info:
            check(scheme, keys, request, now=SW_TS if scheme is SW else NOW)
        texts += [str(info.value), repr(info.value), info.value.detail]
    texts.append(repr(check(SW, [SW_SECRET], req(sw_headers(SW_V1), SW_BODY), now=SW_TS)))
    texts.append(str(secret_problem(SW, Secret("whsk_" + SW_SEED[:8]))))
    leaks = [(s, t) for s in secrets for t in texts if s in t]
    assert leaks == []


# -- headers sent twice ---------------------------------------------------------------------------------


def doubled(request: Inbound, name: str) -> Inbound:
    """``request`` with its ``name`` header sent twice, the good copy first."""
    pairs = [(k, v) for k, v in request.headers.pairs]
    value = request.headers[name]
    return req([*pairs, (name, value)], request.body)


@pytest.mark.parametrize(
    ("scheme", "secret", "header"),
    [
        (GITHUB, GH_SECRET, "X-Hub-Signature-256"),
        (STRIPE, STRIPE_SECRET, "Stripe-Signature"),
        (SW, SW_SECRET, "webhook-signature"),
        (SW, SW_SECRET, "webhook-timestamp"),  # signed, so a second copy could change what was signed
        (SW, SW_SECRET, "webhook-id"),
        (PRESETS["slack"], "slack-secret", "X-Slack-Request-Timestamp"),
    ],
)
def test_a_signed_header_sent_twice_is_refused_even_when_both_copies_are_good(
    scheme: Scheme, secret: str, header: str
) -> None:
    good = signed(scheme, secret, b'{"a": 1}')
    assert check(scheme, [secret], good).key_index == 0
    error = rejected(scheme, [secret], doubled(good, header))
    assert (error.reason, error.detail) == (
        "repeated_header",
        f"{header} is sent 2 times; a delivery carries its signature once",
    )

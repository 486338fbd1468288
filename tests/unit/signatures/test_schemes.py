"""Scheme rows and the `verify:` config value: presets, the generic hmac recipe, and its error messages."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.errors import Problem
from gateway.signatures.recipes import placeholders, scheme_from_spec
from gateway.signatures.schemes import PRESETS, Scheme

AT = "sources.acme.verify"


def parse(spec: object) -> tuple[Scheme | None, list[Problem]]:
    problems: list[Problem] = []
    return scheme_from_spec(spec, AT, problems), problems


def problems_of(spec: object) -> list[Problem]:
    scheme, problems = parse(spec)
    assert scheme is None
    return problems


# -- presets ----------------------------------------------------------------------------------------------


def test_github_preset_trusts_only_the_sha256_header() -> None:
    github = PRESETS["github"]
    assert github.signature_headers == ("X-Hub-Signature-256",)
    assert (github.algorithm, github.encoding, github.prefix) == ("sha256", "hex", "sha256=")
    assert github.signed == "{body}"
    assert (github.dedupe, github.event_type, github.sender_timeout) == (
        "headers.X-GitHub-Delivery",
        "headers.X-GitHub-Event",
        10,
    )
    assert github.tolerance is None


def test_stripe_preset_is_one_sided_with_an_undecoded_key() -> None:
    stripe = PRESETS["stripe"]
    assert (stripe.tolerance, stripe.reject_future, stripe.key_format) == (300, False, "raw")
    assert (stripe.signed, stripe.dedupe, stripe.event_type, stripe.sender_timeout) == (
        "{timestamp}.{body}",
        "body.id",
        "body.type",
        20,
    )


def test_standard_webhooks_preset_accepts_both_header_families_and_checks_both_directions() -> None:
    sw = PRESETS["standard-webhooks"]
    assert sw.signature_headers == ("webhook-signature", "svix-signature")
    assert sw.timestamp_headers == ("webhook-timestamp", "svix-timestamp")
    assert sw.id_headers == ("webhook-id", "svix-id")
    assert (sw.tolerance, sw.reject_future, sw.key_format, sw.encoding) == (300, True, "whsec", "base64")
    assert (sw.dedupe, sw.event_type, sw.sender_timeout) == ("headers.webhook-id", "body.type", 15)


def test_svix_preset_is_the_standard_webhooks_row_under_its_own_name() -> None:
    assert PRESETS["svix"].name == "svix"
    assert dataclasses.replace(PRESETS["svix"], name="standard-webhooks") == PRESETS["standard-webhooks"]


def test_none_preset_is_unverified_and_binds_nothing() -> None:
    none = PRESETS["none"]
    assert (none.verified, none.binds_body, none.signature_headers) == (False, False, ())


def test_only_the_credential_presets_and_mailgun_leave_the_body_unbound() -> None:
    unbound = {name for name, s in PRESETS.items() if not s.binds_body}
    assert unbound == {"none", "gitlab", "mailgun", "basic", "pubsub", "jwt"}
    assert all("{body}" in s.signed for s in PRESETS.values())


# name: (signature header, format, tolerance, reject_future, dedupe, event type, sender timeout)
DEFAULTS = {
    "slack": ("X-Slack-Signature", "prefixed", 300, True, "body.event_id", "body.event.type", 3),
    "shopify": ("X-Shopify-Hmac-Sha256", "prefixed", None, True, "headers.X-Shopify-Webhook-Id",
                "headers.X-Shopify-Topic", 5),
    "intercom": ("X-Hub-Signature", "prefixed", None, True, "body.id", "body.topic", None),
    "linear": ("Linear-Signature", "prefixed", 60, True, "headers.Linear-Delivery", "body.type", None),
    "paddle": ("Paddle-Signature", "paddle", 5, True, "body.notification_id", "body.event_type", 5),
    "zoom": ("x-zm-signature", "prefixed", 300, True, None, "body.event", 3),
    "square": ("x-square-hmacsha256-signature", "prefixed", None, True, "body.event_id", "body.type", None),
    "twilio": ("X-Twilio-Signature", "twilio", None, True, "headers.I-Twilio-Idempotency-Token", None, 15),
    "gitlab": ("X-Gitlab-Token", "gitlab", 300, True, "headers.Idempotency-Key",
               "headers.X-Gitlab-Event", 10),
    "mailgun": (None, "mailgun", 900, True, "body.signature.token", "body.event-data.event", None),
    "basic": ("Authorization", "basic", None, True, None, None, None),
}  # fmt: skip


@pytest.mark.parametrize("name", DEFAULTS)
def test_provider_preset_defaults(name: str) -> None:
    s = PRESETS[name]
    header = s.signature_headers[0] if s.signature_headers else None
    row = (header, s.signature_format, s.tolerance, s.reject_future, s.dedupe, s.event_type, s.sender_timeout)
    assert row == DEFAULTS[name]


def test_url_signing_handshake_and_clear_secret_fields_are_set_where_they_apply() -> None:
    assert {n for n, s in PRESETS.items() if s.signs_url} == {"square", "twilio"}
    assert {n: s.handshake for n, s in PRESETS.items() if s.handshake} == {
        "slack": "slack",
        "zoom": "zoom",
        "discord": "discord",
    }
    assert {n: s.secret_headers for n, s in PRESETS.items() if s.secret_headers} == {
        "gitlab": ("X-Gitlab-Token",),
        "basic": ("Authorization",),
        "pubsub": ("Authorization",),  # bearer tokens, replayable while valid
        "jwt": ("Authorization",),
    }
    linear = PRESETS["linear"]
    assert (linear.timestamp_field, linear.timestamp_ms) == ("webhookTimestamp", True)
    assert (PRESETS["square"].signed, PRESETS["paddle"].signed) == ("{url}{body}", "{timestamp}:{body}")


def test_preset_name_is_returned_without_problems() -> None:
    assert parse("github") == (PRESETS["github"], [])
    assert parse("svix") == (PRESETS["svix"], [])


def test_placeholders_are_listed_in_order() -> None:
    assert placeholders("{id}.{timestamp}.{body}") == ["id", "timestamp", "body"]
    assert placeholders("v0:{timestamp}:{body}") == ["timestamp", "body"]


# -- preset errors ----------------------------------------------------------------------------------------


def test_unknown_preset_suggests_the_closest_name() -> None:
    assert problems_of("githb") == [Problem(AT, "unknown scheme 'githb' (did you mean 'github'?)")]


def test_unknown_preset_without_a_close_match_lists_the_known_ones() -> None:
    assert problems_of("acme") == [
        Problem(
            AT,
            "unknown scheme 'acme' (known: github, stripe, standard-webhooks, svix, slack, shopify, "
            "intercom, linear, paddle, zoom, square, twilio, gitlab, mailgun, basic, discord, sendgrid, "
            "plaid, pubsub, paypal, jwt, none, hmac, token)",
        )
    ]


def test_hmac_as_a_bare_name_asks_for_a_mapping() -> None:
    assert problems_of("hmac") == [
        Problem(AT, "scheme hmac needs a mapping: {scheme: hmac, header: X-Signature}")
    ]


def test_a_list_is_neither_a_name_nor_a_mapping() -> None:
    assert problems_of(["github"]) == [Problem(AT, "expected a scheme name or a mapping, got list")]


# -- the hmac recipe --------------------------------------------------------------------------------------


def test_minimal_recipe_defaults_to_hex_sha256_over_the_body_without_a_time_check() -> None:
    scheme, problems = parse({"scheme": "hmac", "header": "X-Acme-Signature"})
    assert problems == []
    assert scheme == Scheme(name="hmac", signature_headers=("X-Acme-Signature",), signature_format="prefixed")
    assert scheme.tolerance is None


def test_full_recipe_is_read_into_a_row() -> None:
    scheme, problems = parse(
        {
            "scheme": "hmac",
            "header": "X-Acme-Signature",
            "algorithm": "sha512",
            "encoding": "base64",
            "prefix": "v1=",
            "signed": "{id}.{timestamp}.{body}",
            "timestamp_header": "X-Acme-Timestamp",
            "id_header": "X-Acme-Id",
            "tolerance": 60,
            "dedupe": "headers.X-Acme-Delivery",
            "event_type": "body.type",
        }
    )
    assert problems == []
    assert scheme == Scheme(
        name="hmac",
        signature_headers=("X-Acme-Signature",),
        signature_format="prefixed",
        algorithm="sha512",
        encoding="base64",
        prefix="v1=",
        signed="{id}.{timestamp}.{body}",
        timestamp_headers=("X-Acme-Timestamp",),
        id_headers=("X-Acme-Id",),
        tolerance=60,
        dedupe="headers.X-Acme-Delivery",
        event_type="body.type",
    )


def test_signed_timestamp_gets_a_300_second_tolerance_by_default() -> None:
    scheme, _ = parse(
        {"scheme": "hmac", "header": "X-S", "signed": "{timestamp}.{body}", "timestamp_header": "X-T"}
    )
    assert scheme is not None and scheme.tolerance == 300


def test_tolerance_null_turns_the_time_check_off() -> None:
    spec = {"scheme": "hmac", "header": "X-S", "signed": "{timestamp}.{body}", "timestamp_header": "X-T"}
    scheme, _ = parse({**spec, "tolerance": None})
    assert scheme is not None and scheme.tolerance is None


def test_unknown_key_suggests_the_closest_key() -> None:
    assert problems_of({"scheme": "hmac", "header": "X-S", "algo": "sha1"}) == [
        Problem(f"{AT}.algo", "unknown key 'algo' (did you mean 'algorithm'?)")
    ]


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    [problem] = problems_of({"scheme": "hmac", "header": "X-S", "zzz": 1})
    assert problem == Problem(
        f"{AT}.zzz",
        "unknown key 'zzz' (allowed: scheme, header, algorithm, encoding, prefix, signed, timestamp_header, "
        "id_header, tolerance, dedupe, event_type)",
    )


def test_misspelled_algorithm_suggests_the_closest() -> None:
    assert problems_of({"scheme": "hmac", "header": "X-S", "algorithm": "sha265"}) == [
        Problem(f"{AT}.algorithm", "unknown algorithm 'sha265' (did you mean 'sha256'?)")
    ]


def test_unsupported_algorithm_lists_the_supported_ones() -> None:
    assert problems_of({"scheme": "hmac", "header": "X-S", "algorithm": "md5"}) == [
        Problem(f"{AT}.algorithm", "unknown algorithm 'md5' (known: sha1, sha256, sha512)")
    ]


def test_misspelled_encoding_suggests_the_closest() -> None:
    assert problems_of({"scheme": "hmac", "header": "X-S", "encoding": "base46"}) == [
        Problem(f"{AT}.encoding", "unknown encoding 'base46' (did you mean 'base64'?)")
    ]


def test_missing_header_is_reported() -> None:
    assert problems_of({"scheme": "hmac"}) == [
        Problem(AT, "missing required key 'header' (the header carrying the signature)")
    ]


def test_missing_scheme_is_reported() -> None:
    assert problems_of({"header": "X-S"}) == [Problem(AT, "missing required key 'scheme' (scheme: hmac)")]


def test_a_preset_in_mapping_form_points_to_the_bare_name() -> None:
    assert problems_of({"scheme": "github", "header": "X-S"}) == [
        Problem(
            f"{AT}.scheme", "unknown scheme 'github' in a mapping (write `verify: github` for the preset)"
        )
    ]


def test_signed_timestamp_without_timestamp_header_is_reported() -> None:
    assert problems_of({"scheme": "hmac", "header": "X-S", "signed": "{timestamp}.{body}"}) == [
        Problem(f"{AT}.signed", "{timestamp} is signed but timestamp_header is not set (name its header)")
    ]


def test_signed_id_without_id_header_is_reported() -> None:
    assert problems_of({"scheme": "hmac", "header": "X-S", "signed": "{id}.{body}"}) == [
        Problem(f"{AT}.signed", "{id} is signed but id_header is not set (name its header)")
    ]


def test_unknown_placeholder_suggests_the_closest() -> None:
    spec = {"scheme": "hmac", "header": "X-S", "signed": "{tmestamp}.{body}", "timestamp_header": "X-T"}
    assert problems_of(spec) == [
        Problem(f"{AT}.signed", "unknown placeholder {tmestamp} (did you mean {timestamp}?)"),
        Problem(f"{AT}.timestamp_header", "timestamp_header is set but signed does not use {timestamp}"),
    ]


def test_unknown_placeholder_without_a_close_match_lists_the_known_ones() -> None:
    assert problems_of({"scheme": "hmac", "header": "X-S", "signed": "{url}{body}"}) == [
        Problem(f"{AT}.signed", "unknown placeholder {url} (known: {body}, {timestamp}, {id})")
    ]


def test_a_recipe_that_does_not_sign_the_body_is_rejected() -> None:
    spec = {"scheme": "hmac", "header": "X-S", "signed": "{timestamp}", "timestamp_header": "X-T"}
    assert problems_of(spec) == [
        Problem(f"{AT}.signed", "the signed string must include {body}, or the body is not protected")
    ]


def test_tolerance_without_a_signed_timestamp_is_reported() -> None:
    assert problems_of({"scheme": "hmac", "header": "X-S", "tolerance": 60}) == [
        Problem(f"{AT}.tolerance", "a tolerance needs a signed {timestamp} to check")
    ]


@pytest.mark.parametrize("value", [-1, "300", True])
def test_tolerance_must_be_whole_seconds(value: object) -> None:
    spec = {"scheme": "hmac", "header": "X-S", "signed": "{timestamp}{body}", "timestamp_header": "X-T"}
    assert problems_of({**spec, "tolerance": value}) == [
        Problem(f"{AT}.tolerance", f"expected seconds >= 0 or null, got {value!r}")
    ]


def test_non_string_values_are_reported_with_their_path() -> None:
    assert problems_of({"scheme": "hmac", "header": 12}) == [
        Problem(f"{AT}.header", "expected a non-empty string, got 12")
    ]


def test_every_problem_in_one_recipe_is_reported_at_once() -> None:
    problems = problems_of({"scheme": "hmac", "algorithm": "md4", "encoding": "b64", "signed": "{timestamp}"})
    paths = [AT, f"{AT}.algorithm", f"{AT}.encoding", f"{AT}.signed", f"{AT}.signed"]
    assert [p.path for p in problems] == paths


def test_problems_already_in_the_list_are_kept_and_a_clean_spec_adds_none() -> None:
    earlier = Problem("routes[0]", "something else")
    problems = [earlier]
    scheme = scheme_from_spec({"scheme": "hmac", "header": "X-S"}, AT, problems)
    assert scheme is not None and problems == [earlier]


# -- the token scheme -------------------------------------------------------------------------------------


def test_token_in_a_header_is_read_into_a_row_that_marks_the_header_secret() -> None:
    scheme, problems = parse({"scheme": "token", "header": "X-Api-Key", "event_type": "body.kind"})
    assert problems == []
    assert scheme == Scheme(
        name="token",
        signature_headers=("X-Api-Key",),
        signature_format="token",
        event_type="body.kind",
        binds_body=False,
        secret_headers=("X-Api-Key",),
    )


def test_token_in_the_query_marks_the_parameter_secret() -> None:
    scheme, _ = parse({"scheme": "token", "query": "token"})
    assert scheme is not None
    assert (scheme.signature_headers, scheme.secret_query) == ((), ("token",))


@pytest.mark.parametrize(
    "spec", [{"scheme": "token"}, {"scheme": "token", "header": "X-Api-Key", "query": "token"}]
)
def test_token_needs_exactly_one_place(spec: dict[str, str]) -> None:
    assert problems_of(spec) == [
        Problem(AT, "scheme token needs exactly one of header: (e.g. X-Api-Key) or query:")
    ]


def test_token_rejects_recipe_keys_and_the_bare_name() -> None:
    assert problems_of({"scheme": "token", "header": "X-Api-Key", "prefix": "v1="}) == [
        Problem(f"{AT}.prefix", "unknown key 'prefix' (allowed: scheme, header, query, dedupe, event_type)")
    ]
    assert problems_of("token") == [
        Problem(AT, "scheme token needs a mapping: {scheme: token, header: X-Api-Key}")
    ]

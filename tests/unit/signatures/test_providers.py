"""Provider presets: published vectors, the official SDKs as judges, one test per failure mode."""

from __future__ import annotations

import base64
import hmac
import json
import time
from urllib.parse import parse_qsl, urlencode

import pytest
from paddle_billing.Notifications import Secret as PaddleSecret
from paddle_billing.Notifications import Verifier as PaddleVerifier
from slack_sdk.signature import SignatureVerifier
from square.utils.webhooks_helper import verify_signature as square_verify
from twilio.request_validator import RequestValidator

from gateway.errors import Problem, SignatureError
from gateway.model import Headers, Inbound, Secret, Verdict
from gateway.routes.sources import parse_sources, source_warnings
from gateway.signatures.recipes import scheme_from_spec
from gateway.signatures.schemes import PRESETS, Scheme
from gateway.signatures.signing import sign
from gateway.signatures.verify import secret_problem, verify

NOW = 1_700_000_000
URL = "https://gw.example/hooks/x"


class _Form(dict[str, list[str]]):
    """Repeated form fields as twilio's RequestValidator reads them (``getall``, like Flask's MultiDict)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        for key, value in pairs:
            self.setdefault(key, []).append(value)

    def getall(self, key: str) -> list[str]:
        return self[key]


def req(
    headers: list[tuple[str, str]],
    body: bytes = b"{}",
    url: str = URL,
    query: tuple[tuple[str, str], ...] = (),
) -> Inbound:
    return Inbound("POST", url, Headers(headers), body, query)


def check(scheme: Scheme, secrets: list[str], request: Inbound, now: float = NOW) -> Verdict:
    return verify(scheme, [Secret(s) for s in secrets], request, now=now, tolerance=scheme.tolerance)


def rejected(scheme: Scheme, secrets: list[str], request: Inbound, now: float = NOW) -> tuple[str, str]:
    with pytest.raises(SignatureError) as info:
        check(scheme, secrets, request, now)
    return info.value.reason, info.value.detail


def signed(name: str, secret: str, body: bytes, now: float = NOW, **kw: str) -> Inbound:
    headers = sign(PRESETS[name], Secret(secret), body, now=now, **kw)  # type: ignore[arg-type]
    form = [("Content-Type", "application/x-www-form-urlencoded")] if body[:1] not in (b"{", b"[") else []
    return req(headers + form, body, kw.get("url", URL))


# -- Slack ------------------------------------------------------------------------------------------------

SLACK = PRESETS["slack"]
SLACK_SECRET, SLACK_TS = "8f742231b10e8888abcd99yyyzzz85a5", 1531420618
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def slack_request(sig: str = SLACK_SIG, ts: str = str(SLACK_TS), body: bytes = SLACK_BODY) -> Inbound:
    return req([("X-Slack-Request-Timestamp", ts), ("X-Slack-Signature", sig)], body)


def test_slack_published_form_vector_verifies() -> None:
    verdict = check(SLACK, [SLACK_SECRET], slack_request(), now=SLACK_TS)
    assert verdict == Verdict(verified=True, scheme="slack", timestamp=SLACK_TS, key_index=0)


def test_slack_sign_reproduces_the_published_vector() -> None:
    assert sign(SLACK, Secret(SLACK_SECRET), SLACK_BODY, now=SLACK_TS) == [
        ("X-Slack-Signature", SLACK_SIG),
        ("X-Slack-Request-Timestamp", str(SLACK_TS)),
    ]


def test_slack_sdk_accepts_what_we_sign_for_a_json_event() -> None:
    body = b'{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}'
    headers = sign(SLACK, Secret(SLACK_SECRET), body, now=time.time())  # the SDK reads the wall clock
    assert SignatureVerifier(SLACK_SECRET).is_valid_request(body, dict(headers))


def test_slack_signature_made_by_the_sdk_is_accepted() -> None:
    body = b'{"type":"event_callback"}'
    sig = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=str(NOW), body=body)
    assert sig is not None
    assert check(SLACK, [SLACK_SECRET], slack_request(sig, str(NOW), body)).verified


def test_slack_tampered_body_and_wrong_secret_are_rejected() -> None:
    assert rejected(SLACK, [SLACK_SECRET], slack_request(body=SLACK_BODY + b"&x=1"), SLACK_TS)[0] == (
        "bad_signature"
    )
    assert rejected(SLACK, ["another"], slack_request(), SLACK_TS) == (
        "bad_signature",
        "no signature in X-Slack-Signature matches the configured secret: wrong secret, "
        "or the body was altered",
    )


@pytest.mark.parametrize(
    ("now", "detail"),
    [
        (
            SLACK_TS + 301,
            f"timestamp {SLACK_TS} is 301 s old, past the 300 s tolerance (a replay, or a clock out of sync)",
        ),
        (
            SLACK_TS - 301,
            f"timestamp {SLACK_TS} is 301 s in the future, past the 300 s tolerance (a clock out of sync)",
        ),
    ],
)
def test_slack_stale_and_future_timestamps_are_rejected(now: int, detail: str) -> None:
    assert rejected(SLACK, [SLACK_SECRET], slack_request(), now) == ("stale_timestamp", detail)


def test_slack_missing_and_malformed_headers_are_reported() -> None:
    no_ts = req([("X-Slack-Signature", SLACK_SIG)], SLACK_BODY)
    assert rejected(SLACK, [SLACK_SECRET], no_ts) == (
        "missing_timestamp",
        "no X-Slack-Request-Timestamp header (slack signs it)",
    )
    assert rejected(SLACK, [SLACK_SECRET], req([], SLACK_BODY)) == (
        "missing_signature",
        "no X-Slack-Signature header",
    )
    assert rejected(SLACK, [SLACK_SECRET], slack_request(SLACK_SIG[3:])) == (
        "malformed_signature",
        "X-Slack-Signature should look like 'v0=<64 hex digits>'",
    )


# -- Shopify, Intercom --------------------------------------------------------------------------------------

SHOPIFY = PRESETS["shopify"]
SHOPIFY_SIG = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="


def test_shopify_published_vector_verifies_and_sign_reproduces_it() -> None:
    request = req([("X-Shopify-Hmac-Sha256", SHOPIFY_SIG)], b'{"foo": "bar"}')
    assert check(SHOPIFY, ["test_secret_key"], request).verified
    assert sign(SHOPIFY, Secret("test_secret_key"), b'{"foo": "bar"}', now=NOW) == [
        ("X-Shopify-Hmac-Sha256", SHOPIFY_SIG)
    ]


def test_shopify_failures() -> None:
    assert rejected(SHOPIFY, ["test_secret_key"], req([("X-Shopify-Hmac-Sha256", SHOPIFY_SIG)], b"{}"))[
        0
    ] == ("bad_signature")
    assert rejected(SHOPIFY, ["test_secret_key"], req([("X-Shopify-Hmac-Sha256", "sha256=abc")])) == (
        "malformed_signature",
        "X-Shopify-Hmac-Sha256 should look like '<base64 of 32 bytes>'",
    )
    assert rejected(SHOPIFY, ["k"], req([])) == ("missing_signature", "no X-Shopify-Hmac-Sha256 header")


def test_intercom_verifies_a_sha1_body_signature_and_rejects_tampering() -> None:
    body = b'{"type":"notification_event","topic":"ping","id":"notif_1"}'
    expected = "sha1=" + hmac.new(b"client-secret", body, "sha1").hexdigest()
    assert sign(PRESETS["intercom"], Secret("client-secret"), body, now=NOW) == [
        ("X-Hub-Signature", expected)
    ]
    assert check(PRESETS["intercom"], ["client-secret"], req([("X-Hub-Signature", expected)], body)).verified
    assert rejected(PRESETS["intercom"], ["client-secret"], req([("X-Hub-Signature", expected)], b"{}"))[
        0
    ] == ("bad_signature")


# -- Linear -----------------------------------------------------------------------------------------------

LINEAR = PRESETS["linear"]
LINEAR_TS_MS = NOW * 1000 + 250
LINEAR_BODY = json.dumps({"type": "Issue", "action": "create", "webhookTimestamp": LINEAR_TS_MS}).encode()


def linear_request(body: bytes = LINEAR_BODY, secret: str = "lin_wh_secret") -> Inbound:
    return req([("Linear-Signature", hmac.new(secret.encode(), body, "sha256").hexdigest())], body)


def test_linear_verifies_with_the_millisecond_timestamp_from_the_body() -> None:
    verdict = check(LINEAR, ["lin_wh_secret"], linear_request(), now=NOW + 60)
    assert verdict == Verdict(verified=True, scheme="linear", timestamp=NOW, key_index=0)
    digest = hmac.new(b"lin_wh_secret", LINEAR_BODY, "sha256").hexdigest()
    assert sign(LINEAR, Secret("lin_wh_secret"), LINEAR_BODY, now=NOW) == [("Linear-Signature", digest)]


@pytest.mark.parametrize(
    ("now", "detail"),
    [
        (
            NOW + 61,
            f"timestamp {LINEAR_TS_MS} ms is 61 s old, past the 60 s tolerance "
            "(a replay, or a clock out of sync)",
        ),
        (
            NOW - 61,
            f"timestamp {LINEAR_TS_MS} ms is 61 s in the future, past the 60 s tolerance "
            "(a clock out of sync)",
        ),
    ],
)
def test_linear_window_is_60_seconds_both_ways(now: int, detail: str) -> None:
    assert rejected(LINEAR, ["lin_wh_secret"], linear_request(), now) == ("stale_timestamp", detail)


def test_linear_body_without_or_with_a_bad_webhook_timestamp_is_reported() -> None:
    assert rejected(LINEAR, ["lin_wh_secret"], linear_request(b'{"type": "Issue"}')) == (
        "missing_timestamp",
        "the body has no webhookTimestamp (linear signs it there)",
    )
    assert rejected(LINEAR, ["lin_wh_secret"], linear_request(b'{"webhookTimestamp": 1.5}')) == (
        "malformed_timestamp",
        "webhookTimestamp in the body should be integer milliseconds, got '1.5'",
    )


def test_linear_tampered_body_is_rejected_and_sign_needs_the_body_timestamp() -> None:
    request = linear_request()
    altered = req(list(request.headers.pairs), LINEAR_BODY.replace(b"create", b"remove"))
    assert rejected(LINEAR, ["lin_wh_secret"], altered)[0] == "bad_signature"
    with pytest.raises(ValueError) as info:
        sign(LINEAR, Secret("s"), b'{"type": "Issue"}', now=NOW)
    assert (
        str(info.value) == "linear signs the body, which must carry its webhookTimestamp (unix milliseconds)"
    )


# -- Paddle -----------------------------------------------------------------------------------------------

PADDLE = PRESETS["paddle"]
PADDLE_SECRET = "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh"
PADDLE_HEADER = "ts=1696195954;h1=dummy;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02"


def test_paddle_published_vector_with_a_junk_h1_verifies() -> None:
    request = req([("Paddle-Signature", PADDLE_HEADER)], b"hello-world")
    assert check(PADDLE, [PADDLE_SECRET], request, now=1696195954).timestamp == 1696195954


def test_paddle_sdk_accepts_what_we_sign() -> None:
    class _Req:  # the shape the SDK reads: .headers and .body
        def __init__(self, headers: dict[str, str], body: bytes) -> None:
            self.headers, self.body = headers, body

    body = b'{"event_type":"transaction.completed","notification_id":"ntf_1"}'
    headers = sign(PADDLE, Secret(PADDLE_SECRET), body, now=time.time())  # the SDK reads the wall clock
    assert PaddleVerifier().verify(_Req(dict(headers), body), PaddleSecret(PADDLE_SECRET))


@pytest.mark.parametrize(
    ("now", "reason"), [(1696195954 + 6, "stale_timestamp"), (1696195954 - 6, "stale_timestamp")]
)
def test_paddle_default_window_is_five_seconds_both_ways(now: int, reason: str) -> None:
    request = req([("Paddle-Signature", PADDLE_HEADER)], b"hello-world")
    assert rejected(PADDLE, [PADDLE_SECRET], request, now)[0] == reason


def test_paddle_failures() -> None:
    assert rejected(PADDLE, [PADDLE_SECRET], req([("Paddle-Signature", PADDLE_HEADER)], b"hello-world!"))[
        0
    ] == ("bad_signature")
    assert rejected(PADDLE, [PADDLE_SECRET], req([("Paddle-Signature", "ts=1;h1=dummy")])) == (
        "malformed_signature",
        "Paddle-Signature has no h1=<64 hex digits> signature",
    )
    assert rejected(PADDLE, [PADDLE_SECRET], req([("Paddle-Signature", PADDLE_HEADER[14:])])) == (
        "missing_timestamp",
        "Paddle-Signature has no ts= element",
    )


# -- Zoom -------------------------------------------------------------------------------------------------

ZOOM = PRESETS["zoom"]


def test_zoom_signs_v0_timestamp_body_and_checks_the_window() -> None:
    body = b'{"event":"meeting.started","payload":{}}'
    expected = "v0=" + hmac.new(b"zoom-secret", b"v0:%d:" % NOW + body, "sha256").hexdigest()
    headers = sign(ZOOM, Secret("zoom-secret"), body, now=NOW)
    assert headers == [("x-zm-signature", expected), ("x-zm-request-timestamp", str(NOW))]
    assert check(ZOOM, ["zoom-secret"], req(headers, body)).timestamp == NOW
    assert rejected(ZOOM, ["zoom-secret"], req(headers, body), now=NOW + 301)[0] == "stale_timestamp"
    assert rejected(ZOOM, ["zoom-secret"], req(headers, body + b" "))[0] == "bad_signature"


# -- Square -----------------------------------------------------------------------------------------------

SQUARE = PRESETS["square"]
SQUARE_BODY = (
    b'{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":'
    b'"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":'
    b'{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}'
)
SQUARE_URL = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9"


@pytest.mark.parametrize(
    ("key", "url", "body", "sig"),
    [
        ("Ibxx_5AKakO-3qeNVR61Dw", SQUARE_URL, SQUARE_BODY, "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4="),
        (
            "signature-key",
            "https://webhook.site/webhooks",
            b'{"data":{"type":"webhooks","id":">id<"}}',
            "Cxt7+aTi4rKgcA0bC4g9EHdVtLSDWdqccmL5MvihU4U=",
        ),
    ],
)
def test_square_published_vectors_verify_and_sign_reproduces_them(
    key: str, url: str, body: bytes, sig: str
) -> None:
    request = req([("x-square-hmacsha256-signature", sig)], body, url)
    assert check(SQUARE, [key], request).verified
    assert sign(SQUARE, Secret(key), body, now=NOW, url=url) == [("x-square-hmacsha256-signature", sig)]


def test_square_sdk_accepts_what_we_sign() -> None:
    [(_, sig)] = sign(SQUARE, Secret("k"), SQUARE_BODY, now=NOW, url=SQUARE_URL)
    assert square_verify(
        request_body=SQUARE_BODY.decode(),
        signature_header=sig,
        signature_key="k",
        notification_url=SQUARE_URL,
    )


def test_square_rejects_another_url_and_the_legacy_sha1_header() -> None:
    sig = "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4="
    moved = req([("x-square-hmacsha256-signature", sig)], SQUARE_BODY, "http://internal:8000/hooks/square")
    assert rejected(SQUARE, ["Ibxx_5AKakO-3qeNVR61Dw"], moved) == (
        "bad_signature",
        "no signature in x-square-hmacsha256-signature matches the configured secret: wrong secret, "
        "or the URL or the body was altered",
    )
    legacy = req([("x-square-signature", "1z2n3DEJJiUPKcPzQo1ftvbxGdw=")], SQUARE_BODY, SQUARE_URL)
    assert rejected(SQUARE, ["Ibxx_5AKakO-3qeNVR61Dw"], legacy)[0] == "missing_signature"
    with pytest.raises(ValueError, match="square signs the notification URL"):
        sign(SQUARE, Secret("k"), SQUARE_BODY, now=NOW)


# -- Twilio -----------------------------------------------------------------------------------------------

TWILIO = PRESETS["twilio"]
TW_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
FORM = [("Content-Type", "application/x-www-form-urlencoded")]


def form(*pairs: tuple[str, str]) -> bytes:
    return urlencode(pairs).encode()


DOCS_PARAMS = form(
    ("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"),
    ("From", "+12349013030"), ("To", "+18005551212"),
)  # fmt: skip
SDK_PARAMS = form(
    ("CallSid", "CA1234567890ABCDE"), ("Digits", "1234"), ("From", "+14158675309"),
    ("To", "+18005551212"), ("Caller", "+14158675309"),
)  # fmt: skip
REPEATED = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234"
JSON_BODY = b'{"property": "value", "boolean": true}'
JSON_URL = TW_URL + "&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"


@pytest.mark.parametrize(
    ("url", "body", "sig"),
    [
        (TW_URL, DOCS_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        (TW_URL, SDK_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        (TW_URL, REPEATED, "IK+Dwps556ElfBT0I3Rgjkr1wJU="),
        (TW_URL.replace(".com", ".com:1234"), SDK_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # port removed
        (TW_URL, SDK_PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w="),  # signed with :443 added
        (TW_URL.replace("https", "http"), SDK_PARAMS, "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # signed with :80
    ],
)
def test_twilio_published_form_vectors_verify(url: str, body: bytes, sig: str) -> None:
    assert check(TWILIO, ["12345"], req([("X-Twilio-Signature", sig), *FORM], body, url)).verified


def test_twilio_published_json_vector_verifies_through_body_sha256() -> None:
    headers = [("X-Twilio-Signature", "a9nBmqA0ju/hNViExpshrM61xv4="), ("Content-Type", "application/json")]
    request = req(headers, JSON_BODY, JSON_URL)
    assert check(TWILIO, ["12345"], request).verified
    altered = req(list(request.headers.pairs), JSON_BODY.replace(b"true", b"false"), JSON_URL)
    assert rejected(TWILIO, ["12345"], altered) == (
        "bad_signature",
        "the bodySHA256 in the URL does not match the body: the body was altered",
    )


@pytest.mark.parametrize("body", [DOCS_PARAMS, REPEATED, b""])
def test_twilio_sdk_accepts_what_we_sign(body: bytes) -> None:
    [(name, sig)] = sign(TWILIO, Secret("12345"), body, now=NOW, url=TW_URL)
    params = _Form(parse_qsl(body.decode(), keep_blank_values=True))
    assert RequestValidator("12345").validate(TW_URL, params, sig)
    assert check(TWILIO, ["12345"], req([(name, sig), *FORM], body, TW_URL)).verified


def test_twilio_sign_asks_for_body_sha256_for_a_json_body() -> None:
    with pytest.raises(ValueError) as info:
        sign(TWILIO, Secret("12345"), JSON_BODY, now=NOW, url=TW_URL)
    assert str(info.value) == f"twilio binds a JSON body through the URL: send it to {JSON_URL}"
    [(_, sig)] = sign(TWILIO, Secret("12345"), JSON_BODY, now=NOW, url=JSON_URL)
    assert sig == "a9nBmqA0ju/hNViExpshrM61xv4="


def test_twilio_shared_key_mode_uses_sha256_when_announced() -> None:
    settings = ("X-Twilio-Webhooks-Signature-Settings", "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256")
    sig = RequestValidator("shared").compute_signature(TW_URL, {"A": "1"}, "HMAC_SHA256")
    assert (
        check(
            TWILIO,
            ["auth-token", "shared"],
            req([("X-Twilio-Signature", sig), settings, *FORM], b"A=1", TW_URL),
        ).key_index
        == 1
    )
    bogus = ("X-Twilio-Webhooks-Signature-Settings", "algorithm=HMAC_MD5")
    assert rejected(TWILIO, ["shared"], req([("X-Twilio-Signature", sig), bogus, *FORM], b"A=1", TW_URL)) == (
        "malformed_signature",
        "X-Twilio-Webhooks-Signature-Settings names an unsupported algorithm 'HMAC_MD5' "
        "(known: HMAC_SHA1, HMAC_SHA256)",
    )


def test_twilio_failures() -> None:
    sig = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert rejected(TWILIO, ["12345"], req([("X-Twilio-Signature", sig), *FORM], SDK_PARAMS, URL))[0] == (
        "bad_signature"
    )
    assert rejected(
        TWILIO, ["12345"], req([("X-Twilio-Signature", sig), *FORM], SDK_PARAMS + b"&X=1", TW_URL)
    )[0] == ("bad_signature")
    assert rejected(TWILIO, ["12345"], req([("X-Twilio-Signature", "abc"), *FORM], SDK_PARAMS, TW_URL)) == (
        "malformed_signature",
        "X-Twilio-Signature should look like '<base64 of 20 bytes>'",
    )
    unbound = req([("X-Twilio-Signature", sig), ("Content-Type", "application/json")], JSON_BODY, TW_URL)
    assert rejected(TWILIO, ["12345"], unbound) == (
        "bad_signature",
        "X-Twilio-Signature covers form parameters, or the body through bodySHA256 in the URL; this body is "
        "neither form-encoded nor hashed in the URL",
    )


# -- GitLab -----------------------------------------------------------------------------------------------

GITLAB = PRESETS["gitlab"]
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_gitlab_token_is_compared_with_the_secret_and_binds_nothing_else() -> None:
    request = req([("X-Gitlab-Token", "tok-2")], b'{"object_kind":"push"}')
    assert check(GITLAB, ["tok-1", "tok-2"], request) == Verdict(True, "gitlab", None, 1)
    assert check(GITLAB, ["tok-2"], req([("X-Gitlab-Token", "tok-2")], b"anything")).verified
    assert rejected(GITLAB, ["tok-1"], request) == (
        "bad_signature",
        "X-Gitlab-Token does not match the configured secret",
    )
    assert rejected(GITLAB, ["tok-1"], req([])) == ("missing_signature", "no X-Gitlab-Token header")
    assert sign(GITLAB, Secret("tok-1"), b"{}", now=NOW) == [("X-Gitlab-Token", "tok-1")]


def test_gitlab_signing_token_is_checked_as_standard_webhooks() -> None:
    body = b'{"object_kind":"push"}'
    headers = sign(GITLAB, Secret(SW_SECRET), body, now=NOW, msg_id="msg_1")
    assert [k for k, _ in headers] == ["webhook-id", "webhook-timestamp", "webhook-signature"]
    assert check(GITLAB, ["legacy-token", SW_SECRET], req(headers, body)) == Verdict(True, "gitlab", NOW, 1)
    assert rejected(GITLAB, [SW_SECRET], req(headers, body + b" "))[0] == "bad_signature"
    assert rejected(GITLAB, [SW_SECRET], req(headers, body), now=NOW + 301)[0] == "stale_timestamp"
    # With a signing token configured, a present signature decides: a right token does not rescue it.
    forged = req([*headers[:2], ("webhook-signature", "v1," + base64.b64encode(bytes(32)).decode()),
                  ("X-Gitlab-Token", "legacy-token")], body)  # fmt: skip
    assert rejected(GITLAB, ["legacy-token", SW_SECRET], forged)[0] == "bad_signature"
    assert rejected(GITLAB, [SW_SECRET], req([("X-Gitlab-Token", "x")], body)) == (
        "missing_signature",
        "no webhook-signature header (the whsec_ secret is a GitLab signing token)",
    )
    assert secret_problem(GITLAB, Secret("whsec_!!")) == (
        "a Standard Webhooks secret must be base64 (optionally after 'whsec_')"
    )


# -- Mailgun ----------------------------------------------------------------------------------------------

MAILGUN = PRESETS["mailgun"]


def mailgun_body(ts: int = NOW, token: str = "tok123", key: str = "mg-key", as_form: bool = False) -> bytes:
    sig = hmac.new(key.encode(), f"{ts}{token}".encode(), "sha256").hexdigest()
    if as_form:
        return form(("timestamp", str(ts)), ("token", token), ("signature", sig), ("event", "delivered"))
    fields = {"timestamp": str(ts), "token": token, "signature": sig}
    return json.dumps({"signature": fields, "event-data": {"event": "delivered"}}).encode()


def test_mailgun_json_and_form_bodies_verify_and_the_event_data_is_not_bound() -> None:
    assert check(MAILGUN, ["mg-key"], req([], mailgun_body())).timestamp == NOW
    assert check(MAILGUN, ["mg-key"], req(FORM, mailgun_body(as_form=True))).verified
    changed = mailgun_body().replace(b"delivered", b"failed")
    assert check(MAILGUN, ["mg-key"], req([], changed)).verified  # the trap: Mailgun does not sign it


def test_mailgun_failures() -> None:
    assert rejected(MAILGUN, ["other"], req([], mailgun_body())) == (
        "bad_signature",
        "no signature in signature.signature in the body matches the configured secret: wrong secret, "
        "or the timestamp or the token was altered",
    )
    assert rejected(MAILGUN, ["mg-key"], req([], mailgun_body()), now=NOW + 901)[0] == "stale_timestamp"
    assert rejected(MAILGUN, ["mg-key"], req([], mailgun_body()), now=NOW - 901)[0] == "stale_timestamp"
    assert rejected(MAILGUN, ["mg-key"], req([], b'{"event-data": {}}')) == (
        "missing_signature",
        "the body has no signature.signature (Mailgun signs inside the body)",
    )
    assert rejected(MAILGUN, ["mg-key"], req(FORM, b"signature=zz&token=t&timestamp=1")) == (
        "malformed_signature",
        "signature in the body should be 64 hex digits",
    )
    with pytest.raises(ValueError, match="mailgun signs inside the body"):
        sign(MAILGUN, Secret("mg-key"), b"{}", now=NOW)


def test_mailgun_dedupe_key_is_the_signed_token() -> None:
    # A replayed token is the same dedupe key: the store answers it as a duplicate, never processing it twice.
    assert (MAILGUN.dedupe, MAILGUN.binds_body, MAILGUN.tolerance) == ("body.signature.token", False, 900)


# -- basic and token --------------------------------------------------------------------------------------

BASIC = PRESETS["basic"]


def basic(credentials: str) -> list[tuple[str, str]]:
    return [("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())]


def test_basic_auth_accepts_any_configured_user_and_refuses_others() -> None:
    assert check(BASIC, ["ann:pw1", "bob:pw2"], req(basic("bob:pw2"))).key_index == 1
    assert rejected(BASIC, ["ann:pw1"], req(basic("ann:wrong"))) == (
        "bad_signature",
        "Authorization does not match the configured secret",
    )
    assert rejected(BASIC, ["ann:pw1"], req([("Authorization", "Bearer x")])) == (
        "malformed_signature",
        "Authorization should look like 'Basic <base64 of user:password>'",
    )
    assert rejected(BASIC, ["ann:pw1"], req([]))[0] == "missing_signature"
    assert sign(BASIC, Secret("ann:pw1"), b"", now=NOW) == basic("ann:pw1")
    assert secret_problem(BASIC, Secret("no-colon")) == "a basic secret must look like 'username:password'"


def token_scheme(**spec: str) -> Scheme:
    problems: list[Problem] = []
    scheme = scheme_from_spec({"scheme": "token", **spec}, "verify", problems)
    assert scheme is not None, problems
    return scheme


def test_token_in_a_header_or_a_query_parameter() -> None:
    header = token_scheme(header="X-Api-Key")
    assert check(header, ["k1"], req([("X-Api-Key", "k1")])).verified
    assert rejected(header, ["k1"], req([("X-Api-Key", "k2")])) == (
        "bad_signature",
        "X-Api-Key does not match the configured secret",
    )
    assert sign(header, Secret("k1"), b"", now=NOW) == [("X-Api-Key", "k1")]
    query = token_scheme(query="token")
    assert check(query, ["k1"], req([], query=(("token", "k1"),))).verified
    assert rejected(query, ["k1"], req([])) == ("missing_signature", "no token query parameter")
    assert (query.secret_query, header.secret_headers, query.binds_body) == (
        ("token",),
        ("X-Api-Key",),
        False,
    )


# -- sources: public_url ----------------------------------------------------------------------------------


def test_public_url_is_read_and_url_signing_sources_without_it_are_warned_about() -> None:
    problems: list[Problem] = []
    sources = parse_sources(
        {
            "sms": {"verify": "twilio", "secret": "t", "public_url": "https://hooks.example.com/hooks/sms"},
            "pos": {"verify": "square", "secret": "k"},
            "gh": {"verify": "github", "secret": "s"},
        },
        problems,
    )
    assert problems == []
    assert sources["sms"].public_url == "https://hooks.example.com/hooks/sms"
    assert [source_warnings(s) for s in sources.values()] == [
        [],
        [
            "sources.pos: verify: square signs the URL it calls; set public_url (e.g. "
            "https://hooks.example.com/hooks/pos) or deliveries that pass a proxy rewriting the scheme, "
            "host or port fail with bad_signature"
        ],
        [],
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "/hooks/sms",
            "expected an absolute http(s) URL like https://hooks.example.com/hooks/x, got '/hooks/sms'",
        ),
        (
            "ftp://x/y",
            "expected an absolute http(s) URL like https://hooks.example.com/hooks/x, got 'ftp://x/y'",
        ),
        (
            "https://x/y?a=1",
            "public_url must not carry a query string or fragment: the received query is appended",
        ),
        (
            "https://[::1/x",
            "expected an absolute http(s) URL like https://hooks.example.com/hooks/x, got 'https://[::1/x'",
        ),
        (
            "https://ops:hunter2@hooks.example.com/x",
            "public_url must not carry a user name or password (the value is not shown)",
        ),
    ],
)
def test_bad_public_url_is_reported(value: str, message: str) -> None:
    problems: list[Problem] = []
    parse_sources({"sms": {"verify": "twilio", "secret": "t", "public_url": value}}, problems)
    assert problems == [Problem("sources.sms.public_url", message)]


def test_tolerance_is_refused_for_presets_that_sign_no_time() -> None:
    problems: list[Problem] = []
    sources = parse_sources(
        {
            "a": {"verify": "twilio", "secret": "t", "tolerance": 5},
            "b": {"verify": "paddle", "secret": "p", "tolerance": 30},
        },
        problems,
    )
    assert problems == [
        Problem(
            "sources.a.tolerance",
            "verify: twilio signs no timestamp, so there is no freshness to check; remove tolerance",
        )
    ]
    assert sources["b"].tolerance == 30


def test_no_error_shows_a_credential_sent_or_configured_in_clear() -> None:
    cases: list[tuple[Scheme, list[str], Inbound]] = [
        (GITLAB, ["tok-secret-1"], req([("X-Gitlab-Token", "tok-secret-2")])),
        (BASIC, ["ann:pw-secret-1"], req(basic("ann:pw-secret-2"))),
        (token_scheme(query="token"), ["q-secret-1"], req([], query=(("token", "q-secret-2"),))),
        (MAILGUN, ["mg-secret-1"], req([], mailgun_body(key="mg-secret-2"))),
    ]
    texts = []
    for scheme, secrets, request in cases:
        with pytest.raises(SignatureError) as info:
            check(scheme, secrets, request)
        texts += [str(info.value), repr(info.value)]
    assert [t for t in texts if "secret-" in t] == []


# -- more official SDKs as judges ---------------------------------------------------------------------------


def test_the_mailgun_sdk_judges_the_signatures_we_accept_and_refuse() -> None:
    from mailgun.security import SecurityGuard

    now = int(time.time())  # the SDK reads the wall clock for its 15-minute window
    body = json.loads(mailgun_body(ts=now))["signature"]
    assert SecurityGuard.verify_webhook("mg-key", body["token"], body["timestamp"], body["signature"])
    assert check(MAILGUN, ["mg-key"], req([], mailgun_body(ts=now)), now=now).verified
    forged = mailgun_body(ts=now, key="other-key")
    other = json.loads(forged)["signature"]
    assert not SecurityGuard.verify_webhook("mg-key", other["token"], other["timestamp"], other["signature"])
    with pytest.raises(SignatureError) as refused:
        check(MAILGUN, ["mg-key"], req([], forged), now=now)
    assert refused.value.reason == "bad_signature"


def test_the_svix_sdk_and_the_svix_preset_agree_both_ways() -> None:
    from datetime import UTC, datetime

    import svix.webhooks as svix_webhooks

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    now = int(time.time())
    payload = '{"type": "invoice.paid", "id": 1}'
    signature = svix_webhooks.Webhook(secret).sign("msg_svix_1", datetime.fromtimestamp(now, UTC), payload)
    svix_headers = [("svix-id", "msg_svix_1"), ("svix-timestamp", str(now)), ("svix-signature", signature)]
    assert check(PRESETS["svix"], [secret], req(svix_headers, payload.encode()), now=now).verified

    ours = dict(sign(PRESETS["svix"], Secret(secret), payload.encode(), now=now, msg_id="msg_svix_2"))
    as_svix = {name.replace("webhook-", "svix-"): value for name, value in ours.items()}
    svix_webhooks.Webhook(secret).verify(payload, as_svix)  # raises WebhookVerificationError on a mismatch
    with pytest.raises(svix_webhooks.WebhookVerificationError):
        svix_webhooks.Webhook(secret).verify(payload.replace("paid", "void"), as_svix)

"""Properties of signature checking, for every scheme row: what the gateway signs verifies, any changed byte
does not, the freshness window holds exactly, any configured secret may match, and no header value, body or
URL makes the verifier raise anything but SignatureError."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.errors import SignatureError
from gateway.model import Headers, Inbound, Secret, Verdict
from gateway.signatures.recipes import scheme_from_spec
from gateway.signatures.schemes import PRESETS, RemoteSettings, Scheme
from gateway.signatures.signing import sign
from gateway.signatures.verify import MAX_HEADER, verify
from tests.support.keys import PLAID_JWK
from tests.support.strategies import props

URL = "https://gw.example/hooks/x?env=prod"
FORM = ("Content-Type", "application/x-www-form-urlencoded")
SEEDS = st.binary(min_size=32, max_size=32)
TIMES = st.integers(1_000_000_000, 4_000_000_000)  # unix seconds the sender signs at


# -- keys: (what the source is configured with, what the sender signs with), derived from 32 random bytes ----


def _text(prefix: str) -> Callable[[bytes], tuple[str, str]]:
    return lambda seed: (prefix + seed.hex(),) * 2


def _whsec(seed: bytes) -> tuple[str, str]:
    return ("whsec_" + base64.b64encode(seed).decode(),) * 2


def _whpk(seed: bytes) -> tuple[str, str]:
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    return "whpk_" + base64.b64encode(public).decode(), "whsk_" + base64.b64encode(seed).decode()


def _discord(seed: bytes) -> tuple[str, str]:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw().hex(), seed.hex()


_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _sendgrid(seed: bytes) -> tuple[str, str]:
    key = ec.derive_private_key(int.from_bytes(seed, "big") % (_P256_ORDER - 1) + 1, ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return base64.b64encode(der).decode(), pem.decode()


# -- bodies a provider can sign ------------------------------------------------------------------------------


def _linear_body(body: bytes, now: int) -> bytes:
    """Linear signs a JSON body that carries its own timestamp (milliseconds)."""
    return b'{"webhookTimestamp": %d, "data": "%s"}' % (now * 1000, body.hex().encode())


def _form_body(body: bytes, now: int) -> bytes:
    """Twilio signs form parameters (a JSON body goes through bodySHA256 in the URL instead)."""
    return urlencode([("Body", body.decode("latin-1")), ("From", "+15550100")]).encode()


def _same(body: bytes, now: int) -> bytes:
    return body


def _recipe(spec: dict[str, Any]) -> Scheme:
    scheme = scheme_from_spec(spec, "verify", [])
    assert scheme is not None
    return scheme


@dataclass(frozen=True)
class Row:
    """One way a provider signs, as data: the scheme and how to make its keys and bodies."""

    scheme: Scheme
    keys: Callable[[bytes], tuple[str, str]]
    body: Callable[[bytes, int], bytes] = _same
    headers: tuple[tuple[str, str], ...] = ()  # sent besides the signature
    remote: RemoteSettings | None = None
    binds: str = "bytes"  # what a changed body must break: bytes | form (the parsed parameters) | none
    timed: bool = False  # a signed timestamp is checked against a tolerance
    reports_key: bool = True  # the Verdict names which configured secret matched


ROWS: dict[str, Row] = {
    "github": Row(PRESETS["github"], _text("gh-")),
    "stripe": Row(PRESETS["stripe"], _text("whsec_"), timed=True),
    "standard-webhooks": Row(PRESETS["standard-webhooks"], _whsec, timed=True),
    "standard-webhooks-v1a": Row(PRESETS["standard-webhooks"], _whpk, timed=True),
    "svix": Row(PRESETS["svix"], _whsec, timed=True),
    "slack": Row(PRESETS["slack"], _text("slack-"), timed=True),
    "shopify": Row(PRESETS["shopify"], _text("shpss_")),
    "intercom": Row(PRESETS["intercom"], _text("ic-")),
    "linear": Row(PRESETS["linear"], _text("lin_wh_"), body=_linear_body, timed=True),
    "paddle": Row(PRESETS["paddle"], _text("pdl_ntf_"), timed=True),
    "zoom": Row(PRESETS["zoom"], _text("zoom-"), timed=True),
    "square": Row(PRESETS["square"], _text("sq-")),
    "twilio": Row(PRESETS["twilio"], _text("tw-"), body=_form_body, headers=(FORM,), binds="form"),
    "gitlab-token": Row(PRESETS["gitlab"], _text("glpat-"), binds="none"),
    "gitlab-signing": Row(PRESETS["gitlab"], _whsec, timed=True),
    "basic": Row(PRESETS["basic"], lambda seed: (f"user-{seed[:4].hex()}:{seed.hex()}",) * 2, binds="none"),
    "discord": Row(PRESETS["discord"], _discord, timed=True, reports_key=False),
    "sendgrid": Row(PRESETS["sendgrid"], _sendgrid, timed=True, reports_key=False),
    "jwt": Row(
        PRESETS["jwt"],
        _text("jwt-hs256-"),
        remote=RemoteSettings(algorithms=("HS256",)),
        binds="none",
        reports_key=False,
    ),
    "hmac-recipe": Row(
        _recipe(
            {
                "scheme": "hmac",
                "header": "X-Acme-Signature",
                "prefix": "v1=",
                "signed": "{id}.{timestamp}.{body}",
                "timestamp_header": "X-Acme-Timestamp",
                "id_header": "X-Acme-Id",
                "encoding": "base64",
                "algorithm": "sha512",
            }
        ),
        _text("acme-"),
        timed=True,
    ),
    "token-recipe": Row(_recipe({"scheme": "token", "header": "X-Api-Key"}), _text("key-"), binds="none"),
}
BINDING = [name for name, row in ROWS.items() if row.binds != "none"]
TIMED = [name for name, row in ROWS.items() if row.timed]


def _signed(row: Row, signer: str, body: bytes, now: int) -> Inbound:
    body = row.body(body, now)
    msg_id = f"msg_{now}"
    headers = sign(row.scheme, Secret(signer), body, now=now, msg_id=msg_id, url=URL, remote=row.remote)
    return Inbound("POST", URL, Headers([*headers, *row.headers]), body)


def _check(
    row: Row, secrets: list[str], request: Inbound, now: float, tolerance: int | None = None
) -> Verdict:
    tolerance = row.scheme.tolerance if tolerance is None else tolerance
    return verify(
        row.scheme, [Secret(s) for s in secrets], request, now=now, tolerance=tolerance, remote=row.remote
    )


def _rejected(
    row: Row, secrets: list[str], request: Inbound, now: float, tolerance: int | None = None
) -> str:
    with pytest.raises(SignatureError) as info:
        _check(row, secrets, request, now, tolerance)
    return info.value.reason


# -- signing then verifying --------------------------------------------------------------------------------


@props(15)
@given(seed=SEEDS, body=st.binary(max_size=200), now=TIMES)
@pytest.mark.parametrize("name", ROWS)
def test_what_the_gateway_signs_verifies(name: str, seed: bytes, body: bytes, now: int) -> None:
    row = ROWS[name]
    secret, signer = row.keys(seed)
    verdict = _check(row, [secret], _signed(row, signer, body, now), now)
    assert (verdict.verified, verdict.key_index) == (True, 0 if row.reports_key else None)


@props(20)
@given(seed=SEEDS, body=st.binary(min_size=1, max_size=200), now=TIMES, data=st.data())
@pytest.mark.parametrize("name", BINDING)
def test_any_changed_body_byte_is_rejected(
    name: str, seed: bytes, body: bytes, now: int, data: st.DataObject
) -> None:
    row = ROWS[name]
    secret, signer = row.keys(seed)
    request = _signed(row, signer, body, now)
    sent = request.body
    i = data.draw(st.integers(0, len(sent) - 1), "position")
    changed = sent[:i] + bytes([sent[i] ^ data.draw(st.integers(1, 255), "xor")]) + sent[i + 1 :]
    if row.binds == "form" and _params(changed) == _params(sent):
        return  # Twilio signs the parsed parameters: `+` and `%20` are the same space to it
    _rejected(row, [secret], Inbound("POST", URL, request.headers, changed), now)


def _params(body: bytes) -> list[tuple[str, str]]:
    return sorted(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


_TOKEN = re.compile(r"[A-Za-z0-9+/_-]+=*")
_SCHEME_WORDS = ("basic", "bearer")  # RFC 9110: the auth-scheme word is case-insensitive


def _respelled(before: str, after: str, i: int) -> bool:
    """Whether changing character ``i`` only respelt the same signature: hex digits or an auth-scheme word in
    another letter case, or a base64 digit differing only in the bits past the end of the data."""
    old = next((m for m in _TOKEN.finditer(before) if m.start() <= i < m.end()), None)
    new = next((m for m in _TOKEN.finditer(after) if m.start() <= i < m.end()), None)
    if old is None or new is None or old.span() != new.span():
        return False
    a, b = old.group(), new.group()
    if a.lower() == b.lower() and (re.fullmatch(r"[0-9a-fA-F]+", a) or a.lower() in _SCHEME_WORDS):
        return True
    return _b64(a) is not None and _b64(a) == _b64(b)


def _b64(token: str) -> bytes | None:
    text = token.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        return None


@props(20)
@given(seed=SEEDS, body=st.binary(max_size=64), now=TIMES, data=st.data())
@pytest.mark.parametrize("name", ROWS)
def test_any_changed_byte_of_a_signed_header_is_rejected(
    name: str, seed: bytes, body: bytes, now: int, data: st.DataObject
) -> None:
    """The signature header, the timestamp (alone or inside the signature header) and the message id."""
    row = ROWS[name]
    secret, signer = row.keys(seed)
    request = _signed(row, signer, body, now)
    pairs = list(request.headers.pairs)
    k = data.draw(st.integers(0, len(pairs) - len(row.headers) - 1), "header")  # a header sign() made
    value = pairs[k][1]
    i = data.draw(st.integers(0, len(value) - 1), "position")
    char = data.draw(st.characters(max_codepoint=255).filter(lambda c: c != value[i]), "replacement")
    changed = value[:i] + char + value[i + 1 :]
    pairs[k] = (pairs[k][0], changed)
    tampered = Inbound("POST", URL, Headers(pairs), request.body)
    try:
        _check(row, [secret], tampered, now)
    except SignatureError:
        return
    assert _respelled(value, changed, i), f"{pairs[k][0]}: {value!r} changed to {changed!r} still verifies"


@props(20)
@given(seed=SEEDS, body=st.binary(max_size=64), now=TIMES, tolerance=st.integers(0, 10**6), data=st.data())
@pytest.mark.parametrize("name", TIMED)
def test_a_timestamp_verifies_exactly_inside_the_tolerance(
    name: str, seed: bytes, body: bytes, now: int, tolerance: int, data: st.DataObject
) -> None:
    row = ROWS[name]
    secret, signer = row.keys(seed)
    age = data.draw(st.integers(-2 * tolerance - 2, 2 * tolerance + 2), "age")
    request = _signed(row, signer, body, now)
    fresh = age <= tolerance and (-age <= tolerance or not row.scheme.reject_future)
    if fresh:
        assert _check(row, [secret], request, now + age, tolerance).verified
    else:
        assert _rejected(row, [secret], request, now + age, tolerance) == "stale_timestamp"


@props(20)
@given(
    seeds=st.lists(SEEDS, min_size=1, max_size=4, unique=True),
    body=st.binary(max_size=64),
    now=TIMES,
    data=st.data(),
)
@pytest.mark.parametrize("name", ROWS)
def test_any_one_of_several_secrets_verifies(
    name: str, seeds: list[bytes], body: bytes, now: int, data: st.DataObject
) -> None:
    row = ROWS[name]
    keys = [row.keys(seed) for seed in seeds]
    j = data.draw(st.integers(0, len(keys) - 1), "signer")
    verdict = _check(row, [secret for secret, _ in keys], _signed(row, keys[j][1], body, now), now)
    assert (verdict.verified, verdict.key_index) == (True, j if row.reports_key else None)
    others = [secret for i, (secret, _) in enumerate(keys) if i != j]
    if others:
        _rejected(row, others, _signed(row, keys[j][1], body, now), now)


# -- hostile input -----------------------------------------------------------------------------------------

SCHEMES: dict[str, tuple[Scheme, list[str], Any, RemoteSettings | None]] = {
    **{name: (row.scheme, [row.keys(bytes(32))[0]], None, row.remote) for name, row in ROWS.items()},
    "mailgun": (PRESETS["mailgun"], ["mg-key"], None, None),
    "plaid": (PRESETS["plaid"], ["plaid-secret"], PLAID_JWK, None),
    "pubsub": (PRESETS["pubsub"], [], {"kid-1": "not a certificate"}, RemoteSettings(audience="https://h/x")),
    "paypal": (
        PRESETS["paypal"],
        [],
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        RemoteSettings(webhook_id="WH1"),
    ),
    "none": (PRESETS["none"], [], None, None),
}
NAMES = sorted(
    {n for s, *_ in SCHEMES.values() for n in (*s.signature_headers, *s.timestamp_headers, *s.id_headers)}
    | {"Content-Type", "X-Twilio-Webhooks-Signature-Settings", "Plaid-Verification", "PAYPAL-AUTH-ALGO",
       "PAYPAL-CERT-URL", "X-Signature-Timestamp"}
)  # fmt: skip
PIECES = st.one_of(
    st.sampled_from(
        ["t=", "v1=", "v0=", "v1,", "v1a,", "v2,", "h1=", "ts=", "sha256=", "sha1=", "v0:", "=", ",", ";",
         " ", ".", "Basic ", "Bearer ", "algorithm=HMAC_SHA256", "algorithm=", "-", "\x00", "\xff", "é",
         "SHA256withRSA"]
    ),
    st.binary(min_size=1, max_size=64).map(bytes.hex),
    st.binary(min_size=1, max_size=70).map(lambda b: base64.b64encode(b).decode()),
    st.integers().map(str),
    st.text(max_size=12),
)  # fmt: skip
VALUES = st.one_of(
    st.lists(PIECES, max_size=10).map("".join),
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),  # what an ASGI server hands over
    st.just(""),
    st.integers(MAX_HEADER - 2, MAX_HEADER + 2).map(lambda n: "v1=" + "a" * n),
    st.integers(1, 5000).map(lambda n: "9" * n),  # huge timestamps
)
BODIES = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(
        st.sampled_from(["timestamp", "token", "signature", "webhookTimestamp"]),
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.floats(), VALUES, st.lists(st.integers(), max_size=2)
        ),
    ).map(lambda d: json.dumps({"signature": d, **d}).encode()),
    st.lists(st.tuples(st.sampled_from(["timestamp", "token", "signature", "Body"]), VALUES), max_size=4).map(
        lambda pairs: urlencode(pairs).encode()
    ),
)
URLS = st.one_of(
    st.just(URL),
    st.text(max_size=30).map(lambda host: f"https://{host}/hooks/x"),
    st.tuples(st.text(max_size=10), st.text(max_size=20)).map(lambda p: f"https://{p[0]}/hooks?{p[1]}"),
)


@props(20)
@given(
    extra=st.lists(st.tuples(st.one_of(st.sampled_from(NAMES), st.text(max_size=8)), VALUES), max_size=6),
    first=st.booleans(),
    body=BODIES,
    url=URLS,
    now=TIMES,
)
@example(
    extra=[("X-Twilio-Signature", "A" * 27 + "=")],
    first=True,
    body=b"",
    url="https://[/hooks/x",
    now=1_700_000_000,
)
@pytest.mark.parametrize("name", SCHEMES)
def test_no_header_body_or_url_raises_anything_but_a_signature_error(
    name: str, extra: list[tuple[str, str]], first: bool, body: bytes, url: str, now: int
) -> None:
    scheme, secrets, material, remote = SCHEMES[name]
    row = ROWS.get(name)
    genuine = list(_signed(row, row.keys(bytes(32))[1], body, now).headers.pairs) if row else []
    headers = extra + genuine if first else genuine + extra
    request = Inbound("POST", url, Headers(headers), body)
    keys = [Secret(s) for s in secrets]
    try:
        verdict = verify(
            scheme, keys, request, now=now, tolerance=scheme.tolerance, material=material, remote=remote
        )
    except SignatureError as exc:
        assert re.fullmatch(r"[a-z_]+", exc.reason), exc.reason
        assert not any(s in str(exc) for s in secrets)
    else:
        assert verdict.scheme == scheme.name


@pytest.mark.parametrize("name", ["twilio", "square"])
def test_a_url_that_cannot_be_parsed_is_a_bad_signature(name: str) -> None:
    # The URL comes from the Host header when no public_url is set: anyone can make it `https://[`.
    row = ROWS[name]
    secret, signer = row.keys(bytes(32))
    request = _signed(row, signer, b"", 1_700_000_000)
    hostile = Inbound("POST", "https://[/hooks/x", request.headers, request.body)
    with pytest.raises(SignatureError) as info:
        _check(row, [secret], hostile, 1_700_000_000)
    assert (info.value.reason, info.value.detail) == (
        "bad_signature",
        f"{name} signs the URL it called, and 'https://[/hooks/x' is not a valid URL",
    )

"""Public-key signatures: Discord, SendGrid and PayPal, judged by the providers' vectors and SDKs."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from discord_interactions import verify_key
from sendgrid import EventWebhook

from gateway.errors import SignatureError
from gateway.model import Headers
from gateway.signatures.asymmetric import (
    discord_key_problem,
    paypal_cert_url_allowed,
    sendgrid_key_problem,
    verify_discord,
    verify_paypal,
    verify_sendgrid,
)
from tests.support.keys import (
    PAYPAL_BODY,
    PAYPAL_NOW,
    SG_BODY,
    SG_KEY,
    SG_SIGNATURE,
    SG_TIMESTAMP,
    WEBHOOK_ID,
    Pki,
    certificate,
    make_pki,
    paypal_headers,
    pem,
)


def reason(exc: pytest.ExceptionInfo[SignatureError]) -> str:
    return exc.value.reason


# -- Discord ------------------------------------------------------------------------------------------------

DISCORD_BODY = b'{"type":1,"id":"1","application_id":"2"}'


@pytest.fixture(scope="module")
def discord_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def hex_public(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def discord_headers(key: Ed25519PrivateKey, body: bytes, ts: str = "1700000000") -> Headers:
    signature = key.sign(ts.encode() + body).hex()
    return Headers([("X-Signature-Ed25519", signature), ("X-Signature-Timestamp", ts)])


def test_discord_signature_accepted_by_the_official_library_verifies(discord_key: Ed25519PrivateKey) -> None:
    headers = discord_headers(discord_key, DISCORD_BODY)
    public = hex_public(discord_key)
    assert verify_key(DISCORD_BODY, headers["X-Signature-Ed25519"], "1700000000", public)
    assert verify_discord([public], headers, DISCORD_BODY) == 1700000000


def test_discord_second_key_matches_during_rotation(discord_key: Ed25519PrivateKey) -> None:
    old = hex_public(Ed25519PrivateKey.generate())
    assert verify_discord(
        [old, hex_public(discord_key)], discord_headers(discord_key, DISCORD_BODY), DISCORD_BODY
    )


def test_discord_tampered_body_is_rejected_as_the_official_library_does(
    discord_key: Ed25519PrivateKey,
) -> None:
    headers = discord_headers(discord_key, DISCORD_BODY)
    tampered = DISCORD_BODY.replace(b"1", b"9")
    assert not verify_key(tampered, headers["X-Signature-Ed25519"], "1700000000", hex_public(discord_key))
    with pytest.raises(SignatureError) as exc:
        verify_discord([hex_public(discord_key)], headers, tampered)
    assert exc.value.reason == "bad_signature"
    assert exc.value.detail == (
        "the signature in X-Signature-Ed25519 does not match the configured public key: wrong key, "
        "or the body was altered"
    )


def test_discord_wrong_key_is_rejected(discord_key: Ed25519PrivateKey) -> None:
    with pytest.raises(SignatureError) as exc:
        verify_discord(
            [hex_public(Ed25519PrivateKey.generate())],
            discord_headers(discord_key, DISCORD_BODY),
            DISCORD_BODY,
        )
    assert reason(exc) == "bad_signature"


def test_discord_timestamp_is_signed(discord_key: Ed25519PrivateKey) -> None:
    headers = discord_headers(discord_key, DISCORD_BODY)
    moved = Headers(
        [("X-Signature-Ed25519", headers["X-Signature-Ed25519"]), ("X-Signature-Timestamp", "1700000001")]
    )
    with pytest.raises(SignatureError) as exc:
        verify_discord([hex_public(discord_key)], moved, DISCORD_BODY)
    assert reason(exc) == "bad_signature"


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("X-Signature-Timestamp", "1700000000")], ("missing_signature", "no X-Signature-Ed25519 header")),
        ([("X-Signature-Ed25519", "ab" * 64)], ("missing_timestamp", "no X-Signature-Timestamp header")),
        (
            [("X-Signature-Ed25519", "zz" * 64), ("X-Signature-Timestamp", "1700000000")],
            ("malformed_signature", "X-Signature-Ed25519 should be 128 hex digits"),
        ),
        (
            [("X-Signature-Ed25519", "ab" * 63), ("X-Signature-Timestamp", "1700000000")],
            ("malformed_signature", "X-Signature-Ed25519 should be 128 hex digits"),
        ),
        (
            [("X-Signature-Ed25519", "ab" * 64), ("X-Signature-Timestamp", "soon")],
            ("malformed_timestamp", "X-Signature-Timestamp should be integer seconds, got 'soon'"),
        ),
    ],
)
def test_discord_malformed_headers_are_rejected(
    discord_key: Ed25519PrivateKey, pairs: list[tuple[str, str]], expected: tuple[str, str]
) -> None:
    with pytest.raises(SignatureError) as exc:
        verify_discord([hex_public(discord_key)], Headers(pairs), DISCORD_BODY)
    assert (exc.value.reason, exc.value.detail) == expected


def test_discord_unusable_keys_are_reported_without_showing_them(discord_key: Ed25519PrivateKey) -> None:
    headers = discord_headers(discord_key, DISCORD_BODY)
    with pytest.raises(SignatureError) as exc:
        verify_discord(["not-hex-secretish"], headers, DISCORD_BODY)
    assert exc.value.reason == "no_secret"
    assert "secretish" not in str(exc.value)
    assert (
        discord_key_problem("abcd")
        == "a Discord public key must be 64 hex digits (the application's PUBLIC KEY)"
    )
    assert discord_key_problem(hex_public(discord_key)) is None
    with pytest.raises(SignatureError) as none:
        verify_discord([], headers, DISCORD_BODY)
    assert none.value.detail == "no Discord public key is configured"


# -- SendGrid -----------------------------------------------------------------------------------------------

SG_OTHER_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuF"
    "Db/R1NGe1OPzpA=="
)


def sg_headers(signature: str = SG_SIGNATURE, timestamp: str = SG_TIMESTAMP) -> Headers:
    return Headers(
        [
            ("X-Twilio-Email-Event-Webhook-Signature", signature),
            ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp),
        ]
    )


def test_sendgrid_published_vector_verifies() -> None:
    assert verify_sendgrid([SG_KEY], sg_headers(), SG_BODY) == 1600112502


def test_sendgrid_signature_made_here_is_accepted_by_the_official_sdk() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = base64.b64encode(der).decode()
    body = b'[{"event":"delivered"}]\r\n'
    signature = base64.b64encode(private.sign(b"1700000000" + body, ec.ECDSA(hashes.SHA256()))).decode()
    assert EventWebhook(key).verify_signature(body.decode(), signature, "1700000000")
    assert verify_sendgrid([SG_OTHER_KEY, key], sg_headers(signature, "1700000000"), body) == 1700000000


def test_sendgrid_tampered_body_is_rejected_as_the_official_sdk_does() -> None:
    tampered = SG_BODY.replace(b"dropped", b"delivered")
    assert not EventWebhook(SG_KEY).verify_signature(tampered.decode(), SG_SIGNATURE, SG_TIMESTAMP)
    with pytest.raises(SignatureError) as exc:
        verify_sendgrid([SG_KEY], sg_headers(), tampered)
    assert exc.value.reason == "bad_signature"
    assert exc.value.detail == (
        "the signature in X-Twilio-Email-Event-Webhook-Signature does not match the configured "
        "verification key: wrong key, or the body was altered"
    )


def test_sendgrid_body_without_its_trailing_crlf_is_rejected() -> None:
    with pytest.raises(SignatureError) as exc:
        verify_sendgrid([SG_KEY], sg_headers(), SG_BODY.rstrip())
    assert reason(exc) == "bad_signature"


def test_sendgrid_wrong_key_is_rejected() -> None:
    with pytest.raises(SignatureError) as exc:
        verify_sendgrid([SG_OTHER_KEY], sg_headers(), SG_BODY)
    assert exc.value.detail.startswith(
        "the signature in X-Twilio-Email-Event-Webhook-Signature does not match"
    )


def test_sendgrid_other_timestamp_is_rejected() -> None:
    with pytest.raises(SignatureError) as exc:
        verify_sendgrid([SG_KEY], sg_headers(timestamp="1600112503"), SG_BODY)
    assert reason(exc) == "bad_signature"


def test_sendgrid_base64_that_is_not_der_is_a_bad_signature() -> None:
    with pytest.raises(SignatureError) as exc:
        verify_sendgrid([SG_KEY], sg_headers(signature=base64.b64encode(b"x" * 70).decode()), SG_BODY)
    assert reason(exc) == "bad_signature"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            Headers([("X-Twilio-Email-Event-Webhook-Timestamp", SG_TIMESTAMP)]),
            ("missing_signature", "no X-Twilio-Email-Event-Webhook-Signature header"),
        ),
        (
            Headers([("X-Twilio-Email-Event-Webhook-Signature", SG_SIGNATURE)]),
            ("missing_timestamp", "no X-Twilio-Email-Event-Webhook-Timestamp header"),
        ),
        (
            sg_headers(signature="not base64!"),
            ("malformed_signature", "X-Twilio-Email-Event-Webhook-Signature should be base64"),
        ),
        (
            sg_headers(timestamp="timestamp"),
            (
                "malformed_timestamp",
                "X-Twilio-Email-Event-Webhook-Timestamp should be integer seconds, got 'timestamp'",
            ),
        ),
    ],
)
def test_sendgrid_malformed_headers_are_rejected(headers: Headers, expected: tuple[str, str]) -> None:
    with pytest.raises(SignatureError) as exc:
        verify_sendgrid([SG_KEY], headers, SG_BODY)
    assert (exc.value.reason, exc.value.detail) == expected


def test_sendgrid_key_that_is_not_p256_is_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    der = p384.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    shape = "a SendGrid verification key must be base64 of a DER P-256 public key"
    assert sendgrid_key_problem(base64.b64encode(der).decode()) == shape
    assert sendgrid_key_problem("bm90IGEga2V5") == shape
    assert sendgrid_key_problem(SG_KEY) is None
    with pytest.raises(SignatureError) as exc:
        verify_sendgrid(["bm90IGEga2V5"], sg_headers(), SG_BODY)
    assert exc.value.detail == f"no configured SendGrid verification key is usable (key 0: {shape})"


# -- PayPal -------------------------------------------------------------------------------------------------


def check_paypal(pki: Pki, headers: Headers, body: bytes = PAYPAL_BODY, **kw: object) -> None:
    args: dict[str, object] = {
        "webhook_id": WEBHOOK_ID,
        "certificate_pem": pki.chain_pem,
        "trust_anchors_pem": [pki.anchor_pem],
        "now": PAYPAL_NOW.timestamp(),
    }
    args.update(kw)
    verify_paypal(headers, body, **args)  # type: ignore[arg-type]


def test_paypal_signature_with_a_chained_certificate_verifies(pki: Pki) -> None:
    check_paypal(pki, paypal_headers(pki.leaf_key, PAYPAL_BODY))


def test_paypal_tampered_body_is_rejected(pki: Pki) -> None:
    with pytest.raises(SignatureError) as exc:
        check_paypal(pki, paypal_headers(pki.leaf_key, PAYPAL_BODY), PAYPAL_BODY + b" ")
    assert exc.value.reason == "bad_signature"
    assert exc.value.detail == (
        "the signature in PAYPAL-TRANSMISSION-SIG does not match PayPal's certificate: wrong webhook id, "
        "or the body was altered"
    )


def test_paypal_signature_for_another_webhook_id_is_rejected(pki: Pki) -> None:
    with pytest.raises(SignatureError) as exc:
        check_paypal(pki, paypal_headers(pki.leaf_key, PAYPAL_BODY, webhook_id="OTHER"))
    assert reason(exc) == "bad_signature"


def test_paypal_certificate_from_another_ca_is_untrusted(pki: Pki) -> None:
    forged = make_pki()  # right name, own CA
    with pytest.raises(SignatureError) as exc:
        check_paypal(pki, paypal_headers(forged.leaf_key, PAYPAL_BODY), certificate_pem=forged.chain_pem)
    assert reason(exc) == "untrusted_certificate"


def test_paypal_self_signed_certificate_is_untrusted(pki: Pki) -> None:
    key = rsa.generate_private_key(65537, 2048)
    cn = "messageverificationcerts.paypal.com"
    self_signed = pem(certificate(cn, key, cn, key, ca=False))
    with pytest.raises(SignatureError) as exc:
        check_paypal(pki, paypal_headers(key, PAYPAL_BODY), certificate_pem=self_signed)
    assert reason(exc) == "untrusted_certificate"


def test_paypal_expired_certificate_is_untrusted(pki: Pki) -> None:
    with pytest.raises(SignatureError) as exc:
        check_paypal(
            pki, paypal_headers(pki.leaf_key, PAYPAL_BODY), now=(PAYPAL_NOW + timedelta(days=31)).timestamp()
        )
    assert reason(exc) == "untrusted_certificate"


def test_paypal_certificate_for_another_name_is_untrusted() -> None:
    other = make_pki(cn="attacker.example")
    with pytest.raises(SignatureError) as exc:
        check_paypal(other, paypal_headers(other.leaf_key, PAYPAL_BODY))
    assert exc.value.reason == "untrusted_certificate"
    assert exc.value.detail == (
        "the certificate is issued to ['attacker.example'], not to "
        "['messageverificationcerts.paypal.com', 'messageverificationcerts.sandbox.paypal.com']"
    )


def test_paypal_certificate_that_is_not_pem_is_untrusted(pki: Pki) -> None:
    with pytest.raises(SignatureError) as exc:
        check_paypal(pki, paypal_headers(pki.leaf_key, PAYPAL_BODY), certificate_pem=b"<html>")
    assert (exc.value.reason, exc.value.detail) == (
        "untrusted_certificate",
        "the PayPal certificate is not PEM X.509",
    )


def test_paypal_other_algorithm_is_refused(pki: Pki) -> None:
    with pytest.raises(SignatureError) as exc:
        check_paypal(pki, paypal_headers(pki.leaf_key, PAYPAL_BODY, algo="SHA1withRSA"))
    assert exc.value.detail == "PAYPAL-AUTH-ALGO is 'SHA1withRSA', not SHA256withRSA"


def test_paypal_missing_signature_is_rejected(pki: Pki) -> None:
    headers = Headers(
        [(k, v) for k, v in paypal_headers(pki.leaf_key, PAYPAL_BODY).pairs if k != "paypal-transmission-sig"]
    )
    with pytest.raises(SignatureError) as exc:
        check_paypal(pki, headers)
    assert (exc.value.reason, exc.value.detail) == ("missing_signature", "no PAYPAL-TRANSMISSION-SIG header")


@pytest.mark.parametrize(
    "url",
    [
        "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
        "https://api-m.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-1",
        "https://api-m.sandbox.paypal.com:443/v1/notifications/certs/CERT-1",
    ],
)
def test_paypal_cert_urls_on_paypal_hosts_are_allowed(url: str) -> None:
    assert paypal_cert_url_allowed(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
        "https://evil.example/v1/notifications/certs/CERT-1",
        "https://api.paypal.com@evil.example/v1/notifications/certs/CERT-1",
        "https://user@api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
        "https://api.paypal.com/v1/oauth2/token",
        "https://api.paypal.com:notaport/v1/notifications/certs/CERT-1",
        "https://www.paypal.com/v1/notifications/certs/CERT-1",
    ],
)
def test_paypal_cert_urls_off_paypal_hosts_are_refused(url: str) -> None:
    assert not paypal_cert_url_allowed(url)

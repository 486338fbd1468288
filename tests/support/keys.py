"""Keys and key material the tests share: SendGrid's and Plaid's published vectors, a throwaway PayPal PKI
with the signature PayPal's documented algorithm makes, JWKS documents, and JWTs built by hand. No I/O.

The hand-made signatures here are independent of gateway.signatures.signing on purpose: they judge the
verifiers from outside (PayPal publishes no SDK, and an attacker's token is one PyJWT would refuse to make).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from gateway.model import Headers

# -- SendGrid ------------------------------------------------------------------------------------------------

# sendgrid/sendgrid-python test/unit/test_eventwebhook.py: the published vector.
SG_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eN"
    "Ec6wEA3F+g=="
)
SG_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
)
SG_TIMESTAMP = "1600112502"
SG_BODY = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
).encode()


# -- PayPal: a root, an intermediate and a leaf made for the test; the leaf signs as PayPal does -------------

PAYPAL_NOW = datetime(2025, 6, 1, tzinfo=UTC)
WEBHOOK_ID = "8PT597110X687430LKGECATA"
PAYPAL_BODY = b'{"id":"WH-1","event_type":"PAYMENT.CAPTURE.COMPLETED"}'


@dataclass(frozen=True)
class Pki:
    anchor_pem: bytes
    chain_pem: bytes  # leaf, then the intermediate
    leaf_key: rsa.RSAPrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: str,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool,
    not_after: datetime = PAYPAL_NOW + timedelta(days=30),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(PAYPAL_NOW - timedelta(days=30))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if subject != issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def make_pki(cn: str = "messageverificationcerts.paypal.com", leaf_not_after: datetime | None = None) -> Pki:
    root_key, mid_key, leaf_key = (rsa.generate_private_key(65537, 2048) for _ in range(3))
    root = certificate("Test Root CA", root_key, "Test Root CA", root_key, ca=True)
    mid = certificate("Test Intermediate CA", mid_key, "Test Root CA", root_key, ca=True)
    leaf = certificate(
        cn,
        leaf_key,
        "Test Intermediate CA",
        mid_key,
        ca=False,
        not_after=leaf_not_after or PAYPAL_NOW + timedelta(days=30),
    )
    return Pki(pem(root), pem(leaf, mid), leaf_key)


def paypal_headers(
    key: rsa.RSAPrivateKey, body: bytes, webhook_id: str = WEBHOOK_ID, algo: str = "SHA256withRSA"
) -> Headers:
    tid, ttime = "69cd13f0-d67a-11e5-baa3-778b53f4ae55", "2025-06-01T00:00:00Z"
    message = f"{tid}|{ttime}|{webhook_id}|{zlib.crc32(body)}".encode()
    signature = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    return Headers(
        [
            ("PAYPAL-TRANSMISSION-ID", tid),
            ("PAYPAL-TRANSMISSION-TIME", ttime),
            ("PAYPAL-TRANSMISSION-SIG", signature),
            ("PAYPAL-AUTH-ALGO", algo),
            (
                "PAYPAL-CERT-URL",
                "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
            ),
        ]
    )


# -- Plaid: a genuine sandbox delivery (Stack Overflow question 62117400) ------------------------------------

PLAID_TOKEN = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6IjZjNTUxNmUxLTkyZGMtNDc5ZS1hOGZmLTVhNTE5OTJlMDAwMSIsInR5cCI6IkpXVCJ9."
    "eyJpYXQiOjE1OTA4ODcwMDEsInJlcXVlc3RfYm9keV9zaGEyNTYiOiJiNjNhMDdiNTQ3YjAwZjk5MjU0N2Y2YmJjOGQ5YWNjNjFh"
    "OGNjZWUxMzhiYzgyZjQ0YTZiYWEwOTY4M2E1ZDBmIn0."
    "OOKvIihgqCj7Qrb2bmz7T3t7uK-0JyjiEqL2s1kWeJBM4MMmjaHKK8GmU_z91QolBWMzvPgs718EElY-rE3cwQ"
)
PLAID_KID = "6c5516e1-92dc-479e-a8ff-5a51992e0001"
PLAID_JWK = {
    "alg": "ES256",
    "created_at": 1560466143,
    "crv": "P-256",
    "expired_at": None,
    "kid": PLAID_KID,
    "kty": "EC",
    "use": "sig",
    "x": "35lvC8uz2QrWpQJ3TUH8t9o9DURMp7ydU518RKDl20k",
    "y": "I8BuXB2bvxelzJAd7OKhd-ZwjCst05Fx47Mb_0ugros",
}


# Plaid pretty-prints with 2-space indents, no trailing newline; the hash covers exactly these bytes.
PLAID_BODY = b"""{
  "error": null,
  "item_id": "yxQbxDjnD8hr69pKbQpbcKeVn3GL9QuyA7NV3",
  "new_transactions": 390,
  "webhook_code": "HISTORICAL_UPDATE",
  "webhook_type": "TRANSACTIONS"
}"""
PLAID_IAT = 1590887001


# -- JWTs and JWKS -------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_by_hand(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """What an attacker builds: PyJWT refuses to sign with a PEM as an HMAC secret."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def jwks(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**jwk, "kid": kid, "alg": "RS256", "use": "sig"}]}

"""Handshakes: Slack's url_verification and Zoom's endpoint.url_validation get their exact replies."""

from __future__ import annotations

import hashlib
import hmac
import json

from gateway.model import Headers, Inbound, Payload, Secret
from gateway.signatures.handshake import Reply, respond
from gateway.signatures.schemes import PRESETS

REQUEST = Inbound("POST", "https://gw.example/hooks/x", Headers(), b"")


def test_slack_url_verification_echoes_the_challenge_as_text() -> None:
    payload = Payload(
        "json",
        {
            "token": "t",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        },
    )
    assert respond(PRESETS["slack"], [Secret("s")], REQUEST, payload) == Reply(
        200, b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "text/plain"
    )


def test_slack_ssl_check_of_a_slash_command_is_answered_empty() -> None:
    payload = Payload("form", {"ssl_check": "1", "token": "t"})
    assert respond(PRESETS["slack"], [Secret("s")], REQUEST, payload) == Reply(200, b"", "text/plain")


def test_ordinary_slack_deliveries_get_no_handshake_reply() -> None:
    for payload in (
        Payload("json", {"type": "event_callback", "event": {"type": "app_mention"}}),
        Payload("json", {"type": "url_verification"}),  # no challenge to echo
        Payload("form", {"command": "/deploy"}),
        Payload("raw", "url_verification"),
    ):
        assert respond(PRESETS["slack"], [Secret("s")], REQUEST, payload) is None


def test_zoom_url_validation_returns_the_plain_and_encrypted_token() -> None:
    payload = Payload(
        "json",
        {
            "event": "endpoint.url_validation",
            "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"},
            "event_ts": 1654503849680,
        },
    )
    reply = respond(PRESETS["zoom"], [Secret("old"), Secret("zoom-secret")], REQUEST, payload, key_index=1)
    expected = hmac.new(b"zoom-secret", b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest()
    assert reply == Reply(
        200,
        b'{"plainToken":"qgg8vlvZRS6UYooatFL8Aw","encryptedToken":"' + expected.encode() + b'"}',
        "application/json",
    )
    assert json.loads(reply.body)["encryptedToken"] == expected


def test_zoom_ordinary_events_and_other_schemes_get_no_reply() -> None:
    event = Payload("json", {"event": "meeting.started", "payload": {}})
    assert respond(PRESETS["zoom"], [Secret("z")], REQUEST, event) is None
    broken = Payload("json", {"event": "endpoint.url_validation", "payload": {"plainToken": 5}})
    assert respond(PRESETS["zoom"], [Secret("z")], REQUEST, broken) is None
    challenge = Payload("json", {"type": "url_verification", "challenge": "c"})
    assert respond(PRESETS["github"], [Secret("g")], REQUEST, challenge) is None

"""Admission: payload parsing, event type and dedupe key extraction, runs per matched route."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from gateway.model import Headers, Inbound, Payload, Verdict
from gateway.routes.ingest import admit, resolve_options
from gateway.routes.payload import parse_payload

NOW = 1_700_000_000.0
VERDICT = Verdict(verified=True, scheme="github")


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", b'{"a": [1, 2]}', Payload("json", {"a": [1, 2]})),
        ("application/json; charset=utf-8", b"[1]", Payload("json", [1])),
        ("application/vnd.api+json", b'{"x": null}', Payload("json", {"x": None})),
        (None, b'{"sniffed": true}', Payload("json", {"sniffed": True})),
        (
            "application/x-www-form-urlencoded",
            b"a=1&b=2&b=3&c=",
            Payload("form", {"a": "1", "b": ["2", "3"], "c": ""}),
        ),
        ("text/plain", b"hello", Payload("raw", "hello")),
        ("application/json", b"{not json", Payload("raw", "{not json")),
        ("application/json", b"\xff\xfe", Payload("raw", "\ufffd\ufffd")),
        ("application/x-www-form-urlencoded", b"a=\xff", Payload("raw", "a=\ufffd")),
    ],
)
def test_payloads_are_parsed_by_content_type(
    content_type: str | None, body: bytes, expected: Payload
) -> None:
    assert parse_payload(content_type, body) == expected


def test_deeply_nested_json_is_kept_raw_not_crashed() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    assert parse_payload("application/json", body).kind == "raw"


def push(ref: str = "refs/heads/main", headers: dict[str, str] | None = None) -> Inbound:
    body = json.dumps({"ref": ref, "after": "abc", "repository": {"full_name": "o/r"}}).encode()
    pairs = {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": "d-1",
        "authorization": "Bearer hunter2",
        **(headers or {}),
    }
    return Inbound("POST", "http://gw/hooks/github", Headers(pairs.items()), body, remote_addr="10.0.0.1")


def test_a_push_to_main_creates_one_run_per_matched_route(load_config: Callable[..., Any]) -> None:
    config = load_config()
    admission = admit(config, config.sources["github"], push(), VERDICT, NOW)
    event = admission.event
    assert (event.event_type, event.dedupe_key, event.status) == ("push", "d-1", "routed")
    assert event.verification == "verified:github"
    assert [(r.route_id, r.task_id, r.status) for r in admission.runs] == [
        ("deploy-on-push", "deploy-preview", "queued"),
        ("audit-pushes", "record-payment", "queued"),
    ]
    assert admission.runs[0].input == {"repo": "o/r", "sha": "abc"}
    assert admission.runs[1].input == event.payload.data  # no input mapping → the parsed body
    assert all(r.event_id == event.id and r.created_at == NOW for r in admission.runs)


def test_credentials_in_headers_are_redacted_before_storage(load_config: Callable[..., Any]) -> None:
    config = load_config()
    event = admit(config, config.sources["github"], push(), VERDICT, NOW).event
    assert event.headers["authorization"] == "[redacted]"
    assert event.headers["x-github-delivery"] == "d-1"


def test_an_event_no_route_matches_is_unrouted(load_config: Callable[..., Any]) -> None:
    config = load_config()
    request = push(headers={"x-github-event": "issues"})
    admission = admit(config, config.sources["github"], request, VERDICT, NOW)
    assert admission.runs == ()
    assert admission.event.status == "unrouted"


def test_a_missing_dedupe_key_is_none(load_config: Callable[..., Any]) -> None:
    config = load_config()
    request = Inbound("POST", "http://gw/hooks/stripe", Headers([("content-type", "text/plain")]), b"id=1")
    admission = admit(config, config.sources["stripe"], request, VERDICT, NOW)
    assert (admission.event.dedupe_key, admission.event.event_type) == (None, None)


def test_route_overrides_merge_over_task_defaults() -> None:
    defaults = {"retry": {"max_attempts": 3, "factor": 2.0}, "timeout": 600.0, "queue": "t", "priority": 0}
    merged = resolve_options(defaults, {"retry": {"max_attempts": 5}, "queue": "slow"})
    assert merged == {
        "retry": {"max_attempts": 5, "factor": 2.0},
        "timeout": 600.0,
        "queue": "slow",
        "priority": 0,
    }


def test_svix_headers_give_the_dedupe_key_of_a_standard_webhooks_source(
    load_config: Callable[..., Any],
) -> None:
    config = load_config()
    request = Inbound(
        "POST",
        "http://gw/hooks/billing",
        Headers([("svix-id", "msg_9"), ("content-type", "application/json")]),
        b'{"type": "a.b"}',
    )
    event = admit(config, config.sources["billing"], request, VERDICT, NOW).event
    assert (event.dedupe_key, event.event_type) == ("msg_9", "a.b")


def test_a_credential_header_mapped_into_input_arrives_redacted(load_config: Callable[..., Any]) -> None:
    routes = """
    tasks: [{module}]
    sources: {github: {verify: github, secret: s}}
    routes:
      - id: r
        source: github
        task: deploy-preview
        input: {auth: headers.Authorization, event: headers.X-GitHub-Event}
    """
    config = load_config(routes)
    [run] = admit(config, config.sources["github"], push(), VERDICT, NOW).runs
    assert run.input == {"auth": "[redacted]", "event": "push"}


def test_a_query_secret_is_redacted_even_when_a_hostile_host_makes_the_url_unparseable() -> None:
    from gateway.routes.ingest import redact_query

    query = (("token", "s3cret"), ("a", "1"))
    url, kept = redact_query("http://[/hooks/q?token=s3cret&a=1", query, ("token",))
    assert (url, kept) == ("http://[/hooks/q?token=%5Bredacted%5D&a=1", (("token", "[redacted]"), ("a", "1")))

"""`Authorization: Bearer <token>` senders (Alertmanager's webhook receiver, internal services) on the `token`
recipe exactly as docs/providers.md writes it: the right token is accepted, any other refused and recorded,
the header never stored, and `gateway check` says the body is not covered."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run
from tests.support.repo import REPO

# The routes.yaml lines of docs/providers.md's "Bearer tokens" section, character for character.
DOCUMENTED = """\
sources:
  alertmanager:
    verify: {scheme: token, header: Authorization}   # compared with the whole header value,
    secret: "Bearer ${ALERTMANAGER_TOKEN}"           # so "Bearer " is part of the secret
    event_type: body.status                          # firing | resolved
routes:
  - id: page-on-critical
    source: alertmanager
    event: firing
    when: {body.commonLabels.severity: critical}
    task: page-oncall
    input: {alert: body.commonLabels.alertname, summary: body.commonAnnotations.summary}
"""
ROUTES = "tasks: [{module}]\n" + DOCUMENTED
TASKS = """
from gateway import task

@task(id="page-oncall")
async def page_oncall(payload, ctx):
    return payload
"""
TOKEN = "Zr4o8vV0nBqJ3m0Hc5R2yT6wK1sXaP9dLfE7gUiNjQ"
ENV = {"ALERTMANAGER_TOKEN": TOKEN}
# What Alertmanager 0.25 posts (webhook payload version 4), trimmed to what the route reads and a little more.
ALERT = json.dumps(
    {
        "version": "4",
        "status": "firing",
        "receiver": "gateway",
        "groupKey": '{}:{alertname="DiskFull"}',
        "commonLabels": {"alertname": "DiskFull", "severity": "critical"},
        "commonAnnotations": {"summary": "/data is 95% full"},
        "alerts": [{"status": "firing", "labels": {"alertname": "DiskFull", "severity": "critical"}}],
    }
).encode()


def test_the_documented_lines_are_the_ones_tested() -> None:
    assert f"```yaml\n{DOCUMENTED}```" in (REPO / "docs" / "providers.md").read_text()


@pytest.fixture
async def client(
    load_config: Callable[..., Any], client_for: Callable[..., Any], open_store: Callable[..., Any]
) -> Any:
    store = await open_store()
    return await client_for(load_config(ROUTES, TASKS, ENV), store), store


async def test_the_right_bearer_token_is_accepted_and_never_stored(client: Any) -> None:
    http, store = client
    answer = await http.post(
        "/hooks/alertmanager",
        content=ALERT,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 202
    [run_] = answer.json()["runs"]
    assert run_["task"] == "page-oncall"
    event = await store.reads.get_event(answer.json()["event_id"])
    assert (event.event_type, event.verification) == ("firing", "verified:token")
    assert event.headers.get_all("authorization") == ["[redacted]"]
    stored = await store.reads.get_run(run_["id"])
    assert stored.input == {"alert": "DiskFull", "summary": "/data is 95% full"}


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("Bearer not-the-token", "bad_signature"),
        (TOKEN, "bad_signature"),  # the bare token: the whole header value is compared
        (f"bearer {TOKEN}", "bad_signature"),  # compared exactly, the scheme's case too
        (f"Basic {TOKEN}", "bad_signature"),
        (None, "missing_signature"),
    ],
)
async def test_any_other_authorization_is_refused_and_recorded(
    client: Any, authorization: str | None, reason: str
) -> None:
    http, store = client
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    answer = await http.post("/hooks/alertmanager", content=ALERT, headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (401, reason)
    [rejection] = await store.reads.list_rejections(source="alertmanager")
    assert rejection.reason == reason
    assert TOKEN not in rejection.detail
    assert await store.reads.events_page() == []


def test_gateway_sign_prints_the_header_alertmanager_sends(write_routes: Callable[..., Path]) -> None:
    routes = write_routes(ROUTES, TASKS)
    body = routes.parent / "alert.json"
    body.write_bytes(ALERT)
    code, out, _ = run("sign", "alertmanager", "--routes", str(routes), "--body", str(body), env=ENV)
    assert code == 0
    assert out.splitlines() == [f"Authorization: Bearer {TOKEN}", "Content-Type: application/json"]


def test_gateway_check_says_the_token_does_not_cover_the_body(write_routes: Callable[..., Path]) -> None:
    routes = write_routes(ROUTES, TASKS)
    code, out, err = run("check", "--routes", str(routes), env=ENV)
    assert code == 0
    assert out.endswith("OK: 1 source(s), 1 route(s), 1 task(s)\n")
    assert err == (
        "WARNING: routes.yaml: sources.alertmanager: verify: token does not sign the body "
        "(it proves who sent a delivery, not that its content is unchanged)\n"
    )

"""POST /api/rejections/{id}/replay on the real app: a rejected delivery verified again once its secret is
fixed (202 and its event, once), a forgery or a request recovered already (409 saying why), an unknown id
(404), the scope, and the listing that says which rejections can be replayed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.model import Secret
from gateway.records.service import Service
from gateway.web.api import create_api
from gateway.web.auth import AdminKey
from tests.support.admin import SECRET, bearer, token
from tests.support.clock import NOW, Clock
from tests.support.deliveries import PUSH, github_headers

pytestmark = pytest.mark.both_stores

ROUTES = """
tasks: [{module}]
sources:
  github: {verify: github, secret: SECRET}
routes:
  - id: deploy-on-push
    source: github
    event: push
    task: deploy-preview
"""


async def test_a_rejection_replayed_through_the_api_is_stored_once_and_a_forgery_is_409(
    client_for: Callable[..., Any], load_config: Callable[..., Any], open_store: Callable[..., Any]
) -> None:
    store, clock = await open_store(), Clock()
    mistyped = await client_for(load_config(ROUTES.replace("SECRET", "gh-old")), store, clock=clock)
    for secret, delivery in (("gh-secret", "d-1"), ("forged", "d-2")):
        sent = await mistyped.post(
            "/hooks/github", content=PUSH, headers=github_headers(PUSH, secret, delivery)
        )
        assert sent.status_code == 401
    fixed = load_config(ROUTES.replace("SECRET", "gh-secret"))
    api = create_api(Service(store, fixed, clock=clock), AdminKey("HS256", Secret(SECRET)), clock=clock)
    client = await client_for(fixed, store, clock=clock, api=api)
    auth = bearer(token())

    listed = (await client.get("/api/rejections", headers=auth)).json()["data"]
    forged, genuine = listed  # newest first
    assert genuine["replayable"] and genuine["kept_bytes"] > len(PUSH) and genuine["dropped"] is None

    replayed = await client.post(f"/api/rejections/{genuine['id']}/replay", headers=auth)
    assert replayed.status_code == 202, replayed.text
    answer = replayed.json()
    assert (answer["rejection_id"], answer["outcome"], [r["task"] for r in answer["runs"]]) == (
        genuine["id"],
        "stored",
        ["deploy-preview"],
    )
    event = (await client.get(f"/api/events/{answer['event_id']}", headers=auth)).json()
    assert (event["dedupe_key"], event["verification"]) == ("d-1", "verified:github")

    again = await client.post(f"/api/rejections/{genuine['id']}/replay", headers=auth)
    assert (again.status_code, again.json()["error"]) == (409, "conflict")
    assert (
        f"recovered already, at 2027-01-15T08:00:00.000Z, as {answer['event_id']}" in again.json()["detail"]
    )
    refused = await client.post(f"/api/rejections/{forged['id']}/replay", headers=auth)
    assert (refused.status_code, refused.json()["error"]) == (409, "conflict")
    assert refused.json()["detail"].startswith(
        f"rejection {forged['id']} still fails verification: bad_signature"
    )
    for missing in ("999", "abc", "1e3"):
        gone = await client.post(f"/api/rejections/{missing}/replay", headers=auth)
        assert (gone.status_code, gone.json()["error"]) == (404, "not_found"), missing
    read_only = await client.post(f"/api/rejections/{forged['id']}/replay", headers=bearer(token(("read",))))
    assert read_only.status_code == 403
    shown = {r["id"]: r for r in (await client.get("/api/rejections", headers=auth)).json()["data"]}
    assert (shown[genuine["id"]]["recovered_as"], shown[genuine["id"]]["recovered_at"]) == (
        answer["event_id"],
        "2027-01-15T08:00:00.000Z",
    )
    assert clock() == NOW

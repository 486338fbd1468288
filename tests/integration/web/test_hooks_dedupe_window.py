"""`dedupe_window:` on the real app: a delivery whose key was seen within the window is a duplicate (200, the
original's id); past the window the same key is a new event with its own runs. Without one, as before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.clock import HOUR, Clock
from tests.support.deliveries import PUSH, github_headers

ROUTES = """
tasks: [{module}]
sources:
  github: {verify: github, secret: gh-secret, WINDOW}
routes:
  - id: deploy-on-push
    source: github
    event: push
    task: deploy-preview
"""


async def test_a_key_past_the_window_is_a_new_event_and_within_it_a_duplicate(
    client_for: Callable[..., Any], load_config: Callable[..., Any]
) -> None:
    clock = Clock()
    client = await client_for(load_config(ROUTES.replace("WINDOW", "dedupe_window: 1h")), clock=clock)
    first = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="d-1"))
    clock.advance(HOUR - 1)
    retry = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="d-1"))
    clock.advance(2)
    later = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="d-1"))

    assert (first.status_code, retry.status_code, later.status_code) == (202, 200, 202)
    assert retry.json() == {"event_id": first.json()["event_id"], "runs": [], "duplicate": True}
    assert later.json()["event_id"] != first.json()["event_id"] and len(later.json()["runs"]) == 1


async def test_without_a_window_a_key_holds_as_long_as_the_event_is_kept(
    client_for: Callable[..., Any], load_config: Callable[..., Any]
) -> None:
    clock = Clock()
    client = await client_for(load_config(ROUTES.replace(", WINDOW", "")), clock=clock)
    first = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="d-1"))
    clock.advance(400 * 24 * HOUR)
    again = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="d-1"))
    assert (again.status_code, again.json()["event_id"]) == (200, first.json()["event_id"])

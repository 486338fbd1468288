"""Sample deliveries as EventViews, for the route tests (paths, match, mapping) and their properties."""

from __future__ import annotations

from typing import Any

from gateway.model import Headers
from gateway.routes.paths import EventView

PUSH = {
    "ref": "refs/heads/main",
    "after": "abc123",
    "forced": False,
    "size": 3,
    "ratio": 0.5,
    "note": None,
    "labels": ["bug", "ui", 1],
    "flags": [True],
    "repository": {"full_name": "acme/api", "private": True},
    "commits": [{"id": "c1", "tags": ["x"]}, {"id": "c2"}],
}


def view(
    body: Any = PUSH,
    *,
    headers: list[tuple[str, str]] | None = None,
    query: tuple[tuple[str, str], ...] = (("token", "t1"), ("page", "2"), ("token", "t2")),
    event_type: str | None = "push",
    source: str = "github",
) -> EventView:
    pairs = headers if headers is not None else [("X-GitHub-Event", "push"), ("X-Count", "5")]
    return EventView("evt_1", source, event_type, Headers(pairs), query, body)

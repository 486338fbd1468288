"""Records written straight into a real store, without the HTTP app: pushed events with their queued runs,
runs of a given task, deliveries admitted as the webhook endpoint admits them, and runs finished by a claim.
I/O: through the store it is given."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

from gateway.execution.tasks import Task
from gateway.model import (
    COMPLETED,
    QUEUED,
    AttemptEnd,
    Event,
    Headers,
    Inbound,
    Payload,
    Recorded,
    Rejection,
    Run,
    Verdict,
    new_id,
)
from gateway.routes.ingest import admit
from gateway.routes.load import Config
from gateway.store.sqlite.store import SQLiteStore
from tests.support.claims import claim_runs
from tests.support.clock import Clock

PUSH_PAYLOAD = {"ref": "refs/heads/main", "after": "abc123", "repository": {"full_name": "o/r"}}


def push_event(name: str, at: float, *, body: bytes | None = None, content_type: str | None = None) -> Event:
    raw = json.dumps(PUSH_PAYLOAD).encode() if body is None else body
    headers = [("X-GitHub-Event", "push")] + ([("Content-Type", content_type)] if content_type else [])
    return Event(
        id=f"evt_{name}",
        source="github",
        event_type="push",
        dedupe_key=None,
        status="routed",
        received_at=at,
        method="POST",
        url="https://hooks.example.com/hooks/github",
        headers=Headers(headers),
        query=(),
        body=raw,
        payload=Payload("json", PUSH_PAYLOAD),
        verification="verified:github",
    )


def queued_run(name: str, event: Event) -> Run:
    return Run(
        id=f"run_{name}",
        event_id=event.id,
        route_id="deploy-on-push",
        task_id="deploy-preview",
        input={"repo": "o/r", "sha": "abc123"},
        status=QUEUED,
        created_at=event.received_at,
    )


async def enqueue(
    store: SQLiteStore,
    clock: Clock,
    t: Task,
    payload: Any = None,
    *,
    key: str | None = None,
    options: dict[str, Any] | None = None,
) -> Run:
    now = clock()
    event = Event(
        id=new_id("evt", now),
        source="test",
        event_type="thing.happened",
        dedupe_key=None,
        status="routed",
        received_at=now,
        method="POST",
        url="http://gw/hooks/test",
        headers=Headers([("X-Trace", "abc")]),
        query=(),
        body=b"{}",
        payload=Payload("json", payload),
        verification="unverified",
    )
    merged = {**t.options(), **(options or {})}
    run = Run(
        id=new_id("run", now),
        event_id=event.id,
        route_id="r1",
        task_id=t.id,
        input=payload,
        status="queued",
        created_at=now,
        queue=merged["queue"],
        priority=merged["priority"],
        concurrency_key=key,
        options=merged,
    )
    await store.record(event, [run])
    return run


_deliveries = itertools.count()


async def deliver(
    store: SQLiteStore,
    config: Config,
    source: str = "github",
    payload: Any = None,
    *,
    at: float,
    event: str = "push",
) -> Recorded:
    """Admit and record a delivery as the webhook endpoint would (GitHub ones with event and delivery id)."""
    if payload is None:
        payload = {"ref": "refs/heads/main", "after": "abc"}
    headers = [("Content-Type", "application/json")]
    if source == "github":
        headers += [("X-GitHub-Event", event), ("X-GitHub-Delivery", f"delivery-{next(_deliveries)}")]
    request = Inbound(
        "POST", f"https://hooks.example.com/hooks/{source}", Headers(headers), json.dumps(payload).encode()
    )
    verdict = Verdict(source == "github", "github" if source == "github" else "none")
    admission = admit(config, config.sources[source], request, verdict, at)
    return await store.record(admission.event, admission.runs)


def plain_event(n: int, *, at: float, source: str = "open", body: bytes = b"{}") -> Event:
    """An event recorded without a route: the cheapest thing to fill a database with."""
    return Event(
        id=f"evt_{source}_{n:06d}",
        source=source,
        event_type=None,
        dedupe_key=None,
        status="unrouted",
        received_at=at,
        method="POST",
        url=f"https://hooks.example.com/hooks/{source}",
        headers=Headers([("Content-Type", "application/json")]),
        query=(),
        body=body,
        payload=Payload("json", json.loads(body)),
        verification="unverified",
    )


async def finish(store: SQLiteStore, run_ids: Sequence[str], *, at: float, outcome: str = COMPLETED) -> None:
    """Claim the runs and end their first attempt with ``outcome`` (completed or failed)."""
    wanted = set(run_ids)
    claims = await claim_runs(
        store.runs, now=at, limit=len(wanted), lease=30.0, accept=lambda run: run.id in wanted
    )
    assert {c.run.id for c in claims} == wanted
    error = None if outcome == COMPLETED else {"type": "RuntimeError", "message": "the API said 503"}
    for c in claims:
        await store.runs.finish_attempt(AttemptEnd(c.run.id, c.attempt, at, outcome, outcome, error=error))


def rejection(source: str, *, at: float, reason: str = "bad_signature") -> Rejection:
    """A delivery refused before it became an event, as intake records it (a 2-byte body, kept)."""
    return Rejection(source, reason, "no secret matched", at, "192.0.2.1", b"{}", 2)

"""The admin API over a real store: auth on every endpoint, paging (also while events arrive), bad input,
replay/rerun/trigger/bulk jobs creating linked records, exact bodies, and no secret in any answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway.model import Event, Headers, Run, RunFilter, Secret
from gateway.records.service import Service
from gateway.store.sqlite.store import SQLiteStore
from gateway.web.api import BODY_CAP, create_api
from gateway.web.auth import AdminKey
from tests.support.admin import SCOPES, SECRET, bearer, token
from tests.support.clock import NOW, Clock
from tests.support.records import push_event, queued_run

pytestmark = pytest.mark.both_stores

OTHER_SECRET = "Zb7nR2kW9qL4xT6yU1iO3pA8sD5fG0hJ2kM7nB4vC"


@dataclass
class Api:
    client: httpx.AsyncClient
    service: Service
    store: SQLiteStore
    clock: Clock
    woken: list[str]

    async def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", bearer(token()))
        if body is not None:
            kwargs["json"] = body
        return await self.client.request(method, f"/api{path}", **kwargs)

    async def seed(self) -> tuple[Event, Run]:
        """One pushed event with one queued run, an hour before NOW."""
        event = push_event("seed", NOW - 3600, content_type="application/json")
        run = queued_run("seed", event)
        await self.store.record(event, [run])
        return event, run


@pytest.fixture
async def make_api(
    load_config: Callable[..., Any], open_store: Callable[..., Any]
) -> AsyncIterator[Callable[..., Any]]:
    clients: list[httpx.AsyncClient] = []

    async def make() -> Api:
        store = await open_store()
        clock = Clock()
        service = Service(store, load_config(), clock=clock)
        woken: list[str] = []
        api = create_api(
            service, AdminKey("HS256", Secret(SECRET)), clock=clock, on_job=lambda: woken.append("job")
        )
        app = Starlette(routes=[Mount("/api", app=api)])
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")
        clients.append(client)
        return Api(client, service, store, clock, woken)

    yield make
    for client in clients:
        await client.aclose()


# -- authentication and scopes on every endpoint ---------------------------------------------------------

ENDPOINTS = [
    ("GET", "/events", "read", None, 200),
    ("GET", "/events/{event}", "read", None, 200),
    ("GET", "/events/{event}/body", "read", None, 200),
    ("POST", "/events/{event}/replay", "replay", None, 202),
    ("GET", "/runs", "read", None, 200),
    ("GET", "/runs/{run}", "read", None, 200),
    ("POST", "/runs/{run}/rerun", "replay", {}, 202),
    ("POST", "/runs/{run}/cancel", "replay", None, 200),
    ("GET", "/rejections", "read", None, 200),
    ("GET", "/stats", "read", None, 200),
    ("POST", "/replays", "replay", {"kind": "replay", "filter": {}, "dry_run": True}, 200),
    ("GET", "/jobs", "read", None, 200),
    ("GET", "/jobs/{job}", "read", None, 200),
    ("POST", "/jobs/{job}/cancel", "replay", None, 200),
    ("POST", "/tasks/deploy-preview/trigger", "trigger", {"payload": {"n": 1}}, 202),
]


@pytest.mark.parametrize(("method", "path", "scope", "body", "status"), ENDPOINTS)
async def test_every_endpoint_refuses_missing_bad_expired_and_unscoped_tokens_and_answers_the_right_one(
    make_api: Callable[..., Any], method: str, path: str, scope: str, body: Any, status: int
) -> None:
    api = await make_api()
    event, run = await api.seed()
    job = await api.service.bulk.start_job("rerun", RunFilter(task="deploy-preview"), requested_by="test")
    path = path.format(event=event.id, run=run.id, job=job.id)
    good = token()
    cases = [
        ({}, 401, "missing_token", 'Bearer realm="gateway-admin"'),
        (bearer("not-a-jwt"), 401, "bad_token", 'Bearer realm="gateway-admin", error="invalid_token"'),
        (
            bearer(token(secret=OTHER_SECRET)),
            401,
            "bad_token",
            'Bearer realm="gateway-admin", error="invalid_token"',
        ),
        (
            bearer(token(now=NOW - 7200)),
            401,
            "expired_token",
            'Bearer realm="gateway-admin", error="invalid_token"',
        ),
        (
            bearer(token(tuple(s for s in SCOPES if s != scope))),
            403,
            "missing_scope",
            f'Bearer realm="gateway-admin", error="insufficient_scope", scope="{scope}"',
        ),
    ]
    answers = []
    for headers, code, reason, challenge in cases:
        response = await api.call(method, path, body, headers=headers)
        assert (response.status_code, response.json()["error"]) == (code, reason), response.text
        assert response.headers["www-authenticate"] == challenge
        answers.append((headers, response))
    allowed = await api.call(method, path, body, headers=bearer(good))
    assert allowed.status_code == status, allowed.text
    answers.append((bearer(good), allowed))
    for headers, response in answers:
        assert SECRET not in response.text and OTHER_SECRET not in response.text
        for sent in [v.split()[1] for v in headers.values()]:
            assert sent not in response.text and sent not in str(response.headers)


async def test_a_token_for_another_scope_is_told_which_scope_the_call_needs(
    make_api: Callable[..., Any],
) -> None:
    api = await make_api()
    response = await api.call("POST", "/replays", {"kind": "replay"}, headers=bearer(token(("read",))))
    assert response.status_code == 403
    assert response.json() == {
        "error": "missing_scope",
        "detail": "this token has scopes read; this call needs replay",
    }


async def test_the_token_of_a_trigger_is_stored_redacted_and_never_shown(
    make_api: Callable[..., Any],
) -> None:
    api = await make_api()
    good = token()
    triggered = await api.call("POST", "/tasks/deploy-preview/trigger", {"payload": {}}, headers=bearer(good))
    shown = await api.call("GET", f"/events/{triggered.json()['event_id']}")
    assert shown.status_code == 200
    assert ["authorization", "[redacted]"] in shown.json()["headers"]
    assert good not in shown.text
    body = await api.call("GET", f"/events/{triggered.json()['event_id']}/body")
    assert body.content == b'{"payload":{}}'


async def test_an_events_signature_headers_are_shown_without_their_value(
    make_api: Callable[..., Any],
) -> None:
    api = await make_api()
    signed = push_event("signed", NOW - 60)
    signature = "sha256=" + "ab" * 32
    headers = Headers(
        [*signed.headers.pairs, ("X-Hub-Signature-256", signature), ("webhook-signature", "v1,x")]
    )
    await api.store.jobs.add([replace(signed, headers=headers)], [])
    shown = await api.call("GET", f"/events/{signed.id}")
    assert shown.status_code == 200 and signature not in shown.text and "v1,x" not in shown.text
    assert shown.json()["headers"] == [
        ["x-github-event", "push"],
        ["x-hub-signature-256", "[signature, not shown]"],
        ["webhook-signature", "[signature, not shown]"],  # a preset's, though github's event
    ]


# -- paging --------------------------------------------------------------------------------------------


async def page_through(api: Api, path: str, between: Callable[[], Any] | None = None) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = f"{path}?limit=100" + (f"&cursor={cursor}" if cursor else "")
        response = await api.call("GET", query)
        assert response.status_code == 200, response.text
        pages.append([item["id"] for item in response.json()["data"]])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
        if between is not None:
            await between()


async def test_250_events_come_in_pages_of_100_100_50_newest_first_without_duplicates(
    make_api: Callable[..., Any],
) -> None:
    api = await make_api()
    events = [push_event(f"{i:03d}", NOW - 1000 + i) for i in range(250)]
    await api.store.jobs.add(events, [])
    pages = await page_through(api, "/events")
    assert [len(p) for p in pages] == [100, 100, 50]
    seen = [i for page in pages for i in page]
    assert seen == [e.id for e in reversed(events)]


async def test_paging_while_events_arrive_shows_every_earlier_event_exactly_once(
    make_api: Callable[..., Any],
) -> None:
    api = await make_api()
    before = [push_event(f"old{i:03d}", NOW - 1000 + i) for i in range(250)]
    await api.store.jobs.add(before, [])
    arrived: list[str] = []

    async def arrive(name: str, at: float) -> None:
        await api.store.record(push_event(name, at), [])
        arrived.append(name)

    async def keep_arriving(stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            # Newer than everything, and in between the earlier ones: both kinds land while paging.
            await arrive(f"new{n}", NOW + n)
            await arrive(f"mid{n}", NOW - 1000 + (n % 250) + 0.5)
            n += 1

    async def between_pages() -> None:
        await arrive(f"gap{len(arrived)}", NOW - 1000 + 125.25)
        await asyncio.sleep(0)

    stop = asyncio.Event()
    writer = asyncio.create_task(keep_arriving(stop))
    try:
        pages = await page_through(api, "/events", between_pages)
    finally:
        stop.set()
        await writer
    seen = [i for page in pages for i in page]
    assert len(seen) == len(set(seen))
    assert sorted(i for i in seen if i.startswith("evt_old")) == sorted(e.id for e in before)
    assert any(a.startswith("new") for a in arrived) and any(a.startswith("gap") for a in arrived)


async def test_since_and_until_take_durations_ago_and_iso_times(make_api: Callable[..., Any]) -> None:
    api = await make_api()
    old, recent = push_event("old", NOW - 7200), push_event("recent", NOW - 60)
    await api.store.jobs.add([old, recent], [])
    last_hour = await api.call("GET", "/events?since=1h")
    assert [e["id"] for e in last_hour.json()["data"]] == [recent.id]
    earlier = await api.call("GET", "/events?until=2027-01-15T07:00:00Z")
    assert [e["id"] for e in earlier.json()["data"]] == [old.id]


async def test_q_finds_events_by_id_or_run_id_exactly_and_keeps_the_other_filters(
    make_api: Callable[..., Any],
) -> None:
    api = await make_api()
    event, run = await api.seed()
    other = push_event("other", NOW - 60)
    await api.store.jobs.add([other], [])
    by_run = await api.call("GET", f"/events?q={run.id}")
    assert by_run.status_code == 200 and [e["id"] for e in by_run.json()["data"]] == [event.id]
    assert [e["id"] for e in (await api.call("GET", f"/events?q={other.id}")).json()["data"]] == [other.id]
    assert (await api.call("GET", f"/events?q={other.id}&source=stripe")).json()["data"] == []
    assert (await api.call("GET", "/events?q=evt_")).json()["data"] == []  # exact: no prefix match
    empty = await api.call("GET", "/events?q=")
    assert empty.status_code == 400
    assert empty.json()["detail"] == "q: empty; give a value, or leave the parameter out"


# -- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        (
            "/events?cursor=bm90LWEtY3Vyc29y",
            "cursor: not a cursor this gateway handed out (pass the previous page's `next` as it is)",
        ),
        ("/events?sorce=github", "query: unknown key 'sorce' (did you mean 'source'?)"),
        ("/events?limit=0", "limit: expected a whole number from 1 to 500, got 0"),
        ("/events?limit=501", "limit: expected a whole number from 1 to 500, got 501"),
        ("/events?limit=abc", "limit: expected a whole number from 1 to 500, got 'abc'"),
        (
            "/events?since=garbage",
            "since: expected an ISO-8601 time like 2026-11-24T10:00:00Z or a duration ago like 30m, 24h, 7d; "
            "got 'garbage'",
        ),
        ("/events?status=routd", "status: unknown value 'routd' (did you mean 'routed'?)"),
        (
            "/events?run_status=done",
            "run_status: unknown value 'done' (expected one of queued, executing, "
            "retrying, canceled, completed, crashed, failed, timed_out)",
        ),
        ("/events?source=a&source=b", "query: source is given more than once; give it once"),
        ("/events?source=", "source: empty; give a value, or leave the parameter out"),
        ("/events?since=1h&until=2h", "since: is after until; nothing can match"),
        ("/runs?stauts=failed", "query: unknown key 'stauts' (did you mean 'status'?)"),
        (
            "/jobs?status=paused",
            "status: unknown value 'paused' (expected one of running, completed, canceled, failed)",
        ),
        ("/stats?limit=5", "query: unknown key 'limit' (allowed: since)"),
        ("/events/evt_x?verbose=1", "query: unknown parameter 'verbose' (this endpoint takes none)"),
    ],
)
async def test_bad_query_parameters_are_400_with_a_detail_that_names_them(
    make_api: Callable[..., Any], query: str, detail: str
) -> None:
    api = await make_api()
    response = await api.call("GET", query)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid", "detail": detail}


async def test_unknown_ids_paths_and_methods_are_json_404_and_405(make_api: Callable[..., Any]) -> None:
    api = await make_api()
    missing = await api.call("GET", "/events/evt_nope")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "not_found", "detail": "no event with id 'evt_nope'"},
    )
    assert (await api.call("POST", "/runs/run_nope/cancel")).json()["error"] == "not_found"
    assert (await api.call("GET", "/nothing")).json()["error"] == "not_found"
    wrong = await api.call("DELETE", "/events")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")


async def test_a_store_that_cannot_commit_is_503_with_retry_after(make_api: Callable[..., Any]) -> None:
    api = await make_api()
    await api.store.close()
    response = await api.call("POST", "/tasks/deploy-preview/trigger", {"payload": {}})
    assert (response.status_code, response.headers["retry-after"]) == (503, "5")
    assert response.json() == {
        "error": "store_unavailable",
        "detail": "the database could not answer; retry later",
    }


# -- replay, rerun, cancel -----------------------------------------------------------------------------


async def test_replaying_an_event_records_a_linked_event_with_new_runs(make_api: Callable[..., Any]) -> None:
    api = await make_api()
    event, _ = await api.seed()
    response = await api.call("POST", f"/events/{event.id}/replay")
    assert response.status_code == 202
    answer = response.json()
    assert answer["replay_of"] == event.id
    replay = await api.store.reads.get_event(answer["event_id"])
    assert replay is not None and replay.replay_of == event.id
    runs = await api.store.reads.runs_for_event(replay.id)
    assert sorted((r.id, r.task_id) for r in runs) == sorted((r["id"], r["task"]) for r in answer["runs"])
    assert sorted(r.task_id for r in runs) == ["deploy-preview", "record-payment"]
    detail = (await api.call("GET", f"/events/{event.id}")).json()
    assert [r["id"] for r in detail["replays"]] == [replay.id]
    assert "_text" not in detail


async def test_rerunning_keeps_or_replaces_the_input_and_links_the_new_run(
    make_api: Callable[..., Any],
) -> None:
    api = await make_api()
    _, run = await api.seed()
    same = await api.call("POST", f"/runs/{run.id}/rerun")
    edited = await api.call("POST", f"/runs/{run.id}/rerun", {"payload": {"sha": "def456"}})
    assert (same.status_code, edited.status_code) == (202, 202)
    assert same.json()["rerun_of"] == run.id and same.json()["task"] == "deploy-preview"
    first = await api.store.reads.get_run(same.json()["run_id"])
    second = await api.store.reads.get_run(edited.json()["run_id"])
    assert first is not None and second is not None
    assert (first.rerun_of, first.input, first.event_id) == (run.id, run.input, run.event_id)
    assert (second.rerun_of, second.input) == (run.id, {"sha": "def456"})
    detail = (await api.call("GET", f"/runs/{run.id}")).json()
    assert [r["id"] for r in detail["reruns"]] == [first.id, second.id]
    assert (await api.call("GET", f"/runs/{second.id}")).json()["rerun_of"] == run.id


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"payload": 1, "input": 2}', "body: unknown key 'input' (allowed: payload)"),
        (b"[1]", "body: expected a JSON object, got a JSON array"),
        (b"{nope", "body: not valid JSON; send a JSON object"),
    ],
)
async def test_a_rerun_body_other_than_a_payload_is_400(
    make_api: Callable[..., Any], body: bytes, detail: str
) -> None:
    api = await make_api()
    _, run = await api.seed()
    response = await api.call("POST", f"/runs/{run.id}/rerun", content=body)
    assert (response.status_code, response.json()["detail"]) == (400, detail)
    assert await api.store.reads.reruns_of(run.id) == []


async def test_canceling_a_queued_run_works_once_then_conflicts(make_api: Callable[..., Any]) -> None:
    api = await make_api()
    _, run = await api.seed()
    first = await api.call("POST", f"/runs/{run.id}/cancel")
    assert (first.status_code, first.json()["status"]) == (200, "canceled")
    again = await api.call("POST", f"/runs/{run.id}/cancel")
    assert again.status_code == 409
    assert again.json() == {
        "error": "conflict",
        "detail": f"run {run.id} is canceled: only queued or retrying runs can be canceled",
    }


# -- trigger -------------------------------------------------------------------------------------------


async def test_a_trigger_with_the_same_idempotency_key_answers_the_first_run(
    make_api: Callable[..., Any],
) -> None:
    api = await make_api()
    headers = {**bearer(token()), "Idempotency-Key": "deploy-42"}
    first = await api.call(
        "POST", "/tasks/deploy-preview/trigger", {"payload": {"sha": "1"}}, headers=headers
    )
    again = await api.call(
        "POST", "/tasks/deploy-preview/trigger", {"payload": {"sha": "1"}}, headers=headers
    )
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {**first.json(), "duplicate": True}
    [run] = first.json()["runs"]
    stored = await api.store.reads.get_run(run["id"])
    assert stored is not None and (stored.task_id, stored.input) == ("deploy-preview", {"sha": "1"})


@pytest.mark.parametrize(
    ("path", "body", "status", "detail"),
    [
        (
            "/tasks/nope/trigger",
            b'{"payload": {}}',
            404,
            "no task 'nope' (tasks: deploy-preview, record-payment, sync-subscription)",
        ),
        ("/tasks/deploy-preview/trigger", b"not json", 400, 'body: expected JSON like {"payload": {...}}'),
        (
            "/tasks/deploy-preview/trigger",
            b'{"input": {}}',
            400,
            'body: expected a JSON object with one key, "payload" (the task\'s input)',
        ),
        (
            "/tasks/deploy-preview/trigger",
            b"x" * (BODY_CAP + 1),
            413,
            "the body is larger than 1048576 bytes (1 MiB)",
        ),
    ],
)
async def test_a_bad_trigger_is_refused_and_records_nothing(
    make_api: Callable[..., Any], path: str, body: bytes, status: int, detail: str
) -> None:
    api = await make_api()
    response = await api.call("POST", path, content=body)
    assert (response.status_code, response.json()["detail"]) == (status, detail)
    assert await api.store.reads.events_page() == []


async def test_a_chunked_trigger_body_over_the_cap_is_413(make_api: Callable[..., Any]) -> None:
    api = await make_api()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(17):
            yield b"y" * 65536

    response = await api.call("POST", "/tasks/deploy-preview/trigger", content=chunks())
    assert (response.status_code, response.json()["error"]) == (413, "too_large")


# -- bulk jobs -----------------------------------------------------------------------------------------


async def test_a_bulk_dry_run_counts_what_a_job_would_take(make_api: Callable[..., Any]) -> None:
    api = await make_api()
    events = [push_event(f"{i}", NOW - 100 + i) for i in range(7)]
    await api.store.jobs.add(events, [])
    response = await api.call(
        "POST", "/replays", {"kind": "replay", "filter": {"source": "github"}, "dry_run": True}
    )
    assert response.status_code == 200
    assert response.json() == {
        "kind": "replay",
        "count": 7,
        "sample": [e.id for e in events[:5]],
        "replays_left_out": 0,
    }
    none = await api.call(
        "POST", "/replays", {"kind": "replay", "filter": {"source": "stripe"}, "dry_run": True}
    )
    assert none.json()["count"] == 0
    older = {"kind": "replay", "filter": {"until": NOW - 97}, "dry_run": True}  # unix seconds in a body
    assert (await api.call("POST", "/replays", older)).json()["count"] == 4
    assert api.woken == [] and await api.store.reads.list_jobs() == []


async def test_a_bulk_replay_leaves_out_replays_unless_the_filter_includes_them(
    make_api: Callable[..., Any],
) -> None:
    api = await make_api()
    event, _ = await api.seed()
    replayed = (await api.call("POST", f"/events/{event.id}/replay")).json()
    dry = {"kind": "replay", "filter": {"source": "github"}, "dry_run": True}
    assert (await api.call("POST", "/replays", dry)).json() == {
        "kind": "replay",
        "count": 1,
        "sample": [event.id],
        "replays_left_out": 1,
    }
    dry["filter"] = {"source": "github", "include_replays": True}
    both = (await api.call("POST", "/replays", dry)).json()
    assert (both["count"], both["replays_left_out"]) == (2, 0)

    response = await api.call("POST", "/replays", {"kind": "replay", "filter": {"source": "github"}})
    assert response.status_code == 202
    started = response.json()
    assert (started["job"]["total"], started["replays_left_out"]) == (1, 1)
    assert started["job"]["filter"] == {"source": "github", "include_replays": False}
    # A listing is not a bulk selection: it shows the replay beside its original.
    listed = (await api.call("GET", "/events")).json()["data"]
    assert [(e["id"], e["replay_of"]) for e in listed] == [(replayed["event_id"], event.id), (event.id, None)]


async def test_starting_a_bulk_job_wakes_the_worker_and_shows_it_in_jobs(
    make_api: Callable[..., Any],
) -> None:
    api = await make_api()
    await api.seed()
    body = {"kind": "rerun", "filter": {"task": "deploy-preview", "since": "2h"}}
    response = await api.call("POST", "/replays", body)
    assert response.status_code == 202
    job = response.json()["job"]
    assert api.woken == ["job"]
    assert {k: job[k] for k in ("kind", "status", "total", "done", "progress", "requested_by")} == {
        "kind": "rerun",
        "status": "running",
        "total": 1,
        "done": 0,
        "progress": 0.0,
        "requested_by": "ops-bot",
    }
    assert job["filter"] == {"task": "deploy-preview", "since": "2027-01-15T06:00:00.000Z"}
    listed = (await api.call("GET", "/jobs")).json()
    assert [j["id"] for j in listed["data"]] == [job["id"]] and listed["next_cursor"] is None
    assert (await api.call("GET", f"/jobs/{job['id']}")).json() == job
    canceled = await api.call("POST", f"/jobs/{job['id']}/cancel")
    assert (canceled.status_code, canceled.json()["status"]) == (200, "canceled")
    again = await api.call("POST", f"/jobs/{job['id']}/cancel")
    assert (again.status_code, again.json()["error"]) == (409, "conflict")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"kind": "replay", "filter": {"sorce": "github"}},
            "filter: unknown key 'sorce' (did you mean 'source'?)",
        ),
        (
            {"kind": "rerun", "filter": {"event_type": "push"}},
            "filter: unknown key 'event_type' (did you mean 'event_id'?)",
        ),
        (
            {"kind": "replay", "filter": {"status": "failed"}},
            "status: unknown value 'failed' (expected one of routed, unrouted)",
        ),
        ({"kind": "redo"}, "kind: expected 'replay' (route events again) or 'rerun' (run runs again)"),
        ({"kind": "replay", "dry_run": "yes"}, "dry_run: expected true or false, got a JSON string"),
        ({"kind": "replay", "filter": {"source": 3}}, "source: expected a non-empty string, got number"),
        (
            {"kind": "replay", "filter": {"include_replays": "yes"}},
            "include_replays: expected true or false, got a JSON string",
        ),
        (
            {"kind": "rerun", "filter": {"include_replays": True}},
            "filter: unknown key 'include_replays' (allowed: status, task, source, event_id, since, until)",
        ),
        (
            {"kind": "replay", "everything": True},
            "body: unknown key 'everything' (allowed: kind, filter, dry_run)",
        ),
    ],
)
async def test_a_bad_bulk_request_is_400_and_starts_nothing(
    make_api: Callable[..., Any], body: dict[str, Any], detail: str
) -> None:
    api = await make_api()
    response = await api.call("POST", "/replays", body)
    assert (response.status_code, response.json()["detail"]) == (400, detail)
    assert api.woken == [] and await api.store.reads.list_jobs() == []


# -- bodies --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "served_as"),
    [
        (
            b'{"a": 1,\n "b": "\xc3\xa9"}  ',
            "application/json; charset=utf-8",
            "application/json; charset=utf-8",
        ),
        (b"\x00\xff\xfe binary \r\n", None, "application/octet-stream"),
        (b"<script>alert(1)</script>", "text/html", "text/html"),
    ],
)
async def test_an_event_body_is_served_as_the_exact_stored_bytes_as_an_attachment(
    make_api: Callable[..., Any], body: bytes, content_type: str | None, served_as: str
) -> None:
    api = await make_api()
    event = push_event("raw", NOW - 5, body=body, content_type=content_type)
    await api.store.record(event, [])
    response = await api.call("GET", f"/events/{event.id}/body")
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["content-type"] == served_as
    assert response.headers["content-disposition"] == f'attachment; filename="{event.id}.bin"'
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_trailing_slash_is_a_json_404_not_a_redirect_built_from_the_host_header(
    make_api: Callable[..., Any],
) -> None:
    api = await make_api()
    for path in ("/api/events/", "/api/runs/", "/api/jobs/"):
        answer = await api.client.get(path, headers={**bearer(token()), "Host": "attacker.example"})
        assert (answer.status_code, answer.json()["error"]) == (404, "not_found"), path
        assert "location" not in answer.headers

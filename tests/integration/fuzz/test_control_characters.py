"""U+0000 and the other control characters in every field a request brings to SQL: a delivery's event type and
dedupe key (from its body or its headers), header values, query names and values, its runs' input and
concurrency keys, a refused request kept for replay, an Idempotency-Key, listing and bulk-replay filters, ids
in paths. Each is stored and read back exactly (through the admin API or the store's reads) or refused with a
4xx: never a 5xx, never a key cut short (issue 17). Real app, real SQLite files, real signatures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.model import Secret
from gateway.records.service import Service
from gateway.routes import load as config_mod
from gateway.store.sqlite.store import SQLiteStore
from gateway.web.api import create_api
from gateway.web.app import create_app
from gateway.web.auth import AdminKey
from tests.support.admin import SECRET, bearer, token
from tests.support.claims import claim_runs
from tests.support.clock import Clock
from tests.support.deliveries import signature_headers, sources_of
from tests.support.strategies import props

ROUTES = """
tasks: [{module}]
sources:
  acme:
    verify: {scheme: hmac, header: X-Acme-Signature, algorithm: sha256, encoding: hex, prefix: "sha256="}
    secret: acme-secret
    dedupe: body.id
    event_type: body.type
  heads:
    verify: {scheme: hmac, header: X-Heads-Signature, algorithm: sha256, encoding: hex, prefix: "sha256="}
    secret: heads-secret
    dedupe: headers.X-Heads-Delivery
    event_type: headers.X-Heads-Event
routes:
  - id: from-body
    source: acme
    task: keyed
    input: {key: body.key, note: body.note}
  - id: from-headers
    source: heads
    task: keyed
    input: {key: headers.X-Heads-Key, note: query.note}
"""
TASKS = """
from gateway import task

@task(id="keyed", concurrency_key="payload.key")
async def keyed(payload, ctx):
    return payload
"""
SOURCES = sources_of(ROUTES)

ODD = "\x00" + "".join(map(chr, range(1, 32))) + "\x7f\x80\x9f\ufffd\U0001f600"
# Any text a decoded request can hold (no lone surrogate: a body with one is refused as JSON, and headers
# and queries are decoded as Latin-1 or with replacement), leaning on NUL and the other control characters.
texts = st.text(alphabet=st.sampled_from(ODD + "a:") | st.characters(codec="utf-8"), max_size=10)
# A header value as bytes can carry them (in process: a real HTTP server refuses NUL and most controls).
header_texts = st.text(alphabet=st.sampled_from(ODD[:32] + "\x7f\xff a") | st.characters(max_codepoint=255))
EXAMPLES = settings(
    props(40), suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@dataclass
class Gateway:
    client: httpx.AsyncClient
    store: SQLiteStore

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An answer of the app, which is never a 5xx."""
        answer = await self.client.request(method, path, **kwargs)
        assert answer.status_code < 500, (method, path, answer.text)
        return answer

    async def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.call(method, "/api" + path, headers=bearer(token()), **kwargs)

    async def shown(self, path: str) -> Any:
        answer = await self.api("GET", path)
        assert answer.status_code == 200, (path, answer.text)
        return answer.json()


@contextlib.asynccontextmanager
async def running(config: config_mod.Config) -> AsyncIterator[Gateway]:
    """The real app with its admin API, on a database of its own (one per hypothesis example)."""
    with tempfile.TemporaryDirectory() as directory:
        store = await SQLiteStore.open(Path(directory) / "gateway.db")
        try:
            clock = Clock()
            api = create_api(
                Service(store, config, clock=clock), AdminKey("HS256", Secret(SECRET)), clock=clock
            )
            transport = httpx.ASGITransport(app=create_app(config, store, api=api))
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
                yield Gateway(client, store)
        finally:
            await store.close()


@pytest.fixture
async def gateway_for(load_config: Callable[..., Any]) -> AsyncIterator[Callable[[], Awaitable[Gateway]]]:
    async with contextlib.AsyncExitStack() as stack:

        async def make() -> Gateway:
            return await stack.enter_async_context(running(load_config(ROUTES, TASKS)))

        yield make


def body_delivery(**fields: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    body = json.dumps(fields).encode()
    headers = {**signature_headers(SOURCES["acme"], body), "Content-Type": "application/json"}
    return body, [(k.encode(), v.encode()) for k, v in headers.items()]


def query_of(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


# -- deliveries: every field from the body, the headers or the query -------------------------------------


@EXAMPLES
@given(
    key=texts,
    event_type=texts,
    run_key=texts,
    note=texts,
    header=header_texts,
    query=st.lists(st.tuples(texts, texts), max_size=3),
)
@example(
    key="a\x00b",
    event_type="\x00t",
    run_key="k\x00",
    note="\x00",
    header="\x00\x01",
    query=[("\x00", "\x1f")],
)
def test_a_delivery_keeps_every_field_exactly_and_its_retry_is_a_duplicate(
    load_config: Callable[..., Any],
    key: str,
    event_type: str,
    run_key: str,
    note: str,
    header: str,
    query: list[tuple[str, str]],
) -> None:
    config = load_config(ROUTES, TASKS)

    async def check() -> None:
        async with running(config) as gw:
            body, headers = body_delivery(id=key, type=event_type, key=run_key, note=note)
            headers.append((b"X-Note", header.encode("latin-1")))
            url = "/hooks/acme?" + query_of([*query, ("note", note)])
            first = await gw.call("POST", url, content=body, headers=headers)
            retry = await gw.call("POST", url, content=body, headers=headers)
            assert (first.status_code, retry.status_code) == (202, 200), (first.text, retry.text)
            event_id = first.json()["event_id"]
            assert retry.json() == {"event_id": event_id, "runs": [], "duplicate": True}

            event = await gw.shown(f"/events/{event_id}")
            assert (event["dedupe_key"], event["event_type"]) == (key, event_type)
            assert ["x-note", header] in event["headers"]
            assert event["query"] == [list(pair) for pair in [*query, ("note", note)]]
            [run] = event["runs"]
            shown_run = await gw.shown(f"/runs/{run['id']}")
            assert shown_run["input"] == {"key": run_key, "note": note}
            assert shown_run["concurrency_key"] == run_key
            listed = await gw.api("GET", "/events", params={"type": event_type})
            if listed.status_code == 200:  # an empty filter may be refused: a 4xx, never a 5xx
                assert [e["id"] for e in listed.json()["data"]] == [event_id]

    asyncio.run(check())


@EXAMPLES
@given(key=header_texts, event_type=header_texts, run_key=header_texts, note=texts)
@example(key="d\x00", event_type="\x00", run_key="\x00k", note="\x00")
def test_fields_taken_from_headers_and_the_query_are_kept_exactly(
    load_config: Callable[..., Any], key: str, event_type: str, run_key: str, note: str
) -> None:
    config = load_config(ROUTES, TASKS)

    async def check() -> None:
        async with running(config) as gw:
            body = b'{"n": 1}'
            signed = signature_headers(SOURCES["heads"], body)
            headers = [(k.encode(), v.encode()) for k, v in signed.items()] + [
                (b"X-Heads-Delivery", key.encode("latin-1")),
                (b"X-Heads-Event", event_type.encode("latin-1")),
                (b"X-Heads-Key", run_key.encode("latin-1")),
            ]
            url = "/hooks/heads?" + query_of([("note", note)])
            first = await gw.call("POST", url, content=body, headers=headers)
            retry = await gw.call("POST", url, content=body, headers=headers)
            assert first.status_code == 202, first.text
            event = await gw.shown(f"/events/{first.json()['event_id']}")
            assert (event["dedupe_key"], event["event_type"]) == (key, event_type)
            assert (retry.status_code, retry.json()["event_id"]) == (200, event["id"]), retry.text
            [run] = event["runs"]
            assert (await gw.shown(f"/runs/{run['id']}"))["input"] == {"key": run_key, "note": note}

    asyncio.run(check())


# -- a refused request, kept for replay ------------------------------------------------------------------


@EXAMPLES
@given(header=header_texts, query=st.lists(st.tuples(texts, texts), max_size=3), signature=header_texts)
@example(header="\x00", query=[("\x00", "a\x00")], signature="sha256=\x00")
def test_a_refused_request_is_kept_exactly(
    load_config: Callable[..., Any], header: str, query: list[tuple[str, str]], signature: str
) -> None:
    config = load_config(ROUTES, TASKS)

    async def check() -> None:
        async with running(config) as gw:
            headers = [
                (b"X-Acme-Signature", signature.encode("latin-1")),
                (b"X-Note", header.encode("latin-1")),
                (b"Content-Type", b"application/json"),
            ]
            url = "/hooks/acme?" + query_of(query)
            refused = await gw.call("POST", url, content=b'{"id": "a\\u0000b"}', headers=headers)
            assert refused.status_code == 401, refused.text
            [listed] = (await gw.shown("/rejections"))["data"]
            rejection = await gw.store.reads.get_rejection(listed["id"])
            assert rejection is not None and rejection.request is not None
            assert rejection.detail == listed["detail"] == refused.json()["detail"]
            assert rejection.request.headers["x-note"] == header
            assert rejection.request.query == tuple(query)
            assert rejection.request.body == b'{"id": "a\\u0000b"}'

    asyncio.run(check())


# -- the admin API: an Idempotency-Key, filters, ids in paths --------------------------------------------


@EXAMPLES
@given(idempotency_key=header_texts.filter(lambda k: 1 <= len(k) <= 256), note=texts)
@example(idempotency_key="k\x00", note="\x00")
def test_a_trigger_with_any_idempotency_key_answers_its_repeat_with_the_original(
    load_config: Callable[..., Any], idempotency_key: str, note: str
) -> None:
    config = load_config(ROUTES, TASKS)

    async def check() -> None:
        async with running(config) as gw:
            headers = {**bearer(token())}
            raw = [*((k.encode(), v.encode()) for k, v in headers.items())]
            raw.append((b"Idempotency-Key", idempotency_key.encode("latin-1")))
            body = json.dumps({"payload": {"key": idempotency_key, "note": note}}).encode()
            first = await gw.call("POST", "/api/tasks/keyed/trigger", content=body, headers=raw)
            again = await gw.call("POST", "/api/tasks/keyed/trigger", content=body, headers=raw)
            assert (first.status_code, again.status_code) == (202, 200), (first.text, again.text)
            assert again.json()["event_id"] == first.json()["event_id"]
            [run] = first.json()["runs"]
            shown = await gw.shown(f"/runs/{run['id']}")
            assert shown["idempotency_key"] == idempotency_key
            assert shown["input"] == {"key": idempotency_key, "note": note}

    asyncio.run(check())


@EXAMPLES
@given(event_type=texts.filter(bool), task=texts, source=texts)
@example(event_type="\x00", task="\x00", source="a\x00")
def test_filters_with_control_characters_select_exactly_what_they_name(
    load_config: Callable[..., Any], event_type: str, task: str, source: str
) -> None:
    config = load_config(ROUTES, TASKS)

    async def check() -> None:
        async with running(config) as gw:
            for n, type_ in enumerate((event_type, event_type + "\x00", "\x00" + event_type)):
                body, headers = body_delivery(id=f"d-{n}", type=type_, key="k", note="")
                assert (
                    await gw.call("POST", "/hooks/acme", content=body, headers=headers)
                ).status_code == 202
            listed = await gw.api("GET", "/events", params={"type": event_type})
            assert listed.status_code == 200, listed.text
            assert [e["event_type"] for e in listed.json()["data"]] == [event_type]
            for name, value in (("task", task), ("source", source)):
                answer = await gw.api("GET", "/events", params={name: value})
                assert answer.status_code in (200, 400), answer.text
            preview = await gw.api(
                "POST",
                "/replays",
                json={"kind": "replay", "filter": {"event_type": event_type}, "dry_run": True},
            )
            assert (preview.status_code, preview.json()["count"]) == (200, 1), preview.text
            started = await gw.api(
                "POST", "/replays", json={"kind": "replay", "filter": {"event_type": event_type}}
            )
            assert started.status_code == 202, started.text
            job = await gw.shown(f"/jobs/{started.json()['job']['id']}")
            assert job["filter"]["event_type"] == event_type

    asyncio.run(check())


async def test_an_id_with_a_nul_in_a_path_names_nothing(gateway_for: Callable[..., Any]) -> None:
    gw: Gateway = await gateway_for()
    body, headers = body_delivery(id="d-1", type="t", key="k", note="")
    stored = (await gw.call("POST", "/hooks/acme", content=body, headers=headers)).json()
    [run] = stored["runs"]
    for path in (f"/events/{stored['event_id']}%00", f"/runs/{run['id']}%00x", "/jobs/job%00", "/events/%00"):
        assert (await gw.api("GET", path)).status_code == 404, path
    for path in (
        f"/runs/{run['id']}%00/cancel",
        f"/runs/{run['id']}%00/rerun",
        f"/events/{stored['event_id']}%00/replay",
    ):
        assert (await gw.api("POST", path)).status_code == 404, path
    assert (await gw.shown(f"/runs/{run['id']}"))["status"] == "queued"  # not canceled through a lookalike


# -- concurrency keys: runs on one key wait for each other, and only for each other -----------------------


async def test_runs_on_a_concurrency_key_with_nul_wait_for_each_other_and_for_no_other_key(
    gateway_for: Callable[..., Any],
) -> None:
    gw: Gateway = await gateway_for()
    keys = ["k\x00a", "k\x00a", "k", "k\x00b", "\x00", "", "\x00"]
    runs = []
    for n, key in enumerate(keys):
        body, headers = body_delivery(id=f"d-{n}", type="t", key=key, note=str(n))
        answer = await gw.call("POST", "/hooks/acme", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        runs += [run["id"] for run in answer.json()["runs"]]

    claimed = await claim_runs(gw.store.runs, now=time.time() + 10, limit=len(keys), lease=60)
    # The second run of each key waits for the first; every key is its own, cut at no U+0000.
    assert sorted(c.run.id for c in claimed) == sorted(runs[i] for i in (0, 2, 3, 4, 5))
    assert {c.run.concurrency_key for c in claimed} == {"k\x00a", "k", "k\x00b", "\x00", ""}

"""Hand-built hostile deliveries against the app in process, on a real store: malformed and repeated
signature headers, bodies that break parsers (deep nesting, NaN, bad UTF-8, not JSON), wrong content types,
bodies past the cap or trickled past the body timeout. Never a 5xx; the event, when stored, is exact."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.model import COMPLETED, AttemptEnd, Secret
from gateway.records.service import Service
from gateway.store.sqlite.store import SQLiteStore
from gateway.web.api import create_api
from gateway.web.auth import AdminKey
from tests.support.admin import SECRET, bearer, token
from tests.support.claims import claim_runs
from tests.support.clock import NOW, Clock
from tests.support.deliveries import github_headers

GH_SECRET = "gh-secret"  # tests/support/routes.py ROUTES: source github


def signed(body: bytes, content_type: str | None = "application/json") -> dict[str, str]:
    """GitHub push headers with a valid signature over ``body`` and a fresh delivery id."""
    headers = dict(github_headers(body, GH_SECRET, str(uuid.uuid4())))
    del headers["Content-Type"]
    return headers if content_type is None else {**headers, "Content-Type": content_type}


@dataclass
class Gateway:
    client: httpx.AsyncClient
    store: SQLiteStore

    async def post(self, body: bytes, headers: Any, path: str = "/hooks/github") -> httpx.Response:
        response = await self.client.post(path, content=body, headers=headers)
        assert response.status_code < 500 or response.status_code == 503, response.text
        return response

    async def stored(self, response: httpx.Response) -> Any:
        """The event an ack names, as the admin API shows it (which must itself answer)."""
        assert response.status_code == 202, response.text
        event_id = response.json()["event_id"]
        shown = await self.client.get(f"/api/events/{event_id}", headers=bearer(token()))
        assert shown.status_code == 200, shown.text
        for run in response.json()["runs"]:
            run_shown = await self.client.get(f"/api/runs/{run['id']}", headers=bearer(token()))
            assert run_shown.status_code == 200, run_shown.text
        return shown.json()

    async def raw_body(self, event_id: str) -> bytes:
        return (await self.client.get(f"/api/events/{event_id}/body", headers=bearer(token()))).content


@pytest.fixture
async def gateway(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> AsyncIterator[Callable[..., Any]]:
    async def make(**kwargs: Any) -> Gateway:
        config = load_config()
        store = await open_store()
        clock = Clock()
        api = create_api(Service(store, config, clock=clock), AdminKey("HS256", Secret(SECRET)), clock=clock)
        return Gateway(await client_for(config, store, api=api, **kwargs), store)

    yield make


# -- bodies that break parsers --------------------------------------------------------------------------

HOSTILE_JSON = {
    "nested 100,000 deep": b"[" * 100_000,
    "nested 100,000 deep, closed": b"[" * 100_000 + b"]" * 100_000,
    "NaN": b'{"ref": "refs/heads/main", "x": NaN}',
    "Infinity": b'{"x": -Infinity}',
    "a number past a float": b'{"x": 1e999}',
    "an integer of 5,000 digits": b'{"x": ' + b"9" * 5000 + b"}",
    "a lone surrogate": b'{"x": "\\ud800"}',
    "not JSON": b'{"ref": "refs/heads/main", ',
    "bad UTF-8": b'{"x": "\xff\xfe"}',
    "NUL bytes": b'{"x": "\x00"}\x00',
}


@pytest.mark.parametrize("content_type", ["application/json", None], ids=["json", "no-content-type"])
async def test_json_that_breaks_parsers_is_stored_exactly_as_raw_text_and_every_answer_about_it_is_json(
    gateway: Callable[..., Any], content_type: str | None
) -> None:
    gw = await gateway()
    for name, body in HOSTILE_JSON.items():
        response = await gw.post(body, signed(body, content_type))
        shown = await gw.stored(response)
        assert shown["payload_kind"] == "raw", name
        assert shown["payload"] == body.decode("utf-8", errors="replace"), name
        assert await gw.raw_body(shown["id"]) == body, name
        assert [run["task"] for run in response.json()["runs"]] == ["record-payment"], name  # any push


async def test_valid_surrogate_pairs_and_big_finite_numbers_are_still_json(
    gateway: Callable[..., Any],
) -> None:
    gw = await gateway()
    body = b'{"x": "\\ud83d\\ude00", "n": 1e308, "i": ' + b"9" * 4000 + b', "ref": "refs/heads/main"}'
    shown = await gw.stored(await gw.post(body, signed(body)))
    assert shown["payload_kind"] == "json"
    assert shown["payload"]["x"] == "\U0001f600"
    assert shown["payload"]["n"] == 1e308


CONTENT_TYPES = [
    ("text/plain", b'{"a": 1}', "raw"),
    ("application/vnd.github+json", b'{"a": 1}', "json"),
    ("application/json; charset=utf-8", b'{"a": 1}', "json"),
    ("APPLICATION/JSON", b'{"a": 1}', "json"),
    ("application/json", b"a=1&b=2", "raw"),
    ("application/x-www-form-urlencoded", b"a=1&b=%ff", "form"),
    ("application/x-www-form-urlencoded", b"a=\xff\xfe", "raw"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\n\r\n--xyz--", "raw"),
    (";;;", b'{"a": 1}', "json"),  # no media type: as without Content-Type, a body starting with {
    ("application/json" + "; p=v" * 2000, b'{"a": 1}', "json"),
]


async def test_a_content_type_decides_the_parse_and_a_wrong_one_keeps_the_body_raw(
    gateway: Callable[..., Any],
) -> None:
    gw = await gateway()
    for content_type, body, kind in CONTENT_TYPES:
        shown = await gw.stored(await gw.post(body, signed(body, content_type)))
        assert shown["payload_kind"] == kind, content_type[:40]
        assert await gw.raw_body(shown["id"]) == body, content_type[:40]


async def test_invalid_utf8_in_header_values_is_kept_byte_for_byte_as_latin1(
    gateway: Callable[..., Any],
) -> None:
    gw = await gateway()
    body = b'{"ref": "refs/heads/main"}'
    headers = {**signed(body), "X-GitHub-Event": b"pu\xffsh", "X-Weird": b"\xc3\x28\x80\xfe"}
    shown = await gw.stored(await gw.post(body, headers))
    assert shown["event_type"] == "pu\xffsh"
    assert ["x-weird", "\xc3\x28\x80\xfe"] in shown["headers"]


# -- signature headers ----------------------------------------------------------------------------------

BODY = b'{"ref": "refs/heads/main", "after": "abc"}'
GOOD = signed(BODY)["X-Hub-Signature-256"]
MALFORMED = [
    ("", "missing_signature"),
    ("sha256=", "malformed_signature"),
    ("sha256=zz", "malformed_signature"),
    ("sha256=" + "0" * 63, "malformed_signature"),
    ("sha1=" + GOOD[7:], "malformed_signature"),
    (GOOD[7:], "malformed_signature"),
    ("sha256=" + "a" * 64, "bad_signature"),
    (GOOD.upper(), "malformed_signature"),
    (GOOD + ", " + GOOD, "malformed_signature"),
    ("sha256=" + "0" * 20_000, "malformed_signature"),  # past 8 KiB; a head past 64 KiB is a 431 (below)
    ("\u00ff" * 64, "malformed_signature"),
]


async def test_a_malformed_signature_header_is_refused_with_its_reason_and_recorded(
    gateway: Callable[..., Any],
) -> None:
    gw = await gateway()
    for value, reason in MALFORMED:
        headers = {**signed(BODY), "X-Hub-Signature-256": value.encode("latin-1")}
        response = await gw.post(BODY, headers)
        assert (response.status_code, response.json()["error"]) == (401, reason), value[:80]
        assert GH_SECRET not in response.text
    rejections = await gw.store.reads.list_rejections(source="github", limit=100)
    assert [r.reason for r in reversed(rejections)] == [reason for _, reason in MALFORMED]


async def test_a_repeated_signature_header_is_refused_whichever_copy_is_good(
    gateway: Callable[..., Any],
) -> None:
    """Senders send one. Which of two copies was signed cannot be known, so a good one beside a forged one
    (in either order) is refused, like two forged ones, and the answer says why; one copy still passes."""
    gw = await gateway()
    others = [(k, v) for k, v in signed(BODY).items() if k != "X-Hub-Signature-256"]
    forged = "sha256=" + "a" * 64
    for values in ([forged, GOOD], [GOOD, forged], [GOOD, GOOD], [forged, "sha256=zz"]):
        headers = [*others, *(("X-Hub-Signature-256", v) for v in values)]
        response = await gw.post(BODY, headers)
        assert (response.status_code, response.json()) == (
            401,
            {
                "error": "repeated_header",
                "detail": "X-Hub-Signature-256 is sent 2 times; a delivery carries its signature once",
            },
        )
    alone = await gw.post(BODY, [*others, ("X-Hub-Signature-256", GOOD)])
    assert alone.status_code == 202


async def test_thousands_of_headers_are_answered_without_an_error(gateway: Callable[..., Any]) -> None:
    gw = await gateway()
    # ~50 KB of headers: under the 64 KiB a head may have (past it, 431: web/test_head_limit.py)
    headers = [*signed(BODY).items(), *((f"X-Pad-{i}", "v" * 20) for i in range(1500))]
    shown = await gw.stored(await gw.post(BODY, headers))
    assert len(shown["headers"]) > 1500


# -- size and time --------------------------------------------------------------------------------------


async def chunks(parts: int, size: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    for _ in range(parts):
        yield b"x" * size
        if pause:
            await asyncio.sleep(pause)


async def test_a_chunked_body_past_the_cap_is_refused_with_413_and_recorded(
    gateway: Callable[..., Any],
) -> None:
    gw = await gateway()
    headers = {"X-Acme-Signature": "sha256=00", "X-Acme-Delivery": "d1"}
    response = await gw.client.post("/hooks/acme", content=chunks(64, 100), headers=headers)  # acme: 1 KiB
    assert response.status_code == 413
    assert response.json() == {
        "error": "too_large",
        "detail": "the body is larger than this source's limit of 1024 bytes",
    }
    [rejection] = await gw.store.reads.list_rejections(source="acme")
    assert (rejection.reason, rejection.body_size) == ("too_large", 1100)
    assert rejection.body_prefix == b"x" * 1024


async def test_a_body_trickled_past_the_body_timeout_is_refused_with_408_and_recorded(
    gateway: Callable[..., Any],
) -> None:
    gw = await gateway(body_timeout=0.2)
    response = await gw.client.post("/hooks/open", content=chunks(50, 1, pause=0.05))
    assert response.status_code == 408
    assert response.json() == {
        "error": "slow_body",
        "detail": "the body did not arrive within 0.2 s; send it at once",
    }
    [rejection] = await gw.store.reads.list_rejections(source="open")
    assert rejection.reason == "slow_body"
    assert 0 < rejection.body_size < 50


async def test_a_body_sent_in_many_small_chunks_in_time_is_stored_whole(gateway: Callable[..., Any]) -> None:
    gw = await gateway(body_timeout=5)
    response = await gw.client.post("/hooks/open", content=chunks(200, 3))
    shown = await gw.stored(response)
    assert await gw.raw_body(shown["id"]) == b"x" * 600


# -- paths and methods ----------------------------------------------------------------------------------

# Encoded: the app sees the decoded path, with its newline or NUL.
ODD_PATHS = [
    "/hooks/git%0Ahub",
    "/hooks/github%0a",
    "/api/events/a%0Ab",
    "/hooks/%00",
    "/" + "a" * 10_000,
    "/api%0A",
]


async def test_paths_no_route_matches_are_answered_404_in_json(gateway: Callable[..., Any]) -> None:
    gw = await gateway()
    for path in ODD_PATHS:
        response = await gw.post(BODY, signed(BODY), path=path)
        assert response.status_code == 404, path[:40]
        assert response.json()["error"] in ("not_found", "unknown_source"), path[:40]


async def test_a_hook_path_called_with_get_is_answered_405_in_json(gateway: Callable[..., Any]) -> None:
    gw = await gateway()
    response = await gw.client.get("/hooks/github")
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
    assert response.json()["error"] == "method_not_allowed"


async def test_an_api_body_with_nan_is_refused_so_no_answer_can_break_on_it(
    gateway: Callable[..., Any],
) -> None:
    gw = await gateway()
    trigger = await gw.client.post(
        "/api/tasks/deploy-preview/trigger", content=b'{"payload": NaN}', headers=bearer(token())
    )
    assert trigger.status_code == 400
    assert trigger.json() == {"error": "invalid", "detail": 'body: expected JSON like {"payload": {...}}'}
    bulk = await gw.client.post(
        "/api/replays", content=b'{"kind": "replay", "x": 1e999}', headers=bearer(token())
    )
    assert bulk.json() == {"error": "invalid", "detail": "body: not valid JSON; send a JSON object"}


async def test_a_task_output_of_nan_is_shown_as_null_instead_of_failing_the_answer(
    gateway: Callable[..., Any],
) -> None:
    """A task may return NaN or Infinity; the store keeps it, the API shows null (as JSON.stringify does)."""
    gw = await gateway()
    body = b'{"ref": "refs/heads/dev"}'  # only the audit-pushes route
    response = await gw.post(body, signed(body))
    [claim] = await claim_runs(gw.store.runs, now=NOW, limit=1, lease=60, accept=lambda run: True)
    output = {"ratio": float("nan"), "limit": float("inf"), "ok": 1.5}
    end = AttemptEnd(claim.run.id, claim.attempt, NOW + 1, COMPLETED, COMPLETED, output=output)
    await gw.store.runs.finish_attempt(end)
    shown = await gw.client.get(f"/api/runs/{claim.run.id}", headers=bearer(token()))
    assert shown.status_code == 200
    assert shown.json()["output"] == {"ratio": None, "limit": None, "ok": 1.5}
    assert response.json()["runs"] == [{"id": claim.run.id, "task": "record-payment"}]

"""Dedupe keys compare exactly as stored, whatever they hold: a signed body's key with U+0000, other control
characters or a quarter of a megabyte answers its retries 200 duplicate with the original's id, and keys that
differ anywhere are different events. A key the UNIQUE index holds is a duplicate, never a store fault (issue
17, defect 5). Real app, real SQLite file, real signatures."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.routes import load as config_mod
from gateway.store.ops import intake
from gateway.store.sqlite.store import SQLiteStore
from gateway.web.app import create_app
from tests.support.deliveries import signature_headers, sources_of
from tests.support.strategies import props

pytestmark = pytest.mark.both_stores

ROUTES = """
tasks: [{module}]
sources:
  acme:
    verify: {scheme: hmac, header: X-Acme-Signature, algorithm: sha256, encoding: hex, prefix: "sha256="}
    secret: acme-secret
    dedupe: body.id
    max_body: 1MiB
routes:
  - id: acme
    source: acme
    task: sync-subscription
"""
ACME = sources_of(ROUTES)["acme"]

# Text no JSON or SQLite layer may bend: U+0000 first, last and between, every other C0 control, DEL, C1
# controls, the replacement character, and characters past the BMP.
ODD = "\x00" + "".join(map(chr, range(1, 32))) + "\x7f\x80\x9f\ufffd\U0001f600"


class Gated:
    """A store (mixed over either) holding its writer until ``expected`` deliveries have come to it, so they
    share one batch."""

    expected = 0
    gate: asyncio.Event | None = None

    async def record(self, event: Any, runs: Any, **kwargs: Any) -> Any:
        self.expected -= 1
        if self.gate is not None and self.expected == 0:
            self.gate.set()  # the last one is queued before the writer runs again: at its await
        return await super().record(event, runs, **kwargs)  # type: ignore[misc]

    async def write(self, conn: Any, batch: list[Any]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        await super().write(conn, batch)  # type: ignore[misc]

    def hold(self, deliveries: int) -> None:
        self.expected, self.gate = deliveries, asyncio.Event()


def delivery(key: str, note: str = "") -> tuple[bytes, dict[str, str]]:
    """A signed acme delivery whose dedupe key (body.id) is ``key``."""
    body = json.dumps({"id": key, "note": note}).encode()
    return body, {**signature_headers(ACME, body), "Content-Type": "application/json"}


async def post(client: httpx.AsyncClient, key: str, note: str = "") -> httpx.Response:
    body, headers = delivery(key, note)
    return await client.post("/hooks/acme", content=body, headers=headers)


@pytest.fixture
async def gateway(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> tuple[httpx.AsyncClient, Gated]:
    store = await open_store(cls=Gated)
    return await client_for(load_config(ROUTES), store), store


@pytest.mark.parametrize(
    "key", ["a\x00b", "\x00", "\x00a", "a\x00", "\x00\x00", ODD, "k" * 256 * 1024 + "\x00"]
)
async def test_a_retry_of_a_delivery_whose_key_holds_nul_is_a_duplicate_of_it(
    gateway: tuple[httpx.AsyncClient, Gated], key: str
) -> None:
    client, store = gateway
    first = await post(client, key)
    retries = [await post(client, key) for _ in range(3)]

    assert first.status_code == 202, first.text
    for retry in retries:
        assert retry.status_code == 200, retry.text
        assert retry.json() == {"event_id": first.json()["event_id"], "runs": [], "duplicate": True}
    event = await store.reads.get_event(first.json()["event_id"])
    assert event is not None and event.dedupe_key == key  # kept exactly, not cut at U+0000
    assert len(await store.reads.events_page()) == 1
    assert (await client.get("/readyz")).status_code == 200
    assert store.stats.failed_batches == 0


async def test_keys_that_differ_only_after_a_nul_are_different_events(
    gateway: tuple[httpx.AsyncClient, Gated],
) -> None:
    client, store = gateway
    keys = ["a", "a\x00", "a\x00b", "a\x00c", "a\x00b\x00", "", "\x00", "\x00b"]
    firsts = [await post(client, key) for key in keys]
    again = [await post(client, key) for key in reversed(keys)]

    assert [r.status_code for r in firsts] == [202] * len(keys)
    assert len({r.json()["event_id"] for r in firsts}) == len(keys)
    assert [r.status_code for r in again] == [200] * len(keys)
    assert [r.json()["event_id"] for r in reversed(again)] == [r.json()["event_id"] for r in firsts]
    stored = {e.dedupe_key for e in await store.reads.events_page(limit=100)}
    assert stored == set(keys)


async def test_the_other_deliveries_of_a_batch_are_unaffected_by_a_nul_keys_retry(
    gateway: tuple[httpx.AsyncClient, Gated],
) -> None:
    client, store = gateway
    first = await post(client, "nul\x00key")
    store.hold(24)  # one batch (one transaction): the NUL key's retries and honest deliveries
    answers = await asyncio.gather(
        *(post(client, "nul\x00key") if n % 4 == 0 else post(client, f"honest-{n}") for n in range(24))
    )

    for n, answer in enumerate(answers):
        if n % 4 == 0:
            assert (answer.status_code, answer.json()["event_id"]) == (200, first.json()["event_id"])
        else:
            assert answer.status_code == 202, answer.text
    assert len(await store.reads.events_page(limit=100)) == 1 + 18
    # They committed as one batch, not rolled back and written again one by one.
    assert store.stats.largest_batch > 1 and store.stats.failed_batches == 0


async def test_a_key_the_lookup_misses_but_the_unique_index_holds_is_answered_as_a_duplicate(
    gateway: tuple[httpx.AsyncClient, Gated], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The index is the authority: should the batch's lookup ever miss a stored key again (as the JSON one did
    # for U+0000), the insert's UNIQUE hit answers the duplicate instead of rolling the batch back.
    client, store = gateway
    firsts = {key: await post(client, key) for key in ("k-1", "k-2")}
    real = intake._known_keys

    async def forgetful(conn: Any, events: Any) -> Any:
        found = await real(conn, events)
        return {k: v for k, v in found.items() if k[1] != "k-1"}

    monkeypatch.setattr(intake, "_known_keys", forgetful)
    store.hold(5)
    answers = await asyncio.gather(
        post(client, "k-1"),
        post(client, "k-1"),
        post(client, "k-2"),
        post(client, "new"),
        post(client, "k-1"),
    )

    assert [a.status_code for a in answers] == [200, 200, 200, 202, 200], [a.text for a in answers]
    assert {a.json()["event_id"] for a in answers[:2] + answers[4:]} == {firsts["k-1"].json()["event_id"]}
    assert answers[2].json()["event_id"] == firsts["k-2"].json()["event_id"]
    assert len(await store.reads.events_page(limit=100)) == 3
    assert len(await store.reads.runs_for_event(firsts["k-1"].json()["event_id"])) == 1
    assert store.stats.failed_batches == 0


keys = st.text(alphabet=st.sampled_from(ODD + "ab"), max_size=6) | st.text(max_size=12)


# The config is one file for every example (each opens a database of its own): sharing it is the point.
@settings(props(60), suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sent=st.lists(keys, min_size=1, max_size=8))
def test_any_text_key_is_a_duplicate_of_its_first_delivery_and_of_no_other(
    load_config: Callable[..., Any], sent: list[str]
) -> None:
    config = load_config(ROUTES)
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_deliver_each_twice(config, Path(directory) / "gateway.db", sent))


async def _deliver_each_twice(config: config_mod.Config, path: Path, sent: list[str]) -> None:
    store = await SQLiteStore.open(path)
    try:
        app = create_app(config, store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            holder: dict[str, str] = {}
            for key in sent + sent:
                answer = await post(client, key)
                if key in holder:
                    assert answer.status_code == 200, (key, answer.text)
                    assert answer.json()["event_id"] == holder[key], key
                else:
                    assert answer.status_code == 202, (key, answer.text)
                    holder[key] = answer.json()["event_id"]
            assert len(set(holder.values())) == len(holder)  # distinct keys are never merged
            for key, event_id in holder.items():
                event = await store.reads.get_event(event_id)
                assert event is not None and event.dedupe_key == key
    finally:
        await store.close()

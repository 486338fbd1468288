"""bench/prefill.py: a prefilled database is one the gateway opens, lists and runs, holding its own rows."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench import deliveries, prefill
from gateway.cli import main as cli
from gateway.model import EventFilter
from gateway.store.sqlite.store import SQLiteStore
from tests.support.claims import claim_runs

EVENTS = 1_000


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 events with one queued noop run each, filled in 4 chunks (so chunks follow one another)."""
    db = tmp_path_factory.mktemp("prefill") / "gateway.db"
    made = prefill.fill(db, EVENTS, runs=True, chunk=300)
    assert (made.events, made.runs) == (EVENTS, EVENTS)
    return db


def gateway(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), env={}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def listed(command: str, db: Path, *flags: str) -> list[dict[str, Any]]:
    """Every item `gateway <command> --json` lists, following its cursors."""
    items: list[dict[str, Any]] = []
    cursor: list[str] = []
    while True:
        code, out, err = gateway(command, "--db", str(db), "--json", "--limit", "500", *flags, *cursor)
        assert code == 0, err
        page = json.loads(out)
        items += page["data"]
        if not page["next_cursor"]:
            return items
        cursor = ["--cursor", page["next_cursor"]]


def test_gateway_cli_lists_every_prefilled_event(routed: Path) -> None:
    events = listed("events", routed)
    assert len(events) == EVENTS
    assert len({e["id"] for e in events}) == EVENTS
    assert {(e["source"], e["event_type"], e["status"]) for e in events} == {("github", "push", "routed")}


def test_gateway_cli_lists_every_prefilled_run_as_queued(routed: Path) -> None:
    runs = listed("runs", routed, "--status", "queued")
    assert len(runs) == EVENTS
    assert {(r["task"], r["status"], r["attempts"]) for r in runs} == {("noop", "queued", 0)}


def test_the_table_listing_shows_the_newest_event(routed: Path) -> None:
    code, out, err = gateway("events", "--db", str(routed), "--limit", "1")
    assert code == 0, err
    assert "github" in out and "push" in out
    assert "more: --cursor" in out


async def test_prefilled_runs_are_claimable_with_their_event(routed: Path, tmp_path: Path) -> None:
    db = tmp_path / "claim.db"
    prefill.copy(routed, db)
    store = await SQLiteStore.open(db)
    try:
        claims = await claim_runs(
            store.runs, now=time.time(), limit=EVENTS, lease=30.0, accept=lambda run: True
        )
        again = await claim_runs(
            store.runs, now=time.time(), limit=EVENTS, lease=30.0, accept=lambda run: True
        )
    finally:
        await store.close()
    assert len(claims) == EVENTS
    assert again == []
    assert {(c.run.task_id, c.attempt, c.source, c.event_type) for c in claims} == {
        ("noop", 1, "github", "push")
    }
    assert all(c.headers["x-github-event"] == "push" for c in claims)


async def test_a_stored_event_reads_back_as_the_signed_delivery(routed: Path) -> None:
    store = await SQLiteStore.open(routed)
    try:
        [oldest] = await store.reads.events_after(EventFilter(), after=None, upto=time.time(), limit=1)
        [run] = await store.reads.runs_for_event(oldest.id)
    finally:
        await store.close()
    body = deliveries.push_body(0)
    assert oldest.body == body
    assert oldest.payload.data == json.loads(body)
    assert oldest.dedupe_key == prefill.delivery_id("prefill", 0)
    assert oldest.headers["x-github-delivery"] == oldest.dedupe_key
    expected = deliveries.github_headers(body, deliveries.SECRET, oldest.dedupe_key)
    assert oldest.headers["x-hub-signature-256"] == dict(expected)["X-Hub-Signature-256"]
    assert oldest.verification == "verified:github"
    assert run.input == json.loads(body)
    assert run.options["queue"] == "noop"


def test_events_only_fill_stores_unrouted_events_and_no_runs(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    made = prefill.fill(db, 50, runs=False)
    assert (made.events, made.runs) == (50, 0)
    events = listed("events", db)
    assert len(events) == 50
    assert {e["status"] for e in events} == {"unrouted"}
    assert listed("runs", db) == []


def test_fill_refuses_an_existing_file(tmp_path: Path) -> None:
    db = tmp_path / "there.db"
    db.write_bytes(b"")
    with pytest.raises(FileExistsError, match="prefill fills only a fresh database"):
        prefill.fill(db, 10, runs=False)


def test_rows_that_drift_from_the_gateways_are_refused(tmp_path: Path) -> None:
    rows = prefill.Rows(prefill.load_config(True, tmp_path))
    rows.check([0, 1, 12_345], now=time.time())  # the fast rows are the gateway's
    rows.template_event = {**rows.template_event, "verification": "unverified"}
    with pytest.raises(prefill.PrefillError) as raised:
        rows.check([3], now=time.time())
    assert str(raised.value) == (
        "prefilled delivery 3 differs from what the gateway writes in: verification; update bench/prefill.py"
    )


def test_delivery_ids_are_uuid5_of_the_label() -> None:
    namespace = uuid.UUID("0f6c2a8e-51d4-4b7e-9d3c-7a1e5f2b8c40")
    for n in (0, 9, 1_000_000):
        assert prefill.delivery_id("prefill", n) == str(uuid.uuid5(namespace, f"prefill-{n}"))


def test_a_cached_database_is_built_once_then_reused(tmp_path: Path) -> None:
    first = prefill.cached(20, runs=True, directory=tmp_path)
    again = prefill.cached(20, runs=True, directory=tmp_path)
    assert first.seconds > 0 and again.seconds == 0
    assert again.path == first.path and again.size == first.size > 0
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no partial files left behind


def test_an_outdated_cached_database_is_replaced(tmp_path: Path) -> None:
    outdated = tmp_path / "prefill-20-runs-0123456789ab.db"
    outdated.write_bytes(b"a database of an older schema")
    other_size = tmp_path / "prefill-30-runs-0123456789ab.db"
    other_size.write_bytes(b"another size: kept")
    made = prefill.cached(20, runs=True, directory=tmp_path)
    assert made.seconds > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([made.path.name, other_size.name])

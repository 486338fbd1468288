"""The service layer on a real SQLite file: replay, rerun, cancel, trigger, routes test, prune and paging."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import Invalid, NotFound
from gateway.model import (
    CANCELED,
    COMPLETED,
    QUEUED,
    REPLAY,
    EventFilter,
    Headers,
    Pruned,
    Run,
)
from gateway.records.compare import NEW_ROUTE, RouteLine
from gateway.records.service import API_SOURCE, Service
from gateway.routes.load import Config
from gateway.store.sqlite.store import SQLiteStore
from tests.support.clock import HOUR, NOW, Clock
from tests.support.database import count, within
from tests.support.records import deliver, finish, plain_event, rejection
from tests.support.routes import ROUTES_RETAINED, ROUTES_V1, ROUTES_V2

pytestmark = pytest.mark.both_stores
OpenStore = Callable[..., Any]
LoadConfig = Callable[..., Config]

# The `open` source and the record-payment task are gone.
ROUTES_WITHOUT_OPEN = ROUTES_V1.replace("  open: {verify: none}\n", "")
TASKS_WITHOUT_DEPLOY = """
from gateway import task

@task(id="record-payment")
async def record_payment(payload, ctx):
    return payload

@task(id="sync-subscription")
def sync_subscription(payload, ctx):
    return payload
"""
ROUTES_WITHOUT_DEPLOY = """
tasks: [{module}]
sources:
  github: {verify: github, secret: gh-secret}
routes:
  - id: audit-pushes
    source: github
    task: record-payment
"""


# -- replay ---------------------------------------------------------------------------------------------


async def test_a_replay_routes_the_event_through_the_current_routes(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    v1 = load_config(ROUTES_V1)
    original = await deliver(store, v1, at=NOW - 100)
    assert [r.route_id for r in original.runs] == ["deploy-on-push"]

    service = Service(store, load_config(ROUTES_V2), clock=Clock())
    outcome = await service.replay(original.event_id)

    replay = await store.reads.get_event(outcome.event_id)
    assert replay is not None and outcome.event_id != original.event_id
    assert (replay.replay_of, replay.received_at, replay.status) == (original.event_id, NOW, "routed")
    assert (replay.source, replay.event_type) == ("github", "push")
    stored = await store.reads.runs_for_event(replay.id)
    assert [(r.route_id, r.task_id, r.status) for r in stored] == [
        ("deploy-on-push", "deploy-preview", QUEUED),
        ("audit-pushes", "record-payment", QUEUED),
    ]
    assert stored[0].input == {"sha": "abc"}
    assert [r.id for r in outcome.runs] == [r.id for r in stored]
    detail = await service.event(original.event_id)
    assert [r.route_id for r in detail.runs] == ["deploy-on-push"]  # the original is untouched
    assert detail.replays == [(replay.id, NOW, "routed")]


async def test_an_unrouted_event_is_routed_when_replayed_after_its_route_was_added(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    original = await deliver(store, load_config(ROUTES_V1), "open", {"hello": "world"}, at=NOW - 100)
    stored = await store.reads.get_event(original.event_id)
    assert stored is not None and stored.status == "unrouted" and original.runs == ()

    outcome = await Service(store, load_config(ROUTES_V2), clock=Clock()).replay(original.event_id)

    replay = await store.reads.get_event(outcome.event_id)
    assert replay is not None and replay.status == "routed"
    [run] = await store.reads.runs_for_event(outcome.event_id)
    assert (run.route_id, run.task_id, run.input) == ("open-all", "sync-subscription", {"hello": "world"})


async def test_replaying_a_missing_event_is_not_found(open_store: OpenStore, load_config: LoadConfig) -> None:
    service = Service(await open_store(), load_config(ROUTES_V2), clock=Clock())
    with pytest.raises(NotFound) as info:
        await service.replay("evt_nope")
    assert str(info.value) == "no event with id 'evt_nope'"


async def test_replaying_an_event_whose_source_is_gone_is_invalid_and_records_nothing(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    original = await deliver(store, load_config(ROUTES_V2), "open", {}, at=NOW - 100)
    service = Service(store, load_config(ROUTES_WITHOUT_OPEN), clock=Clock())
    with pytest.raises(Invalid) as info:
        await service.replay(original.event_id)
    assert str(info.value) == (
        f"event {original.event_id} came from source 'open', which is not in routes.yaml any more; "
        "nothing could match it"
    )
    assert await store.reads.count_events() == 1


async def test_an_event_can_be_replayed_again_and_again_because_a_replay_has_no_dedupe_key(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    original = await deliver(store, config, at=NOW - 100)
    stored = await store.reads.get_event(original.event_id)
    assert stored is not None and stored.dedupe_key is not None  # the X-GitHub-Delivery id
    service = Service(store, config, clock=Clock())  # every replay is made at the same instant

    outcomes = [await service.replay(original.event_id) for _ in range(5)]

    assert len({o.event_id for o in outcomes}) == 5
    for outcome in outcomes:
        replay = await store.reads.get_event(outcome.event_id)
        assert replay is not None and replay.dedupe_key is None and len(outcome.runs) == 1
    detail = await service.event(original.event_id)
    assert [r[0] for r in detail.replays] == [o.event_id for o in outcomes]  # in the order they were made


# -- rerun and cancel -----------------------------------------------------------------------------------


async def test_a_rerun_keeps_the_input_and_the_idempotency_key(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    [run] = (await deliver(store, config, at=NOW - 100)).runs
    service = Service(store, config, clock=Clock())

    rerun = await service.rerun(run.id)

    assert rerun.id != run.id
    assert (rerun.event_id, rerun.route_id, rerun.task_id) == (
        run.event_id,
        "deploy-on-push",
        "deploy-preview",
    )
    assert (rerun.input, rerun.rerun_of, rerun.idempotency_key) == ({"sha": "abc"}, run.id, run.id)
    assert (rerun.status, rerun.created_at) == (QUEUED, NOW)
    assert await store.reads.get_run(rerun.id) == rerun
    again = await service.rerun(rerun.id)  # a rerun of a rerun still carries the first run's key
    assert (again.rerun_of, again.idempotency_key) == (rerun.id, run.id)
    again_first = await service.rerun(run.id)
    third = await service.rerun(run.id)
    reruns = (await service.run(run.id)).reruns
    assert reruns == [(r.id, NOW, QUEUED) for r in (rerun, again_first, third)]  # in the order made


async def test_an_edited_rerun_gets_the_new_input_and_its_own_idempotency_key(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    [run] = (await deliver(store, config, at=NOW - 100)).runs
    rerun = await Service(store, config, clock=Clock()).rerun(run.id, payload={"sha": "fixed"}, edited=True)
    assert (rerun.input, rerun.rerun_of, rerun.idempotency_key) == ({"sha": "fixed"}, run.id, None)
    stored = await store.reads.get_run(rerun.id)
    assert stored is not None and stored.input == {"sha": "fixed"}


async def test_rerunning_a_run_whose_task_was_removed_is_invalid(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    [run] = (await deliver(store, load_config(ROUTES_V1), at=NOW - 100)).runs
    service = Service(store, load_config(ROUTES_WITHOUT_DEPLOY, TASKS_WITHOUT_DEPLOY), clock=Clock())
    with pytest.raises(Invalid) as info:
        await service.rerun(run.id)
    assert str(info.value) == (
        "task 'deploy-preview' is not defined in routes.yaml any more "
        "(tasks: record-payment, sync-subscription)"
    )
    assert await store.reads.count_runs() == 1


async def test_rerunning_a_missing_run_is_not_found(open_store: OpenStore, load_config: LoadConfig) -> None:
    with pytest.raises(NotFound) as info:
        await Service(await open_store(), load_config(ROUTES_V1)).rerun("run_nope")
    assert str(info.value) == "no run with id 'run_nope'"


async def test_a_queued_run_can_be_canceled(open_store: OpenStore, load_config: LoadConfig) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    [run] = (await deliver(store, config, at=NOW - 100)).runs
    canceled = await Service(store, config, clock=Clock()).cancel(run.id)
    assert (canceled.id, canceled.status, canceled.finished_at) == (run.id, CANCELED, NOW)
    assert await store.reads.get_run(run.id) == canceled


async def test_canceling_a_completed_run_is_invalid(open_store: OpenStore, load_config: LoadConfig) -> None:
    store = await open_store()
    config = load_config(ROUTES_V1)
    [run] = (await deliver(store, config, at=NOW - 100)).runs
    await finish(store, [run.id], at=NOW - 50)
    service = Service(store, config, clock=Clock())
    with pytest.raises(Invalid) as info:
        await service.cancel(run.id)
    assert str(info.value) == f"run {run.id} is completed: only queued or retrying runs can be canceled"
    with pytest.raises(NotFound):
        await service.cancel("run_nope")


# -- trigger --------------------------------------------------------------------------------------------


async def trigger(service: Service, task_id: str, body: bytes, key: str | None = None) -> Any:
    headers = Headers([("Content-Type", "application/json"), ("Authorization", "Bearer gw_secret_token")])
    return await service.trigger(task_id, body, headers, idempotency_key=key, requested_by="ci-bot")


async def test_a_trigger_records_an_api_event_with_one_run(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    service = Service(store, load_config(ROUTES_V1), clock=Clock())

    outcome = await trigger(service, "deploy-preview", b'{"payload": {"sha": "abc"}}')

    assert not outcome.duplicate
    event = await store.reads.get_event(outcome.event_id)
    assert event is not None
    assert (event.source, event.event_type, event.status) == (API_SOURCE, "trigger:deploy-preview", "routed")
    assert (event.verification, event.url, event.dedupe_key) == (
        "token:ci-bot",
        "/api/tasks/deploy-preview/trigger",
        None,
    )
    assert event.headers["authorization"] == "[redacted]"
    [run] = await store.reads.runs_for_event(event.id)
    assert (run.task_id, run.route_id, run.input, run.status) == (
        "deploy-preview",
        None,
        {"sha": "abc"},
        QUEUED,
    )
    assert [r.id for r in outcome.runs] == [run.id]


async def test_the_same_idempotency_key_twice_answers_the_original_run(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    clock = Clock()
    service = Service(store, load_config(ROUTES_V1), clock=clock)
    first = await trigger(service, "deploy-preview", b'{"payload": 1}', key="order-42")
    clock.advance(5)
    second = await trigger(service, "deploy-preview", b'{"payload": 2}', key="order-42")

    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.event_id == first.event_id
    assert [(r.id, r.input, r.idempotency_key) for r in second.runs] == [(first.runs[0].id, 1, "order-42")]
    assert (await store.reads.count_events(), await store.reads.count_runs()) == (1, 1)


async def test_different_tasks_with_the_same_idempotency_key_get_a_run_each(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    service = Service(store, load_config(ROUTES_V1), clock=Clock())
    deploy = await trigger(service, "deploy-preview", b'{"payload": 1}', key="k")
    pay = await trigger(service, "record-payment", b'{"payload": 1}', key="k")
    assert not deploy.duplicate and not pay.duplicate
    assert deploy.runs[0].id != pay.runs[0].id
    assert await store.reads.count_runs() == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", 'body: expected JSON like {"payload": {...}}'),
        (b"[1, 2]", 'body: expected a JSON object with one key, "payload" (the task\'s input)'),
        (
            b'{"payload": 1, "extra": 2}',
            'body: expected a JSON object with one key, "payload" (the task\'s input)',
        ),
    ],
)
async def test_a_trigger_with_a_bad_body_is_invalid(
    open_store: OpenStore, load_config: LoadConfig, body: bytes, message: str
) -> None:
    store = await open_store()
    with pytest.raises(Invalid) as info:
        await trigger(Service(store, load_config(ROUTES_V1)), "deploy-preview", body)
    assert str(info.value) == message
    assert await store.reads.count_events() == 0


async def test_a_trigger_of_an_unknown_task_or_with_a_long_key_is_refused(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    service = Service(await open_store(), load_config(ROUTES_V1))
    with pytest.raises(NotFound) as info:
        await trigger(service, "deploy", b"{}")
    assert str(info.value) == "no task 'deploy' (tasks: deploy-preview, record-payment, sync-subscription)"
    with pytest.raises(Invalid) as invalid:
        await trigger(service, "deploy-preview", b"{}", key="k" * 257)
    assert str(invalid.value) == "Idempotency-Key: expected 1 to 256 characters"


# -- routes test ----------------------------------------------------------------------------------------


async def test_routes_test_compares_the_stored_history_with_the_current_routes(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    v1 = load_config(ROUTES_V1)
    for n in range(3):
        await deliver(store, v1, at=NOW - 100 + n)  # main: deploy-on-push then and now
    for n in range(2):
        await deliver(store, v1, payload={"ref": "refs/heads/dev", "after": "x"}, at=NOW - 90 + n)
    await deliver(store, v1, "open", {}, at=NOW - 80)
    await trigger(Service(store, v1, clock=Clock(NOW - 70)), "deploy-preview", b"{}")  # not compared
    # v2 also changes what deploy-on-push passes on: its three events now get another input.
    v2 = load_config(ROUTES_V2.replace("input: {sha: body.after}", "input: {sha: body.after, ref: body.ref}"))

    report = await Service(store, v2, clock=Clock()).routes_test(since=None)

    assert (report.events, report.changed, report.sources_missing) == (6, 6, ())
    assert report.lines == (
        RouteLine("deploy-on-push", "deploy-preview", 3, 3, 0, 0, 3, ""),
        RouteLine("audit-pushes", "record-payment", 0, 5, 5, 0, 0, NEW_ROUTE),
        RouteLine("open-all", "sync-subscription", 0, 1, 1, 0, 0, NEW_ROUTE),
    )
    recent = await Service(store, v2, clock=Clock()).routes_test(since=NOW - 90)
    assert (recent.events, [line.now for line in recent.lines]) == (3, [0, 2, 1])


# -- prune ----------------------------------------------------------------------------------------------


async def seed_history(store: SQLiteStore, config: Config) -> dict[str, str]:
    """Old and recent records of every kind; the names say which a 1h prune at NOW removes."""
    old = NOW - 2 * HOUR
    done = await deliver(store, config, at=old)
    await finish(store, [done.runs[0].id], at=old + 1)
    waiting = await deliver(store, config, at=old + 2)  # its run is still queued
    unrouted = await deliver(store, config, "open", {}, at=old + 3)
    archived = await store.record(plain_event(1, at=old, source="archive"), [])
    recent = await deliver(store, config, at=NOW - 600)
    await finish(store, [recent.runs[0].id], at=NOW - 590)
    for source, at in (("github", old), ("github", NOW - 60), ("archive", old)):
        await store.record_rejection(rejection(source, at=at))
    return {
        "done": done.event_id,
        "waiting": waiting.event_id,
        "unrouted": unrouted.event_id,
        "archived": archived.event_id,
        "recent": recent.event_id,
    }


async def test_prune_removes_old_events_with_final_runs_and_their_attempts_and_old_rejections(
    open_store: OpenStore, load_config: LoadConfig, tmp_path: Path
) -> None:
    store = await open_store()
    config = load_config(ROUTES_RETAINED)
    ids = await seed_history(store, config)
    assert count(store, "attempts") == 2

    pruned = await Service(store, config, clock=Clock()).prune()

    assert pruned == Pruned(events=2, runs=1, attempts=1, rejections=1)
    kept = {name for name, event_id in ids.items() if await store.reads.get_event(event_id) is not None}
    assert kept == {"waiting", "archived", "recent"}
    assert count(store, "attempts") == 1  # the recent run's
    assert sorted((r.source, r.received_at) for r in await store.reads.list_rejections()) == [
        ("archive", NOW - 2 * HOUR),
        ("github", NOW - 60),
    ]
    assert await Service(store, config, clock=Clock()).prune() == Pruned()


async def test_a_dry_run_counts_exactly_what_the_prune_then_removes(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_RETAINED)
    await seed_history(store, config)
    old_job = await Service(store, config, clock=Clock(NOW - 2 * HOUR)).bulk.start_job(
        REPLAY, EventFilter(source="nowhere"), requested_by="ops", owner="cli:1"
    )
    await Service(store, config, clock=Clock(NOW - 2 * HOUR)).bulk.cancel_job(old_job.id)
    service = Service(store, config, clock=Clock())
    before = (await store.reads.count_events(), await store.reads.count_runs())

    dry = await service.prune(dry_run=True)

    assert (
        await store.reads.count_events(),
        await store.reads.count_runs(),
    ) == before  # a dry run removes nothing
    assert dry == Pruned(events=2, runs=1, attempts=1, rejections=1, jobs=1)
    assert await service.prune() == dry


class TransactionDeltas:
    """A store (mixed over either) that records how the number of stored events changed in each of its
    transactions."""

    deltas: list[int]

    async def write(self, conn: Any, batch: list[Any]) -> None:
        events = "SELECT count(*) FROM events"
        [(before,)] = await within(conn, events)
        recorded = await super().write(conn, batch)  # type: ignore[misc]
        [(after,)] = await within(conn, events)
        self.deltas = [*getattr(self, "deltas", []), int(str(after)) - int(str(before))]
        return recorded


async def test_prune_works_in_batches_of_at_most_batch_events(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store(cls=TransactionDeltas)
    await store.jobs.add([plain_event(n, at=NOW - 2 * HOUR + n) for n in range(35)], [])
    store.deltas = []

    pruned = await Service(store, load_config(ROUTES_RETAINED), clock=Clock()).prune(batch=10, pause=0)

    assert pruned.events == 35 and await store.reads.count_events() == 0
    assert store.deltas == [-10, -10, -10, -5]


async def test_prune_under_load_loses_no_ingest(open_store: OpenStore, load_config: LoadConfig) -> None:
    store = await open_store()
    await store.jobs.add([plain_event(n, at=NOW - 2 * HOUR + n) for n in range(300)], [])
    service = Service(store, load_config(ROUTES_RETAINED), clock=Clock())

    async def ingest(worker: int) -> int:
        for n in range(100):
            await store.record(plain_event(10_000 * (worker + 1) + n, at=NOW - 60 + n), [])
        return 100

    async def prune() -> tuple[Pruned, int]:
        pruned = await service.prune(batch=20, pause=0)
        return pruned, await store.reads.count_events(EventFilter(since=NOW - HOUR))

    *ingested, (pruned, ingested_meanwhile) = await asyncio.gather(*(ingest(w) for w in range(3)), prune())

    assert 0 < ingested_meanwhile < 300  # the two really overlapped
    assert sum(ingested) == 300 and pruned == Pruned(events=300)
    assert await store.reads.count_events() == 300 + 300 - pruned.events
    assert await store.reads.count_events(EventFilter(until=NOW - HOUR)) == 0


def page_count(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        n: int = conn.execute("PRAGMA page_count").fetchone()[0]
        return n


@pytest.mark.sqlite_only  # SQLite's own file, page by page
async def test_the_file_stops_growing_under_hourly_ingest_and_prune(
    open_store: OpenStore, load_config: LoadConfig, tmp_path: Path
) -> None:
    store = await open_store()
    clock = Clock()
    service = Service(store, load_config(ROUTES_RETAINED), clock=clock)
    body = json.dumps({"pad": "x" * 1500}).encode()
    pages: list[int] = []
    serial = itertools.count()
    for hour in range(10):
        start = NOW + hour * HOUR
        events = [plain_event(next(serial), at=start + n * 10, body=body) for n in range(150)]
        runs = [
            Run(
                f"run_{e.id}",
                e.id,
                None,
                "deploy-preview",
                {"n": 1},
                COMPLETED,
                e.received_at,
                finished_at=e.received_at,
            )
            for e in events
        ]
        await asyncio.gather(*(store.record(e, [r]) for e, r in zip(events, runs, strict=True)))
        clock.now = start + HOUR - 1  # the end of the hour: everything of the hour before is past 1h
        pruned = await service.prune()
        assert pruned.events == (150 if hour else 0)
        pages.append(page_count(tmp_path / "gateway.db"))

    assert await store.reads.count_events() == 150
    assert pages[-1] > 0
    plateau = max(pages[2:])
    assert plateau <= pages[1] * 1.1, pages  # ten hours ingested, the file holds about one
    assert pages[-1] < 3 * pages[0], pages


# -- paging ---------------------------------------------------------------------------------------------


async def test_paging_back_through_events_sees_each_one_once_while_new_ones_arrive(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    # Three events per timestamp: the keyset cursor must break ties by id.
    existing = [plain_event(n, at=NOW - 1000 + n // 3) for n in range(300)]
    await store.jobs.add(existing, [])
    arrived: list[str] = []
    seen: list[str] = []
    arrived_by_page: list[int] = []

    async def insert() -> None:
        for n in range(60):
            event = plain_event(100_000 + n, at=NOW + n)
            await store.record(event, [])
            arrived.append(event.id)
            await asyncio.sleep(0)

    async def page_back() -> None:
        before: tuple[float, str] | None = None
        while True:
            page = await store.reads.events_page(EventFilter(), before=before, limit=25)
            if not page:
                return
            seen.extend(e.id for e in page)
            arrived_by_page.append(len(arrived))
            before = (page[-1].received_at, page[-1].id)
            await asyncio.sleep(0.002)  # let inserts land between pages

    await asyncio.gather(insert(), page_back())

    counts = Counter(seen)
    assert len(arrived) == 60
    assert arrived_by_page[0] < arrived_by_page[-1]  # events arrived while it paged
    assert all(counts[e.id] == 1 for e in existing)
    assert set(counts) - {e.id for e in existing} <= set(arrived)
    assert max(counts.values()) == 1
    assert [e for e in seen if e in {x.id for x in existing}] == [e.id for e in reversed(existing)]

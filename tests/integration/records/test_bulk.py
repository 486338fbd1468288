"""Bulk replay and rerun jobs on a real SQLite file: previews, chunks, leases, takeovers, the worker."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import Invalid
from gateway.model import (
    FAILED,
    QUEUED,
    REPLAY,
    RERUN,
    Event,
    EventFilter,
    Job,
    RunFilter,
)
from gateway.records import worker as jobs
from gateway.records.service import Service
from gateway.routes.load import Config
from gateway.store.sqlite.store import SQLiteStore
from tests.support.clock import HOUR, NOW, Clock
from tests.support.database import change_elsewhere
from tests.support.records import deliver, finish, plain_event
from tests.support.routes import ROUTES_RETAINED, ROUTES_V2

pytestmark = pytest.mark.both_stores

OpenStore = Callable[..., Any]
LoadConfig = Callable[..., Config]
LEASE = 30.0


async def seed_open(store: SQLiteStore, n: int, *, at: float = NOW - 1000) -> list[Event]:
    """``n`` unrouted events of source `open` (routed to open-all by v2), one second apart, in one write."""
    events = [plain_event(i, at=at + i) for i in range(n)]
    await store.jobs.add(events, [])
    return events


async def replays_per_original(store: SQLiteStore) -> Counter[str]:
    replays = await store.reads.events_page(EventFilter(), limit=10_000)
    return Counter(e.replay_of for e in replays if e.replay_of is not None)


async def until_job(service: Service, job_id: str, status: str, *, timeout: float = 5.0) -> Job:
    async def poll() -> Job:
        while (job := await service.bulk.job(job_id)).status != status:
            await asyncio.sleep(0.01)
        return job

    return await asyncio.wait_for(poll(), timeout)


# -- preview --------------------------------------------------------------------------------------------


async def seed_mixed(store: SQLiteStore, config: Config) -> dict[str, str]:
    """Six events of different sources, types, statuses and runs, ten seconds apart; name → event id."""
    t = NOW - 1000
    ids = {
        "main0": await deliver(store, config, at=t),  # deploy-on-push + audit-pushes
        "dev": await deliver(store, config, payload={"ref": "refs/heads/dev", "after": "x"}, at=t + 10),
        "issues": await deliver(store, config, event="issues", at=t + 20),  # unrouted
        "open": await deliver(store, config, "open", {}, at=t + 30),  # open-all
        "main1": await deliver(store, config, at=t + 40),
        "main2": await deliver(store, config, at=t + 50),
    }
    [deploy, _] = ids["main1"].runs
    await finish(store, [deploy.id], at=t + 45, outcome=FAILED)
    return {name: recorded.event_id for name, recorded in ids.items()}


EVENT_FILTERS = [
    (EventFilter(), ["main0", "dev", "issues", "open", "main1", "main2"]),
    (EventFilter(source="open"), ["open"]),
    (EventFilter(event_type="issues"), ["issues"]),
    (EventFilter(status="unrouted"), ["issues"]),
    (EventFilter(since=NOW - 990, until=NOW - 970), ["dev", "issues", "open"]),
    (EventFilter(task="deploy-preview"), ["main0", "main1", "main2"]),
    (EventFilter(run_status=FAILED), ["main1"]),
    (EventFilter(task="record-payment", run_status=QUEUED), ["main0", "dev", "main1", "main2"]),
    (EventFilter(source="github", task="sync-subscription"), []),
]


@pytest.mark.parametrize(("f", "names"), EVENT_FILTERS)
async def test_a_replay_preview_counts_and_samples_what_each_filter_selects(
    open_store: OpenStore, load_config: LoadConfig, f: EventFilter, names: list[str]
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V2)
    ids = await seed_mixed(store, config)

    preview = await Service(store, config, clock=Clock()).bulk.preview(REPLAY, f)

    assert (preview.kind, preview.count) == (REPLAY, len(names))
    assert preview.sample == [ids[name] for name in names][:5]  # oldest first, at most five


async def test_a_rerun_preview_honours_the_run_filter(open_store: OpenStore, load_config: LoadConfig) -> None:
    store = await open_store()
    config = load_config(ROUTES_V2)
    ids = await seed_mixed(store, config)
    service = Service(store, config, clock=Clock())

    failed = await service.bulk.preview(RERUN, RunFilter(status=FAILED))
    [deploy, _] = await store.reads.runs_for_event(ids["main1"])
    assert (failed.count, failed.sample) == (1, [deploy.id])
    assert (await service.bulk.preview(RERUN, RunFilter(task="record-payment"))).count == 4
    assert (await service.bulk.preview(RERUN, RunFilter(source="open"))).count == 1
    assert (await service.bulk.preview(RERUN, RunFilter(event_id=ids["main0"]))).count == 2
    assert (await service.bulk.preview(RERUN, RunFilter(until=NOW - 995))).count == 2  # main0's two runs
    with pytest.raises(Invalid) as info:
        await service.bulk.preview(RERUN, EventFilter())
    assert str(info.value) == (
        "kind: expected replay (with an event filter) or rerun (with a run filter), got 'rerun'"
    )


# -- bulk replay ----------------------------------------------------------------------------------------


async def test_a_replay_job_works_250_events_in_3_chunks_and_replays_each_once(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    originals = await seed_open(store, 250)
    service = Service(store, load_config(ROUTES_V2), clock=Clock())  # the clock stands still all along
    job = await service.bulk.start_job(REPLAY, EventFilter(), requested_by="ops", owner="cli:1")
    assert (job.status, job.total, job.done, job.upto) == ("running", 250, 0, NOW)
    progress: list[int] = []

    job = await jobs.work(
        service.bulk, job, "cli:1", chunk=100, on_progress=lambda j: progress.append(j.done)
    )

    assert progress == [100, 200, 250]
    assert (job.status, job.total, job.done, job.created, job.finished_at) == (
        "completed",
        250,
        250,
        250,
        NOW,
    )
    # Its own replays (received at NOW, its upto) were never taken as items: exactly one per original.
    assert await replays_per_original(store) == Counter({e.id: 1 for e in originals})
    assert await store.reads.count_events() == 500
    assert await store.reads.count_runs(RunFilter(task="sync-subscription")) == 250


async def test_a_replay_job_never_selects_events_recorded_after_it_started(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    originals = await seed_open(store, 30)
    clock = Clock()
    service = Service(store, load_config(ROUTES_V2), clock=clock)
    job = await service.bulk.start_job(REPLAY, EventFilter(source="open"), requested_by="ops", owner="cli:1")
    job = await service.bulk.work_chunk(job, "cli:1", size=10)
    clock.advance(1)
    late = plain_event(999, at=clock())  # arrives mid-job
    await store.record(late, [])

    job = await jobs.work(service.bulk, job, "cli:1", chunk=10)

    assert (job.status, job.done) == ("completed", 30)
    assert await replays_per_original(store) == Counter({e.id: 1 for e in originals})


async def test_a_bulk_replay_takes_originals_and_says_how_many_replays_it_left_out(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    originals = await seed_open(store, 3)
    clock = Clock()
    service = Service(store, load_config(ROUTES_V2), clock=clock)
    replayed = await service.replay(originals[0].id)  # one replay: it must not be replayed again in bulk
    clock.advance(1)

    preview = await service.bulk.preview(REPLAY, EventFilter(source="open", include_replays=False))
    assert (preview.count, preview.sample, preview.left_out) == (3, [e.id for e in originals], 1)
    everything = await service.bulk.preview(REPLAY, EventFilter(source="open"))
    assert (everything.count, everything.left_out) == (4, 0)
    assert replayed.event_id in everything.sample

    f = EventFilter(source="open", include_replays=False)
    job = await service.bulk.start_job(REPLAY, f, requested_by="ops", owner="cli:1")
    assert (job.total, await service.bulk.replays_left_out(job)) == (3, 1)
    job = await jobs.work(service.bulk, job, "cli:1", chunk=10)
    assert (job.status, job.done) == ("completed", 3)
    assert await replays_per_original(store) == Counter(
        {originals[0].id: 2, originals[1].id: 1, originals[2].id: 1}
    )
    assert (await store.reads.get_job(job.id)) == job  # include_replays=False is stored with the job


async def test_a_job_stored_before_include_replays_existed_still_replays_what_it_selected(
    open_store: OpenStore, load_config: LoadConfig, tmp_path: Path
) -> None:
    store = await open_store()
    originals = await seed_open(store, 2)
    clock = Clock()
    service = Service(store, load_config(ROUTES_V2), clock=clock)
    replayed = await service.replay(originals[0].id)
    clock.advance(1)
    job = await service.bulk.start_job(REPLAY, EventFilter(source="open"), requested_by="ops")
    # The row as an older gateway wrote it: the filter's JSON without the key (its jobs took replays too).
    change_elsewhere(store, "UPDATE jobs SET filter = ? WHERE id = ?", '{"source":"open"}', job.id)
    old = await service.bulk.job(job.id)
    assert old.filter == EventFilter(source="open") and old.filter.include_replays

    done = await jobs.work(service.bulk, await service.bulk.take(job.id, "cli:2"), "cli:2", chunk=10)

    assert (done.status, done.total, done.done) == ("completed", 3, 3)
    assert (await replays_per_original(store))[replayed.event_id] == 1  # the replay was replayed too


async def test_a_job_whose_worker_died_is_resumed_after_its_lease_and_replays_each_event_once(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    originals = await seed_open(store, 250)
    clock = Clock()
    service = Service(store, load_config(ROUTES_V2), clock=clock)
    job = await service.bulk.start_job(
        REPLAY, EventFilter(), requested_by="ops", owner="cli:dead", lease=LEASE
    )
    stale = await service.bulk.work_chunk(job, "cli:dead", size=100, lease=LEASE)
    assert (stale.done, stale.status) == (100, "running")
    # The worker dies here: it never commits or releases anything again.

    clock.advance(LEASE - 1)
    assert (
        await store.jobs.take_job(owner="serve:2", now=clock(), lease=LEASE) is None
    )  # the lease still holds
    clock.advance(2)
    taken = await store.jobs.take_job(owner="serve:2", now=clock(), lease=LEASE)
    assert taken is not None and (taken.id, taken.done, taken.cursor) == (job.id, 100, stale.cursor)

    done = await jobs.work(service.bulk, taken, "serve:2", chunk=100)

    assert (done.status, done.done, done.created) == ("completed", 250, 250)
    assert await replays_per_original(store) == Counter({e.id: 1 for e in originals})
    # Had the dead worker come back, its chunk would not be written.
    with pytest.raises(Invalid) as info:
        await service.bulk.work_chunk(stale, "cli:dead", size=100)
    assert str(info.value) == f"job {job.id} is no longer running here; this chunk was not written"
    assert await store.reads.count_events() == 500


async def test_two_workers_racing_on_one_job_never_replay_an_event_twice(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    originals = await seed_open(store, 250)
    clock = Clock()
    service = Service(store, load_config(ROUTES_V2), clock=clock)
    job = await service.bulk.start_job(REPLAY, EventFilter(), requested_by="api:ops")  # for anyone to take
    chunks: dict[str, int] = {"serve:a": 0, "serve:b": 0}

    async def worker(owner: str) -> Job:
        taken = await store.jobs.take_job(owner=owner, now=clock(), lease=LEASE, job_id=job.id)
        # The loser works on regardless, as a worker with a stale view would: none of its chunks commit.
        return await jobs.work(
            service.bulk, taken or job, owner, chunk=40, on_progress=lambda _: count(owner)
        )

    def count(owner: str) -> None:
        chunks[owner] += 1

    await asyncio.gather(worker("serve:a"), worker("serve:b"))

    assert sorted(chunks.values()) == [0, 7]  # ceil(250 / 40) chunks, all by the holder
    final = await service.bulk.job(job.id)
    assert (final.status, final.done, final.created) == ("completed", 250, 250)
    assert await replays_per_original(store) == Counter({e.id: 1 for e in originals})


async def test_canceling_a_job_mid_way_stops_it(open_store: OpenStore, load_config: LoadConfig) -> None:
    store = await open_store()
    await seed_open(store, 250)
    service = Service(store, load_config(ROUTES_V2), clock=Clock())
    job = await service.bulk.start_job(REPLAY, EventFilter(), requested_by="ops", owner="cli:1")
    job = await service.bulk.work_chunk(job, "cli:1", size=100)

    canceled = await service.bulk.cancel_job(job.id)
    after = await jobs.work(service.bulk, job, "cli:1", chunk=100)  # the holder's next chunk is refused

    assert (canceled.status, canceled.done, canceled.finished_at) == ("canceled", 100, NOW)
    assert (after.status, after.done) == ("canceled", 100)
    assert len(await replays_per_original(store)) == 100
    with pytest.raises(Invalid) as info:
        await service.bulk.cancel_job(job.id)
    assert str(info.value) == f"job {job.id} is canceled: only running jobs can be canceled"


async def test_a_rerun_job_reruns_each_failed_run_once_with_its_idempotency_key(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    config = load_config(ROUTES_V2)
    recorded = [await deliver(store, config, "open", {"n": n}, at=NOW - 500 + n) for n in range(30)]
    runs = [r.runs[0] for r in recorded]
    await finish(store, [r.id for r in runs[:20]], at=NOW - 100, outcome=FAILED)
    await finish(store, [r.id for r in runs[20:25]], at=NOW - 100)  # completed: not taken
    service = Service(store, config, clock=Clock())
    job = await service.bulk.start_job(RERUN, RunFilter(status=FAILED), requested_by="ops", owner="cli:1")

    job = await jobs.work(service.bulk, job, "cli:1", chunk=8)

    assert (job.status, job.total, job.done, job.created) == ("completed", 20, 20, 20)
    reruns = [r for r in await store.reads.runs_page(limit=100) if r.rerun_of is not None]
    assert Counter(r.rerun_of for r in reruns) == Counter({r.id: 1 for r in runs[:20]})
    by_id = {r.id: r for r in runs}
    assert all(
        (r.status, r.idempotency_key, r.input) == (QUEUED, r.rerun_of, by_id[r.rerun_of or ""].input)
        for r in reruns
    )


# -- the worker -----------------------------------------------------------------------------------------


async def test_the_worker_takes_a_job_nobody_holds_and_completes_it(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    originals = await seed_open(store, 120)
    service = Service(store, load_config(ROUTES_V2), clock=Clock())
    job = await service.bulk.start_job(REPLAY, EventFilter(), requested_by="api:ops")
    stop = asyncio.Event()
    running = asyncio.create_task(jobs.Worker(service, poll=0.02).run(stop))
    try:
        done = await until_job(service, job.id, "completed")
    finally:
        stop.set()
        await asyncio.wait_for(running, 5)

    assert (done.done, done.created) == (120, 120)
    assert await replays_per_original(store) == Counter({e.id: 1 for e in originals})


class JobArrivesDuringTheLook:
    """A store (mixed over either) whose first ``take_job`` finds nothing, and meanwhile a job is created and
    the worker notified (what the admin API does): the race a worker must not lose."""

    arrive: Callable[[], Awaitable[None]] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        take = self.jobs.take_job

        async def take_job(**kwargs: Any) -> Job | None:
            found = await take(**kwargs)
            if self.arrive is not None:
                arrive, self.arrive = self.arrive, None
                await arrive()
            return found

        self.jobs.take_job = take_job  # type: ignore[method-assign]


async def test_a_job_notified_while_the_worker_looks_is_started_before_the_next_poll(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store(cls=JobArrivesDuringTheLook)
    await seed_open(store, 5)
    service = Service(store, load_config(ROUTES_V2), clock=Clock())
    worker = jobs.Worker(service, poll=30)
    created: list[Job] = []

    async def arrive() -> None:
        created.append(await service.bulk.start_job(REPLAY, EventFilter(), requested_by="api:ops"))
        worker.notify()

    store.arrive = arrive
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        while not created:
            await asyncio.sleep(0.01)
        done = await until_job(service, created[0].id, "completed", timeout=3)  # not 30 s
    finally:
        stop.set()
        await asyncio.wait_for(running, 5)
    assert done.done == 5


async def test_the_worker_prunes_by_retention_on_its_own(
    open_store: OpenStore, load_config: LoadConfig
) -> None:
    store = await open_store()
    await seed_open(store, 40, at=NOW - 2 * HOUR)
    recent = plain_event(500, at=NOW - 60)
    await store.record(recent, [])
    service = Service(store, load_config(ROUTES_RETAINED), clock=Clock())
    stop = asyncio.Event()
    running = asyncio.create_task(jobs.Worker(service, poll=30, prune_every=0.02).run(stop))
    try:

        async def pruned() -> None:
            while await store.reads.count_events() > 1:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(pruned(), 5)
    finally:
        stop.set()
        await asyncio.wait_for(running, 5)
    assert [e.id for e in await store.reads.events_page()] == [recent.id]

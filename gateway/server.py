"""The `gateway serve` process: open the database, serve the app with Hypercorn (or uvicorn: ``--server``),
and run tasks beside it (the embedded executor), or in supervised `gateway worker` children (``--workers``),
or not at all (``--executor off``); stop cleanly on SIGTERM/SIGINT (drain requests, then running attempts or
the children, then close). I/O: sockets, signals, child processes, the database file.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from prometheus_client import disable_created_metrics

from gateway import __version__
from gateway.errors import GatewayError, StoreError
from gateway.execution.executor import Executor, ExecutorOptions
from gateway.keys.keyring import Keyring
from gateway.model import LIVE, LOST, SERVE, STOPPED, Secret, new_id
from gateway.records import serving
from gateway.records.service import Service
from gateway.records.serving import ServingWatch, live_since
from gateway.records.worker import Worker
from gateway.report import Gauges, QueueDepth
from gateway.routes.load import Config
from gateway.store.interface import Reads, RunQueue, Store
from gateway.store.open import absolute as child_db
from gateway.store.open import open_store, shown
from gateway.store.sqlite.schema import CHECK_BUDGET
from gateway.supervisor import ChildExit, ChildSpec, Supervisor
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.logs import Scrub
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.tracing import Tracing
from gateway.web.api import create_api
from gateway.web.app import App, create_admin_app, create_app, create_metrics_app
from gateway.web.auth import AdminKey
from gateway.web.budget import DEFAULT_BODY_BUDGET, BodyBudget
from gateway.web.dashboard import create_dashboard
from gateway.web.listen import Listener, bind_address, check_free, loop_factory, run_server

log = logging.getLogger("gateway.server")
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
LARGE_BLOCK = 1024 * 1024  # bytes: blocks this large are mapped on their own, and unmapped when freed


@dataclass(frozen=True, slots=True)
class ServeOptions:
    db: str | os.PathLike[str]  # a SQLite file, or a postgresql:// address
    host: str = "127.0.0.1"
    port: int = 8000
    shutdown_grace: float = 10.0  # seconds in-flight requests get to finish after SIGTERM
    concurrency: int = 100  # runs executing at once
    threads: int = 8  # worker threads for sync tasks
    drain_timeout: float = 30.0  # seconds running attempts get after SIGTERM before being requeued
    body_timeout: float | None = (
        None  # seconds a hook body may take after its head (None: hooks.BODY_TIMEOUT)
    )
    body_budget: int = DEFAULT_BODY_BUDGET  # bytes of hook bodies held at once (web/budget.py)
    task_logs: bool = False  # also write what tasks log to the process log
    admin_key: AdminKey | None = None  # the admin API is served only with a key to check its tokens
    admin_host: str | None = None  # serve the admin API on its own listener (else at /api beside /hooks)
    admin_port: int | None = None
    trace_url: str | None = (
        None  # a trace UI's URL with {trace_id} in it: the dashboard links trace ids there
    )
    metrics: bool = True  # serve Prometheus metrics at /metrics
    metrics_host: str | None = None  # serve /metrics on its own listener (else beside /hooks)
    metrics_port: int | None = None
    metrics_token: Secret | None = None  # GATEWAY_METRICS_TOKEN: scrapes need it as a bearer token
    server: str = "hypercorn"  # or "uvicorn" (httptools + uvloop, the `uvicorn` extra)
    executor: bool = True  # run tasks in this process; False: intake only (`--executor off`, or --workers)
    workers: int = 0  # `gateway worker` children to supervise (their runs recovered when one dies)
    worker_argv: tuple[str, ...] = ()  # the children's command line, without GATEWAY_WORKER_ID


def _listener(options: ServeOptions, host: str, port: int) -> Listener:
    return Listener(host, port, options.server, options.shutdown_grace)


def _listeners(options: ServeOptions) -> list[tuple[str, str, int]]:
    """(what, host, port) of every listener: the hooks', and the admin API's and /metrics' own if asked for.
    Raises GatewayError when two of them would share an address."""
    wanted = [("/hooks", options.host, options.port)]
    if options.admin_key is not None and (options.admin_host is not None or options.admin_port is not None):
        wanted.append(
            ("the admin API", options.admin_host or options.host, options.admin_port or options.port)
        )
    if options.metrics and (options.metrics_host is not None or options.metrics_port is not None):
        wanted.append(
            ("/metrics", options.metrics_host or options.host, options.metrics_port or options.port)
        )
    seen: dict[tuple[str, int], str] = {}
    for what, host, port in wanted:
        if (host, port) in seen:
            raise GatewayError(
                f"{what} and {seen[host, port]} would both listen on {bind_address(host, port)}: give {what} "
                "another port (--admin-port, --metrics-port), or set neither to serve it beside the hooks"
            )
        seen[host, port] = what
    return wanted


def give_back_large_blocks() -> None:
    """Have large freed blocks (request bodies) go back to the system. glibc raises its mmap threshold to
    the largest block freed, up to 32 MiB, so after one flood of 10 MiB bodies later ones come from the heap
    and stay resident when freed (100 forged 10 MiB bodies: 440 MiB still held 10 s later, 113 MiB with
    the threshold fixed; bench/memory.py). A MALLOC_MMAP_THRESHOLD_ set in the environment wins; other C
    libraries are left alone."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)


async def serve(
    config: Config,
    options: ServeOptions,
    stop: asyncio.Event | None = None,
    *,
    tracing: Tracing | None = None,
    scrub: Scrub | None = None,
) -> None:
    """Run until ``stop`` is set (SIGTERM and SIGINT set it); then drain and close the store. ``tracing``
    (from the OTEL_* variables) is shut down, flushing its spans, after the store closes; ``scrub`` removes
    the configured secrets from what is stored of failed attempts."""
    listeners = _listeners(options)
    give_back_large_blocks()
    loop_factory(options.server)  # an unknown server or a missing extra, in one line, before anything opens
    for _, host, port in listeners:
        check_free(host, port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tracing = tracing or Tracing.off()
    try:
        await _serve(config, options, stop, tracing, scrub or Scrub())
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await asyncio.to_thread(tracing.shutdown)


async def _serve(
    config: Config, options: ServeOptions, stop: asyncio.Event, tracing: Tracing, scrub: Scrub
) -> None:
    telemetry = _telemetry(config, options, tracing, scrub)
    # listen: runs that `gateway replay`/`rerun` commit to this file start here at once, not at the next poll;
    # check: a corrupted file stops start-up before anything listens (bounded: schema.CHECK_BUDGET)
    store = await open_store(options.db, on_batch=telemetry.committed, listen=True, check=CHECK_BUDGET)
    keyring = Keyring(config.sources.values())
    try:
        executor = None
        if options.executor and not options.workers:
            executor_options = _executor_options(config, options)
            executor = Executor(
                store.runs, config.tasks, executor_options, clock=store.runs.clock, telemetry=telemetry
            )
        service = Service(store, config, telemetry=telemetry)
        worker = Worker(service)
        key = options.admin_key
        api = None if key is None else create_api(service, key, on_job=worker.notify)
        ui = None if key is None else _dashboard(service, key, worker, telemetry, options.trace_url)
        gauges = gauge_reader(config, store.reads, executor)
        servers = _servers(config, options, stop, store, keyring, telemetry, gauges, api, ui)
        try:
            async with asyncio.TaskGroup() as group:
                for server in servers:
                    group.create_task(server)
                if executor is not None:
                    group.create_task(executor.run(stop))
                else:  # tasks run elsewhere: say when a routed task has no live worker
                    log.info("%s", _elsewhere(options))
                    watch = ServingWatch(store.reads, {route.task for route in config.routes})
                    group.create_task(watch.run(stop))
                if options.workers:
                    group.create_task(children(options, store.runs, stop))
                group.create_task(worker.run(stop))
        except* OSError as failed:  # a listener could not bind: say so in one line, not a traceback
            reason = "; ".join(str(exc) for exc in failed.exceptions)
            raise GatewayError(
                f"cannot listen ({reason}); is another process using the port? choose another --port "
                "or --admin-port"
            ) from None
    finally:
        await keyring.aclose()
        await store.close()
        log.info("gateway stopped; every acknowledged event is on disk")


def _elsewhere(options: ServeOptions) -> str:
    if options.workers:
        return f"tasks run in {options.workers} `gateway worker` child process(es), supervised by this one"
    return (
        "executor off: this process takes webhooks only (task code is not imported); runs wait queued for "
        "`gateway worker` processes on this database (see `gateway workers`)"
    )


async def children(options: ServeOptions, runs: RunQueue, stop: asyncio.Event) -> None:
    """Supervise ``options.workers`` `gateway worker` children until ``stop``; when one dies, however it
    dies, its runs are queued again at once (a crash counted, the attempt recorded crashed with its worker),
    not after its lease, and it is started again with backoff."""

    def spec(slot: int, generation: int) -> ChildSpec:
        # A child stops if this process dies; its database comes in its environment, never its command line
        # (which `ps` shows to everyone on the host, a PostgreSQL password and all).
        env = {"GATEWAY_SUPERVISOR_PID": str(os.getpid()), "GATEWAY_DB": child_db(options.db)}
        return ChildSpec(options.worker_argv, env, f"worker {slot}", new_id("wrk"))

    async def exited(child: ChildExit) -> None:
        try:
            recovered = await runs.recover(now=runs.clock(), dead=(child.worker_id,))
        except StoreError as exc:  # its leases expire; any worker's sweep recovers them then
            log.error("could not queue again the runs of %s: %s", child.worker_id, exc)
            return
        for run in recovered:
            log.warning(
                "run %s (task %s) was executing in %s (pid %d) when it %s: now %s after %d crash(es)",
                *(run.id, run.task_id, child.worker_id, child.pid, child.how, run.status, run.crashes),
            )

    supervisor = Supervisor(options.workers, spec, exited, drain_timeout=options.drain_timeout + 5)
    await supervisor.run(stop)


def _telemetry(config: Config, options: ServeOptions, tracing: Tracing, scrub: Scrub) -> Telemetry:
    """Spans, and Prometheus metrics unless --no-metrics, with each sender's ack budget."""
    metrics = None
    if options.metrics:
        # No *_created twin of every series: half the scrape, nothing lost.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        budgets = {s.name: s.sender_timeout for s in config.sources.values() if s.sender_timeout is not None}
        metrics = Metrics(budgets, version=__version__)
    tracing.on_export_failure(metrics.trace_export_failed if metrics is not None else None)
    return Telemetry(tracing, metrics, scrub)


def _executor_options(config: Config, options: ServeOptions) -> ExecutorOptions:
    return ExecutorOptions(
        concurrency=options.concurrency,
        threads=options.threads,
        queues=config.queues,
        drain_timeout=options.drain_timeout,
        own_loop=True,  # a task that blocks its loop never stalls ingest
        task_logs=options.task_logs,
        kind=SERVE,
        version=__version__,
    )


def _dashboard(
    service: Service, key: AdminKey, worker: Worker, telemetry: Telemetry, trace_url: str | None
) -> App:
    """The dashboard at /ui, beside the admin API: same tokens, same service."""
    metrics = telemetry.metrics
    return create_dashboard(
        service, key, on_job=worker.notify, trace_url=trace_url, acks=metrics.acks if metrics else dict
    )


def _servers(
    config: Config,
    options: ServeOptions,
    stop: asyncio.Event,
    store: Store,
    keyring: Keyring,
    telemetry: Telemetry,
    gauges: Callable[[], Awaitable[Gauges]],
    api: App | None,
    ui: App | None = None,
) -> list[Coroutine[Any, Any, None]]:
    """One server per listener: the hooks (with /api and /metrics beside them unless they have their own)."""
    listeners = _listeners(options)
    apart = {what for what, _, _ in listeners[1:]}
    app = create_app(
        config,
        store,
        keyring=keyring,
        api=None if "the admin API" in apart else api,
        dashboard=None if "the admin API" in apart else ui,
        telemetry=telemetry,  # every request is counted and traced, wherever /metrics is served
        gauges=None if "/metrics" in apart else gauges,  # no gauges: no /metrics route beside the hooks
        metrics_token=options.metrics_token,
        body_timeout=options.body_timeout,
        budget=BodyBudget(options.body_budget),
    )
    on = f"http://{bind_address(options.host, options.port)} ({options.server})"
    sums = f"{len(config.sources)} source(s), {len(config.routes)} route(s), {len(config.tasks)} task(s)"
    log.info("gateway starting on %s with %s, database %s", on, sums, shown(options.db))
    servers = [run_server(app, _listener(options, options.host, options.port), stop)]
    key = options.admin_key
    for what, host, port in listeners[1:]:
        if what == "/metrics":
            extra = create_metrics_app(telemetry, gauges, options.metrics_token)
            log.info("Prometheus metrics on http://%s/metrics", bind_address(host, port))
        elif api is not None and key is not None:
            extra = create_admin_app(api, ui)
            where = bind_address(host, port)
            log.info("admin API on http://%s/api (%s tokens), dashboard at /ui", where, key.algorithm)
        else:
            continue
        servers.append(run_server(extra, _listener(options, host, port), stop))
    _announce(options, key, apart, telemetry.tracing)
    return servers


def gauge_reader(
    config: Config, reads: Reads, executor: Executor | None, clock: Callable[[], float] = time.time
) -> Callable[[], Awaitable[Gauges]]:
    """What /metrics reads at scrape time: the queues on disk (every known queue, 0 when empty), this
    process's executor slots, or (intake that runs no tasks) the workers and the runs no live worker
    serves. A store that cannot be read leaves the queues out, not the executor."""
    known = _queues(config)

    async def gauges() -> Gauges:
        now = clock()
        try:
            waiting = {q.queue: q for q in await reads.queue_depths()}
        except StoreError as exc:
            log.warning("/metrics: could not read the queues: %s", exc)
            waiting = None
        queues = () if waiting is None else _with_empty(waiting, known)
        if executor is not None:
            return Gauges(now, queues, executor.options.concurrency, executor.busy())
        try:
            workers = await reads.workers(live_since=live_since(now))
            rows = serving.waiting(workers, await reads.waiting_by_task())
        except StoreError as exc:
            log.warning("/metrics: could not read the workers: %s", exc)
            return Gauges(now, queues)
        by_status = Counter(w.status for w in workers)
        statuses = {status: by_status[status] for status in (LIVE, LOST, STOPPED)}
        return Gauges(now, queues, unserved=serving.unserved(rows), workers=statuses)

    return gauges


def _queues(config: Config) -> set[str]:
    """Every queue routes.yaml and the tasks name: /metrics shows them at 0 when empty, not as no data."""
    names = set(config.queues) | {task.options()["queue"] for task in config.tasks.values()}
    return names | {str(route.options["queue"]) for route in config.routes if "queue" in route.options}


def _with_empty(waiting: dict[str, QueueDepth], known: set[str]) -> tuple[QueueDepth, ...]:
    empty = {name: QueueDepth(name, 0, None) for name in known if name not in waiting}
    return tuple({**empty, **waiting}.values())


def _announce(options: ServeOptions, key: AdminKey | None, apart: set[str], tracing: Tracing) -> None:
    """Say in the log where the admin API, /metrics and traces go (or why they are off)."""
    if key is None:
        log.info("admin API off: set GATEWAY_ADMIN_SECRET or --admin-public-key to serve /api and /ui")
    elif "the admin API" not in apart:
        log.info("admin API at /api (%s tokens), dashboard at /ui", key.algorithm)
    if not options.metrics:
        log.info("/metrics off (--no-metrics)")
    elif "/metrics" not in apart:
        guarded = "a bearer token" if options.metrics_token is not None else "no token: GATEWAY_METRICS_TOKEN"
        log.info("Prometheus metrics at /metrics (%s)", guarded)
    log.info("%s", tracing.describe())

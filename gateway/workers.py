"""The `gateway worker` process: it runs tasks and nothing else. It imports the task modules, registers in
the store's workers table, claims runs of its tasks (and queues), runs them with the executor (retries,
timeouts, limits held by the store across processes, per-key order) and records every attempt under its id.
SIGTERM drains it like `gateway serve`. I/O: signals, the database file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass

from gateway import __version__
from gateway.errors import GatewayError
from gateway.execution.executor import Executor, ExecutorOptions
from gateway.model import WORKER
from gateway.routes.load import Config
from gateway.store.open import open_store, shown
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.logs import Scrub
from gateway.telemetry.tracing import Tracing

log = logging.getLogger("gateway.worker")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    db: str | os.PathLike[str]  # a SQLite file, or a postgresql:// address
    concurrency: int = 100  # runs executing at once in this process
    threads: int = 8  # threads for sync tasks
    drain_timeout: float = 30.0  # seconds running attempts get after SIGTERM before being requeued
    queues: frozenset[str] | None = None  # claim runs of these queues only (None: every queue)
    worker_id: str | None = None  # GATEWAY_WORKER_ID: set by `gateway serve --workers` for its children
    task_logs: bool = False
    memory_limit: int | None = None  # bytes of address space (RLIMIT_AS): past it allocations fail
    parent_pid: int | None = None  # GATEWAY_SUPERVISOR_PID: `serve --workers`; SIGTERM when it dies


def served(config: Config, queues: frozenset[str] | None) -> list[str]:
    """The task ids a worker with ``queues`` can run: every task whose queue, or a route's queue for it,
    is among them."""
    if queues is None:
        return sorted(config.tasks)
    named = {t.id for t in config.tasks.values() if t.queue in queues}
    named |= {r.task for r in config.routes if str(r.options.get("queue", "")) in queues}
    return sorted(named & set(config.tasks))


async def work(
    config: Config,
    options: WorkerOptions,
    stop: asyncio.Event | None = None,
    *,
    tracing: Tracing | None = None,
    scrub: Scrub | None = None,
) -> None:
    """Run tasks until ``stop`` is set (SIGTERM and SIGINT set it); then drain and close the store."""
    if not config.tasks:
        raise GatewayError(f"{config.file.name} declares no task: a worker would have nothing to run")
    if options.queues is not None and not served(config, options.queues):
        known = sorted({t.queue for t in config.tasks.values()})
        raise GatewayError(
            f"--queues {','.join(sorted(options.queues))}: no task of {config.file.name} is in these "
            f"queues (its queues: {', '.join(known)})"
        )
    if options.memory_limit is not None:
        limit_memory(options.memory_limit)
    if options.parent_pid is not None:
        die_with_parent(options.parent_pid)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tracing = tracing or Tracing.off()
    try:
        store = await open_store(options.db, listen=True)
        try:
            telemetry = Telemetry(tracing, None, scrub or Scrub())
            executor_options = ExecutorOptions(
                concurrency=options.concurrency,
                threads=options.threads,
                queues=config.queues,
                drain_timeout=options.drain_timeout,
                own_loop=True,
                task_logs=options.task_logs,
                worker_id=options.worker_id,
                kind=WORKER,
                only_queues=options.queues,
                version=__version__,
            )
            executor = Executor(
                store.runs, config.tasks, executor_options, clock=store.runs.clock, telemetry=telemetry
            )
            queues = (
                "every queue" if options.queues is None else f"queues {', '.join(sorted(options.queues))}"
            )
            log.info(
                "worker %s (pid %d) running %d task(s) (%s) from %s, database %s, concurrency %d",
                *(executor.worker_id, os.getpid(), len(config.tasks), queues, config.file, shown(options.db)),
                options.concurrency,
            )
            await executor.run(stop)
        finally:
            await store.close()
        log.info("worker %s stopped", executor.worker_id)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await asyncio.to_thread(tracing.shutdown)


def limit_memory(limit: int) -> None:
    """Cap this process's address space: a task that allocates past it gets MemoryError (its attempt fails
    and is retried), and one that the cap kills in native code is restarted by its supervisor, while intake,
    in another process, goes on. Raises GatewayError when the limit cannot be set."""
    import resource

    try:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY and limit > hard:
            raise GatewayError(f"--memory-limit {limit} is above this process's hard limit {hard}")
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError) as exc:
        raise GatewayError(f"--memory-limit {limit}: cannot set it ({exc})") from None


PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent(parent_pid: int) -> None:
    """A child of `serve --workers` gets SIGTERM (and drains) when its supervisor dies, even by SIGKILL,
    instead of running on as an orphan beside the children of the next `serve`. Linux only: elsewhere the
    child runs on until stopped. Raises GatewayError when the supervisor is gone already."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        log.debug("no prctl here: this worker outlives its supervisor if that one is killed")
    if os.getppid() != parent_pid:  # it died before prctl took effect
        raise GatewayError(f"its supervisor (pid {parent_pid}) is gone; nothing was claimed")

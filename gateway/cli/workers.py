"""Task execution apart from intake: `gateway worker` (a process that runs tasks and nothing else), `gateway
workers` (who runs what), and the flags `gateway serve` takes to hand its tasks to workers (--executor off,
--workers N). I/O: the database named by --db, and the worker's process.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from gateway import __version__
from gateway.cli import flags
from gateway.cli.flags import AddParser, Env, env_flag, print_json, with_service
from gateway.errors import GatewayError, Problem
from gateway.model import STOPPED
from gateway.records import serving
from gateway.records.service import Service
from gateway.records.view import iso, render_table
from gateway.routes.sizes import parse_size
from gateway.telemetry import logs
from gateway.telemetry.exporter import from_env as tracing_from_env

Flags = Callable[[argparse.ArgumentParser, Env], None]


def serve_flags(p: argparse.ArgumentParser, env: Env) -> None:
    """--executor and --workers, on `gateway serve`."""
    env_flag(
        p,
        "--executor",
        env,
        "GATEWAY_EXECUTOR",
        "on",
        "on: run tasks in this process, beside intake (one command, the default); off: intake only, task "
        "code is not imported at all (a broken task module cannot stop intake), runs wait queued for a "
        "`gateway worker` that serves their task",
        choices=("on", "off"),
    )
    env_flag(
        p,
        "--workers",
        env,
        "GATEWAY_WORKERS",
        "0",
        "run tasks in N `gateway worker` child processes on this host instead of in this one (every core "
        "works; a child that dies, however it dies, is restarted with backoff and its runs are queued "
        "again at once); 0: as --executor says",
        type=_count,
        metavar="N",
    )


def queues_flag(p: argparse.ArgumentParser, env: Env) -> None:
    env_flag(
        p,
        "--queues",
        env,
        "GATEWAY_QUEUES",
        "",
        "run only runs of these queues, comma-separated (a task's queue is its id unless it names one); "
        "empty: every queue",
        metavar="Q1,Q2",
    )


def add_parsers(add: AddParser, env: Env, *, execution: Flags, log_flags: Flags) -> None:
    p = add(
        "worker",
        "Run tasks and nothing else, until SIGTERM: claim the queued runs of this routes.yaml's tasks from "
        "the database, run them (retries, timeouts, limits and per-key order hold across every worker on "
        "the file) and record every attempt under this worker's id. Start as many as you like beside "
        "`gateway serve --executor off`.",
    )
    flags.routes_arg(p, env)
    flags.db_arg(p, env)
    execution(p, env)
    queues_flag(p, env)
    env_flag(
        p,
        "--memory-limit",
        env,
        "GATEWAY_MEMORY_LIMIT",
        "",
        "cap this worker's address space (512MiB, 2GiB; RLIMIT_AS): a task allocating past it fails with "
        "MemoryError and is retried; empty: no cap. Under `serve --workers`, set the env for every child",
        type=_optional_size,
        metavar="SIZE",
    )
    log_flags(p, env)

    p = add("workers", "List the processes that run tasks: id, host, pid, tasks, running, heartbeat, status.")
    flags.db_arg(p, env)
    p.add_argument("--all", action="store_true", help="also workers that stopped (kept 7 days)")
    p.add_argument("--json", action="store_true", help="machine-readable output (one JSON object)")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _optional_size(text: str) -> int | None:
    if not text.strip():
        return None
    problems: list[Problem] = []
    size = parse_size(text, "size", problems, 0)
    if problems or size < 64 * 1024 * 1024:
        raise argparse.ArgumentTypeError(f"expected a size of at least 64MiB, such as 2GiB, got {text!r}")
    return size


def _pid(text: str | None) -> int | None:
    return int(text) if text and text.isascii() and text.isdigit() else None


def parse_queues(text: str) -> frozenset[str] | None:
    names = [name.strip() for name in text.split(",")]
    if not any(names):
        return None
    if not all(names):
        raise argparse.ArgumentTypeError(f"--queues: an empty queue name in {text!r}")
    return frozenset(names)


def worker_argv(args: argparse.Namespace) -> tuple[str, ...]:
    """The command line `gateway serve --workers N` starts each child with."""
    return (
        sys.executable,
        "-m",
        "gateway",
        "worker",
        *("--routes", str(Path(args.routes).resolve())),  # --db: GATEWAY_DB, in the child's environment
        *("--concurrency", str(args.concurrency), "--threads", str(args.threads)),
        *("--drain-timeout", str(args.drain_timeout), "--log-level", args.log_level),
        *("--log-format", args.log_format),
        *(["--task-logs"] if args.task_logs else []),
    )


def worker_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    # A SIGTERM before the worker's loop takes it over (while task modules import): nothing was claimed
    # yet, so stop at once, exit 0, as a drain with nothing to drain would.
    previous = signal.signal(signal.SIGTERM, _stop_starting)
    try:
        return _worker(args, env, err)
    except _Stopped:
        print("gateway worker: stopped (SIGTERM) while starting; nothing was claimed", file=err)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Stopped(Exception):
    pass


def _stop_starting(signum: int, frame: object) -> None:
    raise _Stopped


def _worker(args: argparse.Namespace, env: Env, err: TextIO) -> int:
    from gateway.workers import WorkerOptions, work

    logs.setup(level=args.log_level, fmt=args.log_format, stream=err)
    queues = parse_queues(args.queues)
    loaded = flags.load_config(args, env, err, sources=())  # a worker verifies nothing: no source secret
    if loaded is None:
        return 1
    secrets = [s.reveal() for source in loaded.sources.values() for s in source.secrets]
    logs.setup(level=args.log_level, fmt=args.log_format, stream=err, secrets=secrets)
    options = WorkerOptions(
        db=args.db,
        concurrency=args.concurrency,
        threads=args.threads,
        drain_timeout=args.drain_timeout,
        queues=queues,
        worker_id=env.get("GATEWAY_WORKER_ID") or None,
        parent_pid=_pid(env.get("GATEWAY_SUPERVISOR_PID")),
        task_logs=args.task_logs,
        memory_limit=args.memory_limit,
    )
    try:
        tracing = tracing_from_env(env, __version__)
        asyncio.run(work(loaded, options, tracing=tracing, scrub=logs.Scrub(secrets)))
    except GatewayError as exc:
        print(f"gateway worker: {exc}", file=err)
        return 1
    return 0


def workers_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    async def show(service: Service) -> int:
        now = service.store.runs.clock()  # heartbeats are stamped by the store's clock
        workers = await service.store.reads.workers(live_since=serving.live_since(now))
        shown = [w for w in workers if args.all or w.status != STOPPED]
        rows = [
            {
                "id": w.id,
                "kind": w.kind,
                "host": w.host,
                "pid": w.pid,
                "tasks": list(w.tasks),
                "queues": None if w.queues is None else list(w.queues),
                "concurrency": w.concurrency,
                "running": w.running,
                "started_at": iso(w.started_at),
                "heartbeat_at": iso(w.heartbeat_at),
                "heartbeat_age": round(now - w.heartbeat_at, 1),
                "stopped_at": iso(w.stopped_at),
                "status": w.status,
                "version": w.version,
            }
            for w in shown
        ]
        if args.json:
            print_json({"workers": rows}, out)
            return 0
        if not rows:
            print("no worker is registered: start `gateway serve` or `gateway worker`", file=out)
            return 0
        table = [
            {**row, "tasks": _tasks(w.tasks), "heartbeat": f"{now - w.heartbeat_at:.0f} s ago"}
            for row, w in zip(rows, shown, strict=True)
        ]
        columns = ["id", "kind", "host", "pid", "status", "running", "heartbeat", "tasks"]
        print(render_table(table, columns), file=out)
        return 0

    return with_service(args, env, err, show)


def _tasks(tasks: Sequence[str]) -> str:
    return ",".join(tasks) if len(tasks) <= 4 else f"{','.join(tasks[:3])},… ({len(tasks)})"


async def waiting_for_worker(service: Service, out: TextIO, *, as_json: bool) -> int:
    """`gateway runs --waiting-for-worker`: the tasks whose runs wait with no live worker to serve them."""
    now = time.time()
    workers = await service.store.reads.workers(live_since=serving.live_since(now))
    rows = serving.waiting(workers, await service.store.reads.waiting_by_task())
    unserved = [
        {"task": r.task, "queue": r.queue, "waiting": r.runs, "oldest_created_at": iso(r.oldest)}
        for r in rows
        if not r.served
    ]
    if as_json:
        print_json({"waiting_for_worker": unserved}, out)
    elif unserved:
        print(render_table(unserved, ["task", "queue", "waiting", "oldest_created_at"]), file=out)
        print("start a worker that serves them: gateway worker --routes ... --db ...", file=out)
    else:
        print("every waiting run has a live worker for its task", file=out)
    return 0

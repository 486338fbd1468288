"""Bulk jobs from the terminal: a replay or rerun by filter worked here in the foreground (its dry run first),
and `gateway jobs` to list, show, cancel or resume them. Ctrl-C leaves a job for `gateway serve` (or
`gateway jobs JOB_ID --resume`) to finish, without doubling any item.

I/O: the database named by --db and routes.yaml, through the service; signals; prints to the given streams.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import signal
import time
from typing import TextIO

from gateway.cli.flags import AddParser, Env, db_arg, print_json, routes_arg, with_service
from gateway.model import COMPLETED, JOB_RUNNING, REPLAY, EventFilter, Job, RunFilter
from gateway.records import worker
from gateway.records.service import Service
from gateway.records.view import job_json, render_table


def add_parser(add: AddParser, env: Env) -> None:
    p = add("jobs", "List bulk replay/rerun jobs, or show, cancel or resume one.")
    routes_arg(p, env)
    db_arg(p, env)
    p.add_argument("id", nargs="?", metavar="JOB_ID")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--cancel", action="store_true", help="stop the job after its current chunk")
    action.add_argument("--resume", action="store_true", help="work the job here until it is done")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def bulk(
    args: argparse.Namespace, env: Env, out: TextIO, err: TextIO, kind: str, f: EventFilter | RunFilter
) -> int:
    noun = "event" if kind == REPLAY else "run"

    async def work(service: Service) -> int:
        if args.dry_run:
            preview = await service.bulk.preview(kind, f)
            if args.json:
                shown = {"kind": kind, "count": preview.count, "sample": preview.sample}
                print_json(shown | ({"replays_left_out": preview.left_out} if kind == REPLAY else {}), out)
            else:
                print(f"would {kind} {preview.count} {noun}(s){_leaving_out(preview.left_out)}", file=out)
                for item in preview.sample:
                    print(f"  {item}", file=out)
                if preview.count > len(preview.sample):
                    print(f"  … and {preview.count - len(preview.sample)} more", file=out)
            return 0
        owner = worker.owner_name("cli")
        job = await service.bulk.start_job(kind, f, requested_by=f"cli:{getpass.getuser()}", owner=owner)
        left_out = _leaving_out(await service.bulk.replays_left_out(job))
        print(f"job {job.id}: {kind} of {job.total} {noun}(s){left_out}", file=err)
        job = await _work_here(service, job, owner, err)
        return _report(job, args, out, err)

    return with_service(args, env, err, work, needs_routes=True)


def _leaving_out(replays: int) -> str:
    """What a bulk replay left out, for the line that counts what it takes."""
    return f", leaving out {replays} replay(s) (--include-replays takes them too)" if replays else ""


async def _work_here(service: Service, job: Job, owner: str, err: TextIO) -> Job:
    """Work a job in the foreground; Ctrl-C or SIGTERM release it after the current chunk."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    last = [0.0]

    def progress(j: Job) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or j.status != JOB_RUNNING:
            last[0] = now
            print(f"job {j.id}: {j.done}/{j.total} item(s), {j.created} run(s) queued", file=err)

    try:
        return await worker.work(service.bulk, job, owner, on_progress=progress, stop=stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _report(job: Job, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.json:
        print_json(job_json(job), out)
    elif job.status == COMPLETED:
        print(f"job {job.id} completed: {job.done} item(s), {job.created} run(s) queued", file=out)
    elif job.status == JOB_RUNNING:
        print(
            f"job {job.id} stopped at {job.done}/{job.total}; `gateway serve` finishes it, or run "
            f"`gateway jobs {job.id} --resume`",
            file=out,
        )
    else:
        print(f"job {job.id} {job.status} at {job.done}/{job.total}: {job.error or ''}".rstrip(), file=out)
    return 0 if job.status in (COMPLETED, JOB_RUNNING) else 1


def jobs_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    if args.id is None and (args.cancel or args.resume):
        raise argparse.ArgumentTypeError("--cancel and --resume need a JOB_ID")

    async def work(service: Service) -> int:
        if args.id is None:
            page = await service.bulk.jobs(limit=50)
            rows = [job_json(j) for j in page.items]
            if args.json:
                print_json(rows, out)
            else:
                columns = ["id", "kind", "status", "done", "total", "created", "created_at", "requested_by"]
                print(render_table(rows, columns) or "no jobs", file=out)
            return 0
        if args.cancel:
            job = await service.bulk.cancel_job(args.id)
        elif args.resume:
            owner = worker.owner_name("cli")
            current = await service.bulk.job(args.id)
            dead = (
                current.owner if worker.holder_gone(current.owner) else None
            )  # no need to wait for its lease
            taken = await service.bulk.take(args.id, owner, from_dead=dead, lease=worker.LEASE)
            job = await _work_here(service, taken, owner, err)
        else:
            job = await service.bulk.job(args.id)
        return _report(job, args, out, err) if (args.cancel or args.resume) else _show(job, args, out)

    return with_service(args, env, err, work, needs_routes=args.resume)


def _show(job: Job, args: argparse.Namespace, out: TextIO) -> int:
    data = job_json(job)
    if args.json:
        print_json(data, out)
    else:
        for key, value in data.items():
            shown = json.dumps(value) if isinstance(value, dict) else ("-" if value is None else value)
            print(f"{key:<13}{shown}", file=out)
    return 0

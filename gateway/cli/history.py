"""Find and inspect stored records from the terminal: `gateway events | runs | show | cancel | rejections`.

I/O: opens the database named by --db (never creates one) through the service, and prints to the streams
it is given. The admin API answers the same questions from the same service.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TextIO

from gateway.cli.flags import AddParser, Env, db_arg, print_json, window, window_args, with_service
from gateway.cli.workers import waiting_for_worker
from gateway.errors import Invalid
from gateway.model import EVENT_STATUSES, RUN_STATUSES, EventFilter, RunFilter
from gateway.records.page import Page, decode_cursor, decode_rejection_cursor, limited
from gateway.records.service import Service
from gateway.records.view import (
    event_detail,
    event_summary,
    rejection_summary,
    render_table,
    run_detail,
    run_summary,
)


def add_parsers(add: AddParser, env: Env) -> None:
    """Add this module's subcommands; ``add(name, help)`` makes a subparser."""

    def listing(p: argparse.ArgumentParser, what: str) -> None:
        db_arg(p, env)
        window_args(p, what)
        p.add_argument("--limit", type=int, default=50, help="at most this many (default 50, at most 500)")
        p.add_argument("--cursor", help="continue a listing where the previous one said `more: --cursor …`")
        p.add_argument("--json", action="store_true", help="machine-readable output (one JSON object)")

    p = add("events", "List stored events, newest first.")
    listing(p, "events received")
    p.add_argument("--source", help="only this source")
    p.add_argument("--type", dest="event_type", metavar="TYPE", help="only this event type (e.g. push)")
    p.add_argument("--status", choices=EVENT_STATUSES, help="only events with this status")
    p.add_argument("--task", help="only events with a run of this task")
    p.add_argument("--run-status", choices=RUN_STATUSES, help="only events with a run in this status")

    p = add(
        "show",
        "Show one event (evt_…: headers, payload, runs, replays) or one run (run_…: attempts, errors, "
        "logs, output, reruns).",
    )
    db_arg(p, env)
    p.add_argument("id", metavar="EVENT_ID|RUN_ID")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("runs", "List runs, newest first.")
    listing(p, "runs created")
    p.add_argument("--status", choices=RUN_STATUSES, help="only runs with this status")
    p.add_argument("--task", help="only runs of this task id")
    p.add_argument("--source", help="only runs of events from this source")
    p.add_argument("--event", dest="event_id", metavar="EVENT_ID", help="only runs of this event")
    p.add_argument(
        "--waiting-for-worker",
        action="store_true",
        help="instead, the tasks whose runs wait queued because no live worker serves them (see `gateway "
        "workers`), with how many wait and since when",
    )

    p = add(
        "cancel", "Cancel a run that is queued or waiting for a retry (a running attempt is not stopped)."
    )
    db_arg(p, env)
    p.add_argument("id", metavar="RUN_ID")

    p = add(
        "rejections",
        "List refused deliveries (bad signature, stale, too large), newest first; a replayable one can be "
        "verified again with `gateway replay --rejection ID` once its secret is fixed.",
    )
    listing(p, "rejections")
    p.add_argument("--source", help="only this source")
    p.add_argument("--reason", help="only this reason (bad_signature, stale_timestamp, too_large, …)")


def _print_page(
    args: argparse.Namespace, out: TextIO, page: Page[Any], rows: list[dict[str, Any]], columns: list[str]
) -> int:
    if args.json:
        print_json({"data": rows, "next_cursor": page.next}, out)
        return 0
    print(render_table(rows, columns) or f"no {args.command}", file=out)
    if page.next:
        print(f"more: --cursor {page.next}", file=out)
    return 0


def _print_detail(args: argparse.Namespace, out: TextIO, detail: dict[str, Any]) -> int:
    text = detail.pop("_text")
    if args.json:
        print_json(detail, out)
    else:
        print(text, file=out)
    return 0


def _paging(args: argparse.Namespace, decode: Callable[[str], object] = decode_cursor) -> None:
    """--limit and --cursor are input like any other: a bad one is a usage error (exit 2) naming the flag,
    before the database is opened."""
    for flag, check in (("limit", limited), ("cursor", decode)):
        value = getattr(args, flag)
        try:
            if value is not None:
                check(value)
        except Invalid as exc:  # "cursor: not a cursor …": the flag names it
            raise argparse.ArgumentTypeError(f"--{flag}: {str(exc).partition(': ')[2]}") from None


def events_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    since, until = window(args)
    f = EventFilter(args.source, args.event_type, args.status, since, until, args.task, args.run_status)
    _paging(args)

    async def work(service: Service) -> int:
        page = await service.events(f, cursor=args.cursor, limit=args.limit)
        columns = ["id", "received_at", "source", "event_type", "status", "verification", "replay_of"]
        return _print_page(args, out, page, [event_summary(e) for e in page.items], columns)

    return with_service(args, env, err, work)


def runs_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    since, until = window(args)
    f = RunFilter(args.status, args.task, args.source, args.event_id, since, until)
    _paging(args)

    async def work(service: Service) -> int:
        if args.waiting_for_worker:
            return await waiting_for_worker(service, out, as_json=args.json)
        page = await service.runs(f, cursor=args.cursor, limit=args.limit)
        columns = ["id", "created_at", "task", "status", "attempts", "duration", "event_id"]
        return _print_page(args, out, page, [run_summary(r) for r in page.items], columns)

    return with_service(args, env, err, work)


def rejections_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    since, until = window(args)
    _paging(args, decode_rejection_cursor)

    async def work(service: Service) -> int:
        page = await service.rejections(
            source=args.source,
            reason=args.reason,
            since=since,
            until=until,
            cursor=args.cursor,
            limit=args.limit,
        )
        columns = ["id", "received_at", "source", "reason", "remote_addr", "body_size", "replayable"]
        columns += ["recovered_as", "detail"]
        return _print_page(args, out, page, [rejection_summary(r) for r in page.items], columns)

    return with_service(args, env, err, work)


def show_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    async def work(service: Service) -> int:
        if args.id.startswith("run_"):
            r = await service.run(args.id)
            detail = run_detail(r.run, r.attempts)
            links = [{"id": i, "created_at": t, "status": s} for i, t, s in r.reruns]
            detail["reruns"] = links
            lines = [f"  {i}  {s}" for i, _, s in r.reruns]
            detail["_text"] += "\nreruns" + ("\n" + "\n".join(lines) if lines else "       none")
        else:
            e = await service.event(args.id)
            detail = event_detail(e.event, e.runs)
            detail["replays"] = [{"id": i, "received_at": t, "status": s} for i, t, s in e.replays]
            lines = [f"  {i}  {s}" for i, _, s in e.replays]
            replay_of = f"\nreplay of    {e.event.replay_of}" if e.event.replay_of else ""
            detail["_text"] += replay_of + "\nreplays" + ("\n" + "\n".join(lines) if lines else "      none")
        return _print_detail(args, out, detail)

    return with_service(args, env, err, work)


def cancel_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    async def work(service: Service) -> int:
        run = await service.cancel(args.id)
        print(f"run {run.id} canceled", file=out)
        return 0

    return with_service(args, env, err, work)

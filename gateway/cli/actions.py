"""Act on stored records from the terminal: `gateway replay | rerun | routes test | prune | token` (bulk jobs
and `gateway jobs` are in jobs.py).

I/O: the database named by --db and routes.yaml (what replays route through), through the service; prints
to the streams it is given.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from gateway.cli import jobs, rejected
from gateway.cli.flags import (
    AddParser,
    Env,
    db_arg,
    print_json,
    routes_arg,
    window,
    window_args,
    with_service,
)
from gateway.errors import Invalid
from gateway.model import (
    EVENT_STATUSES,
    REPLAY,
    RERUN,
    RUN_STATUSES,
    EventFilter,
    RunFilter,
)
from gateway.records.compare import as_json, render
from gateway.records.prune import describe
from gateway.records.service import Service
from gateway.records.view import iso
from gateway.web import auth


def add_parsers(add: AddParser, env: Env) -> None:
    """Add this module's subcommands; ``add(name, help)`` makes a subparser."""
    _replay_parser(add, env)
    _rerun_parser(add, env)
    jobs.add_parser(add, env)
    _routes_parser(add, env)
    _prune_parser(add, env)
    _token_parser(add)


def _bulk_flags(p: argparse.ArgumentParser, what: str) -> None:
    window_args(p, what)
    p.add_argument(
        "--dry-run", action="store_true", help="only print how many would be taken, and the first few"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _replay_parser(add: AddParser, env: Env) -> None:
    p = add(
        "replay",
        "Route stored events again through the current routes.yaml: each gets a new event (replay_of the "
        "original) and new runs. One EVENT_ID, or every event the filters select (a bulk job). With "
        "--rejection/--rejections: verify rejected deliveries again with the current secrets.",
    )
    routes_arg(p, env)
    db_arg(p, env)
    p.add_argument("id", nargs="?", metavar="EVENT_ID", help="replay this one event")
    _bulk_flags(p, "events received")
    p.add_argument("--source", help="only events of this source")
    p.add_argument("--type", dest="event_type", metavar="TYPE", help="only events of this type")
    p.add_argument("--status", help="routed or unrouted; or a run status (failed, …): events with such a run")
    p.add_argument("--task", help="only events with a run of this task")
    rejected.add_flags(p)
    p.add_argument(
        "--include-replays",
        action="store_true",
        help="take events that are replays too (a bulk replay takes original deliveries only: replaying a "
        "window twice must not replay its replays)",
    )


def _rerun_parser(add: AddParser, env: Env) -> None:
    p = add(
        "rerun",
        "Run stored runs' tasks again with the same input (or, for one RUN_ID, --payload): new runs "
        "(rerun_of the original) on the same events. One RUN_ID, or every run the filters select.",
    )
    routes_arg(p, env)
    db_arg(p, env)
    p.add_argument("id", nargs="?", metavar="RUN_ID", help="rerun this one run")
    p.add_argument("--payload", metavar="FILE", help="JSON file with an edited input ('-': stdin)")
    _bulk_flags(p, "runs created")
    p.add_argument("--status", choices=RUN_STATUSES, help="only runs in this status (e.g. failed)")
    p.add_argument("--task", help="only runs of this task")
    p.add_argument("--source", help="only runs of events from this source")


def _routes_parser(add: AddParser, env: Env) -> None:
    p = add(
        "routes",
        "Check routes.yaml against stored history: `gateway routes test` shows which routes stored events "
        "matched when they arrived and which they would match now, before you deploy a change.",
    )
    p.add_argument("action", choices=["test"], help="test: compare the current routes.yaml with history")
    routes_arg(p, env)
    db_arg(p, env)
    p.add_argument("--since", default="7d", help="events received since a duration ago or an ISO time (7d)")
    p.add_argument("--show", type=int, default=20, metavar="N", help="list at most N changed events (20)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _prune_parser(add: AddParser, env: Env) -> None:
    p = add(
        "prune",
        "Remove events, runs, attempts and rejections older than `retention:` in routes.yaml (gateway serve "
        "also does this every 10 minutes). Events with runs still to finish are kept.",
    )
    routes_arg(p, env)
    db_arg(p, env)
    p.add_argument("--dry-run", action="store_true", help="only count what would be removed")


def _token_parser(add: AddParser) -> None:
    # No --routes or --db: a token needs only the admin secret or a private key.
    p = add("token", "Create an admin API token (a JWT), signed with GATEWAY_ADMIN_SECRET or a private key.")
    p.add_argument("action", choices=["create"])
    p.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=auth.SCOPES,
        help="read (list, show, download), replay (replay, rerun, cancel, bulk), trigger (start tasks); "
        "repeat for several",
    )
    p.add_argument("--ttl", default="1h", help="how long it is valid: 15m, 12h, 30d, … (1h; at most 366d)")
    p.add_argument("--subject", default=None, help="who it is for, shown in audit fields (default: $USER)")
    p.add_argument(
        "--private-key",
        metavar="PEM",
        help="sign RS256/ES256 with this private key file instead of GATEWAY_ADMIN_SECRET (HS256)",
    )


# -- replay and rerun ---------------------------------------------------------------------------------


def _run_list(runs: Any) -> str:
    return ", ".join(f"{r.id} ({r.task_id})" for r in runs) or "no runs (no route matches it now)"


def replay_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    if rejected.wanted(args):
        return rejected.replay_rejections(args, env, out, err)
    since, until = window(args)
    status, run_status = args.status, None
    if status is not None and status not in EVENT_STATUSES:
        if status not in RUN_STATUSES:
            raise argparse.ArgumentTypeError(
                f"--status: expected routed, unrouted or a run status ({', '.join(RUN_STATUSES)})"
            )
        status, run_status = None, args.status
    f = EventFilter(args.source, args.event_type, status, since, until, args.task, run_status)
    f = replace(f, include_replays=args.include_replays)
    if args.id is not None:
        if f != EventFilter(include_replays=False) or args.dry_run:
            raise argparse.ArgumentTypeError("give an EVENT_ID or filters (a bulk replay), not both")

        async def one(service: Service) -> int:
            outcome = await service.replay(args.id)
            if args.json:
                runs = [{"id": r.id, "task": r.task_id} for r in outcome.runs]
                print_json({"event_id": outcome.event_id, "replay_of": args.id, "runs": runs}, out)
            else:
                print(f"replayed {args.id} as {outcome.event_id}: {_run_list(outcome.runs)}", file=out)
            return 0

        return with_service(args, env, err, one, needs_routes=True)
    return jobs.bulk(args, env, out, err, REPLAY, f)


def rerun_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    since, until = window(args)
    f = RunFilter(args.status, args.task, args.source, None, since, until)
    if args.id is None:
        if args.payload:
            raise argparse.ArgumentTypeError("--payload edits one run's input: give its RUN_ID")
        return jobs.bulk(args, env, out, err, RERUN, f)
    if f != RunFilter() or args.dry_run:
        raise argparse.ArgumentTypeError("give a RUN_ID or filters (a bulk rerun), not both")
    payload = _read_payload(args.payload) if args.payload else None

    async def one(service: Service) -> int:
        run = await service.rerun(args.id, payload=payload, edited=args.payload is not None)
        if args.json:
            print_json({"run_id": run.id, "rerun_of": args.id, "task": run.task_id}, out)
        else:
            print(f"reran {args.id} as {run.id} ({run.task_id}), queued", file=out)
        return 0

    return with_service(args, env, err, one, needs_routes=True)


def _read_payload(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"--payload: cannot read {name}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--payload: {name} is not JSON: {exc}") from None


# -- routes test, prune, token ----------------------------------------------------------------------


def routes_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    since, _ = window(args)

    async def work(service: Service) -> int:
        report = await service.routes_test(since=since, keep=max(0, args.show))
        if args.json:
            print_json(as_json(report), out)
        else:
            header = f"{args.routes} against events received since {iso(since)} ({args.since})"
            print(render(report, header=header), file=out)
        return 0

    return with_service(args, env, err, work, needs_routes=True)


def prune_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    async def work(service: Service) -> int:
        lines = describe(service.config.retention)
        if not service.config.retention.prunes:
            print(f"{args.routes} sets no retention: all is kept (add e.g. `retention: 30d`)", file=out)
            return 0
        print("retention: " + "; ".join(lines), file=out)
        pruned = await service.prune(dry_run=args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        print(
            f"{verb} {pruned.events} event(s), {pruned.runs} run(s), {pruned.attempts} attempt(s), "
            f"{pruned.rejections} rejection(s)"
            + ("" if args.dry_run else f", {pruned.jobs} finished job(s)"),
            file=out,
        )
        return 0

    return with_service(args, env, err, work, needs_routes=True)


def token_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    try:
        ttl = auth.parse_ttl(args.ttl)
        if args.private_key:
            pem = Path(args.private_key).read_text("utf-8")
            algorithm = auth.signing_algorithm(pem)
            key: str = pem
        else:
            secret = env.get("GATEWAY_ADMIN_SECRET")
            if not secret:
                print(
                    "gateway token: set GATEWAY_ADMIN_SECRET (the gateway's HS256 secret), or pass "
                    f"--private-key; make a secret with: {auth.MAKE_SECRET}",
                    file=err,
                )
                return 1
            algorithm, key = "HS256", secret
        subject = args.subject or getpass.getuser()
        token = auth.mint(key, algorithm, subject=subject, scopes=args.scope, ttl=ttl, now=time.time())
    except (Invalid, OSError, UnicodeDecodeError) as exc:
        print(f"gateway token: {exc}", file=err)
        return 1
    print(token, file=out)
    return 0


COMMANDS = {
    "replay": replay_command,
    "rerun": rerun_command,
    "jobs": jobs.jobs_command,
    "routes": routes_command,
    "prune": prune_command,
    "token": token_command,
}

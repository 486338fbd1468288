"""Rejected deliveries given a second chance from the terminal: `gateway replay --rejection ID` and
`gateway replay --rejections [--source S] [--since T] [--dry-run]` verify kept requests again with the current
secrets (a rotated or mistyped one fixed since) and store and route those that pass now, once.

I/O: the database named by --db and routes.yaml, through the service; remote keys through a keyring of its
own; prints to the streams it is given.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from gateway.cli.flags import Env, print_json, window, with_service
from gateway.keys.keyring import Keyring
from gateway.records.recovery import DUPLICATE, PASSES, STORED, UNAVAILABLE, Recovery, recovery_summary
from gateway.records.service import Service

# replay's arguments that pick events, as the user wrote them
_EVENT_ONLY = {
    "id": "EVENT_ID",
    "event_type": "--type",
    "status": "--status",
    "task": "--task",
    "include_replays": "--include-replays",
}


def add_flags(p: argparse.ArgumentParser) -> None:
    """``gateway replay``'s flags for rejected deliveries."""
    p.add_argument(
        "--rejection",
        type=int,
        metavar="REJECTION_ID",
        help="verify this rejected delivery again with the current secrets (`gateway rejections` lists "
        "them); stored and routed as a new event if it passes now",
    )
    p.add_argument(
        "--rejections",
        action="store_true",
        help="the same for every rejected delivery still kept that --source, --since and --until select, "
        "oldest first (with --dry-run: only say which would pass)",
    )


def wanted(args: argparse.Namespace) -> bool:
    """Whether this `gateway replay` is about rejected deliveries."""
    return args.rejection is not None or args.rejections


def replay_rejections(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    given = [flag for name, flag in _EVENT_ONLY.items() if getattr(args, name)]
    if args.rejection is not None and args.rejections:
        raise argparse.ArgumentTypeError("give --rejection ID or --rejections with filters, not both")
    if given or (args.rejection is not None and (args.source or args.since or args.until)):
        which = ", ".join(given) or "--source/--since/--until (they pick rejections for --rejections)"
        raise argparse.ArgumentTypeError(f"{which}: not for rejected deliveries; leave it out")
    since, until = window(args)

    async def work(service: Service) -> int:
        keyring = Keyring(service.config.sources.values())
        try:
            if args.rejection is not None:
                tried = await service.recovery.one(args.rejection, keyring.material, dry_run=args.dry_run)
                return _one(tried, args, out)
            found = service.recovery.kept(
                keyring.material, source=args.source, since=since, until=until, dry_run=args.dry_run
            )
            return _many([tried async for tried in found], args, out)
        finally:
            await keyring.aclose()

    return with_service(args, env, err, work, needs_routes=True)


def _one(tried: Recovery, args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        print_json(recovery_summary(tried), out)
    else:
        print(f"rejection {tried.rejection.id}: {said(tried)}", file=out)
    return 0 if tried.outcome in (STORED, DUPLICATE, PASSES) else 1


def _many(tried: list[Recovery], args: argparse.Namespace, out: TextIO) -> int:
    outcomes = [t.outcome for t in tried]
    if args.json:
        counts = {o: outcomes.count(o) for o in dict.fromkeys(outcomes)}
        print_json(
            {"tried": len(tried), "outcomes": counts, "rejections": [recovery_summary(t) for t in tried]}, out
        )
        return 0
    for t in tried:
        print(f"  rejection {t.rejection.id} ({t.rejection.source}): {said(t)}", file=out)
    passed = sum(o in (STORED, DUPLICATE, PASSES) for o in outcomes)
    if args.dry_run:
        print(f"would recover {passed} of {len(tried)} kept rejection(s)", file=out)
    else:
        stored, duplicates = outcomes.count(STORED), outcomes.count(DUPLICATE)
        summary = f"{stored} stored, {duplicates} duplicate(s)"
        print(f"recovered {passed} of {len(tried)} kept rejection(s): {summary}", file=out)
    return 0


def said(tried: Recovery) -> str:
    """One rejection's outcome in a few words."""
    runs = ", ".join(f"{r.id} ({r.task_id})" for r in tried.runs) or "no runs (no route matches it)"
    if tried.outcome == STORED:
        return f"verified ({tried.detail}) and stored as {tried.event_id}: {runs}"
    if tried.outcome == DUPLICATE:
        return f"verified; a duplicate of {tried.event_id}, stored meanwhile: nothing stored twice"
    if tried.outcome == PASSES:
        return f"passes now ({tried.detail}): would be stored and routed"
    if tried.outcome == UNAVAILABLE:
        return f"cannot be tried again: {tried.detail}"
    return f"still rejected: {tried.reason}: {tried.detail}"

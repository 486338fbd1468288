"""Read and change stored records from the terminal: `gateway events | runs | show | cancel | rejections`.

I/O: opens the database named by --db (never creates one) and prints to the streams it is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from gateway.errors import NotFound
from gateway.view import event_detail, event_row, rejection_row, render_table, run_detail, run_row

Env = Mapping[str, str]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: float) -> float:
    """``30m``, ``24h``, ``7d`` (ago) or an ISO-8601 time → unix seconds."""
    m = _DURATION.match(value.strip())
    if m:
        return now - float(m.group(1)) * _SECONDS[m.group(2)]
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since: expected a duration like 30m, 24h, 7d or an ISO time, got {value!r}"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _on_store(args: argparse.Namespace, err: TextIO, work: Callable[[Any], Awaitable[int]]) -> int:
    """Run ``work(store)`` on the existing database named by --db (never creates one)."""
    from gateway.store import Store

    path = Path(args.db)
    if not path.exists():
        print(f"no database at {path} (start `gateway serve` first, or set --db / GATEWAY_DB)", file=err)
        return 1

    async def go() -> int:
        store = await Store.open(path)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


def _since(args: argparse.Namespace) -> float | None:
    return parse_since(args.since, time.time()) if args.since else None


def _print_rows(
    args: argparse.Namespace, out: TextIO, rows: list[dict[str, Any]], columns: list[str], empty: str
) -> int:
    print(json.dumps(rows, indent=2) if args.json else render_table(rows, columns) or empty, file=out)
    return 0


def _print_detail(args: argparse.Namespace, out: TextIO, detail: dict[str, Any]) -> int:
    text = detail.pop("_text")
    print(json.dumps(detail, indent=2) if args.json else text, file=out)
    return 0


def events_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    since = _since(args)

    async def work(store: Any) -> int:
        events = await store.list_events(
            source=args.source, status=args.status, since=since, limit=args.limit
        )
        columns = ["id", "received_at", "source", "event_type", "status", "verification"]
        return _print_rows(args, out, [event_row(e) for e in events], columns, "no events")

    return _on_store(args, err, work)


def runs_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    since = _since(args)

    async def work(store: Any) -> int:
        runs = await store.list_runs(
            status=args.status, task=args.task, source=args.source, since=since, limit=args.limit
        )
        columns = ["id", "created_at", "task", "status", "attempts", "duration", "event_id"]
        return _print_rows(args, out, [run_row(r) for r in runs], columns, "no runs")

    return _on_store(args, err, work)


def rejections_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    since = _since(args)

    async def work(store: Any) -> int:
        rejections = await store.list_rejections(source=args.source, since=since, limit=args.limit)
        columns = ["received_at", "source", "reason", "remote_addr", "body_size", "detail"]
        return _print_rows(args, out, [rejection_row(r) for r in rejections], columns, "no rejections")

    return _on_store(args, err, work)


def show_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    async def work(store: Any) -> int:
        if args.id.startswith("run_"):
            run = await store.get_run(args.id)
            if run is not None:
                return _print_detail(args, out, run_detail(run, await store.attempts_for_run(run.id)))
        else:
            event = await store.get_event(args.id)
            if event is not None:
                return _print_detail(args, out, event_detail(event, await store.runs_for_event(event.id)))
        print(f"no {'run' if args.id.startswith('run_') else 'event'} with id {args.id}", file=err)
        return 1

    return _on_store(args, err, work)


def cancel_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    async def work(store: Any) -> int:
        try:
            run = await store.cancel(args.id, now=time.time())
        except NotFound:
            print(f"no run with id {args.id}", file=err)
            return 1
        if run is None:
            current = await store.get_run(args.id)
            status = current.status if current else "unknown"
            print(f"run {args.id} is {status}: only queued or retrying runs can be canceled", file=err)
            return 1
        print(f"run {run.id} canceled", file=out)
        return 0

    return _on_store(args, err, work)

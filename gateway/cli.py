"""The ``gateway`` command: serve, check, sign, events, runs, show, cancel, rejections. ``main(argv) -> int``.

I/O: reads the environment, routes.yaml, the database; prints to stdout/stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from gateway import config as config_mod
from gateway.errors import ConfigError, GatewayError, NotFound
from gateway.model import RUN_STATUSES, Secret
from gateway.view import event_detail, event_row, rejection_row, render_table, run_detail, run_row

Env = Mapping[str, str]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _env_default(env: Env, name: str, fallback: str) -> str:
    return env.get(name) or fallback


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


def build_parser(env: Env) -> argparse.ArgumentParser:
    routes_default = _env_default(env, "GATEWAY_ROUTES", "./routes.yaml")
    db_default = _env_default(env, "GATEWAY_DB", "./gateway.db")
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Self-hosted webhook gateway: verify signed webhooks, route them by routes.yaml, "
        "store them "
        "durably (fsync before 2xx), and run your tasks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        return p

    def routes_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--routes",
            default=routes_default,
            metavar="FILE",
            help=f"routes file (env GATEWAY_ROUTES; now: {routes_default})",
        )

    def db_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--db",
            default=db_default,
            metavar="FILE",
            help=f"SQLite database file (env GATEWAY_DB; now: {db_default})",
        )

    p = add("serve", "Run the gateway: receive webhooks on /hooks/<source> until SIGTERM or Ctrl-C.")
    routes_arg(p)
    db_arg(p)
    host = _env_default(env, "GATEWAY_HOST", "127.0.0.1")
    p.add_argument("--host", default=host, help=f"address to listen on (env GATEWAY_HOST; now: {host})")
    port = _env_default(env, "GATEWAY_PORT", "8000")
    p.add_argument(
        "--port", default=port, type=int, help=f"port to listen on (env GATEWAY_PORT; now: {port})"
    )
    conc = _env_default(env, "GATEWAY_CONCURRENCY", "100")
    p.add_argument(
        "--concurrency",
        default=conc,
        type=int,
        help=f"runs executing at once, all tasks together (env GATEWAY_CONCURRENCY; now: {conc})",
    )
    drain = _env_default(env, "GATEWAY_DRAIN_TIMEOUT", "30")
    p.add_argument(
        "--drain-timeout",
        default=drain,
        type=float,
        help="seconds running tasks get to finish after SIGTERM before they are interrupted and "
        f"queued again (env GATEWAY_DRAIN_TIMEOUT; now: {drain})",
    )
    threads = _env_default(env, "GATEWAY_THREADS", "8")
    p.add_argument(
        "--threads",
        default=threads,
        type=int,
        help=f"worker threads for sync (def) tasks (env GATEWAY_THREADS; now: {threads})",
    )
    level = _env_default(env, "GATEWAY_LOG_LEVEL", "info")
    p.add_argument(
        "--log-level",
        default=level,
        choices=["debug", "info", "warning", "error"],
        help=f"log level (env GATEWAY_LOG_LEVEL; now: {level})",
    )

    p = add("check", "Validate routes.yaml and import the tasks; print every problem with its location.")
    routes_arg(p)

    p = add(
        "sign",
        "Print the headers SOURCE's provider would send for a body, signed with the configured "
        "secret (for curl: curl -H @headers.txt ...).",
    )
    routes_arg(p)
    p.add_argument("source", help="source name from routes.yaml")
    p.add_argument(
        "--body", required=True, metavar="FILE", help="file with the exact body to sign ('-': stdin)"
    )
    p.add_argument(
        "--url",
        metavar="URL",
        help="the URL the provider calls, for schemes that sign it (twilio, square); default: the source's "
        "public_url, else http://127.0.0.1:<GATEWAY_PORT><path>",
    )
    p.add_argument(
        "--event",
        metavar="TYPE",
        help="event type header to add where the provider sends one (e.g. push for GitHub)",
    )

    p = add("events", "List recent events, newest first.")
    db_arg(p)
    p.add_argument("--source", help="only this source")
    p.add_argument("--status", choices=["routed", "unrouted"], help="only events with this status")
    p.add_argument("--since", help="only events received since a duration ago (30m, 24h, 7d) or an ISO time")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="machine-readable output (one JSON array)")

    p = add(
        "show",
        "Show one event (evt_…: headers, payload, runs) or one run (run_…: attempts, errors, logs, output).",
    )
    db_arg(p)
    p.add_argument("id", metavar="EVENT_ID|RUN_ID")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("runs", "List runs, newest first.")
    db_arg(p)
    p.add_argument("--status", choices=RUN_STATUSES, help="only runs with this status")
    p.add_argument("--task", help="only runs of this task id")
    p.add_argument("--source", help="only runs of events from this source")
    p.add_argument("--since", help="only runs created since a duration ago (30m, 24h, 7d) or an ISO time")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add(
        "cancel", "Cancel a run that is queued or waiting for a retry (a running attempt is not stopped)."
    )
    db_arg(p)
    p.add_argument("id", metavar="RUN_ID")

    p = add("rejections", "List refused deliveries (bad signature, stale, too large), newest first.")
    db_arg(p)
    p.add_argument("--source", help="only this source")
    p.add_argument("--since", help="only since a duration ago (30m, 24h, 7d) or an ISO time")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _load(args: argparse.Namespace, env: Env, err: TextIO) -> config_mod.Config | None:
    try:
        loaded = config_mod.load(args.routes, env)
    except ConfigError as exc:
        print(exc, file=err)
        return None
    for warning in loaded.warnings:
        print(f"WARNING: {warning}", file=err)
    return loaded


def _cmd_check(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    loaded = _load(args, env, err)
    if loaded is None:
        return 1
    print(
        f"{args.routes}: OK: {len(loaded.sources)} source(s), {len(loaded.routes)} route(s), "
        f"{len(loaded.tasks)} task(s)",
        file=out,
    )
    return 0


def _cmd_serve(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    from gateway.server import ServeOptions, serve

    logging.basicConfig(
        level=args.log_level.upper(), stream=err, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    loaded = _load(args, env, err)
    if loaded is None:
        return 1
    options = ServeOptions(
        db=Path(args.db),
        host=args.host,
        port=args.port,
        concurrency=args.concurrency,
        threads=args.threads,
        drain_timeout=args.drain_timeout,
    )
    try:
        asyncio.run(serve(loaded, options))
    except GatewayError as exc:
        print(f"gateway serve: {exc}", file=err)
        return 1
    return 0


def _cmd_sign(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    from gateway.signing import sign
    from gateway.verify import PUBLIC_KEY_CHECKS

    loaded = _load(args, env, err)
    if loaded is None:
        return 1
    source = loaded.sources.get(args.source)
    if source is None:
        print(
            f"{args.routes}: no source named {args.source!r} (known: {', '.join(loaded.sources)})", file=err
        )
        return 1
    try:
        body = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
    except OSError as exc:
        print(f"--body: cannot read {args.body}: {exc.strerror}", file=err)
        return 1
    if not source.scheme.verified:
        headers: list[tuple[str, str]] = []
    elif not source.secrets:
        print(f"source {source.name} has no secret to sign with", file=err)
        return 1
    else:
        try:
            port = env.get("GATEWAY_PORT") or "8000"
            url = args.url or source.public_url or f"http://127.0.0.1:{port}{source.path}"
            if source.scheme.signature_format in PUBLIC_KEY_CHECKS and source.signing_key is None:
                raise ValueError(
                    f"{source.scheme.name} signs with its private key and the gateway holds only the public "
                    "key: set signing_key: (a test private key) on the source"
                )
            key = source.signing_key or _signing_key(source.secrets)
            headers = sign(source.scheme, key, body, now=time.time(), url=url, remote=source.remote)
        except (GatewayError, ValueError) as exc:
            print(f"cannot sign for source {source.name}: {exc}", file=err)
            return 1
    names = {k.lower() for k, _ in headers}
    for path, value in ((source.event_type, args.event), (source.dedupe, f"{uuid.uuid4()}")):
        if path and path.startswith("headers.") and value and path[8:].lower() not in names:
            headers.append((path[8:], value))
    if body[:1] in (b"{", b"["):
        headers.append(("Content-Type", "application/json"))
    for name, value in headers:
        print(f"{name}: {value}", file=out)
    return 0


def _signing_key(secrets: Sequence[Secret]) -> Secret:
    # Sign with the first key that can sign (a whpk_ public key cannot); verification accepts any.
    for secret in secrets:
        if not secret.reveal().startswith("whpk_"):
            return secret
    return secrets[0]


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


def _cmd_events(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    since = _since(args)

    async def work(store: Any) -> int:
        events = await store.list_events(
            source=args.source, status=args.status, since=since, limit=args.limit
        )
        columns = ["id", "received_at", "source", "event_type", "status", "verification"]
        return _print_rows(args, out, [event_row(e) for e in events], columns, "no events")

    return _on_store(args, err, work)


def _cmd_runs(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    since = _since(args)

    async def work(store: Any) -> int:
        runs = await store.list_runs(
            status=args.status, task=args.task, source=args.source, since=since, limit=args.limit
        )
        columns = ["id", "created_at", "task", "status", "attempts", "duration", "event_id"]
        return _print_rows(args, out, [run_row(r) for r in runs], columns, "no runs")

    return _on_store(args, err, work)


def _cmd_rejections(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    since = _since(args)

    async def work(store: Any) -> int:
        rejections = await store.list_rejections(source=args.source, since=since, limit=args.limit)
        columns = ["received_at", "source", "reason", "remote_addr", "body_size", "detail"]
        return _print_rows(args, out, [rejection_row(r) for r in rejections], columns, "no rejections")

    return _on_store(args, err, work)


def _cmd_show(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
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


def _cmd_cancel(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
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


COMMANDS: dict[str, Callable[[argparse.Namespace, Env, TextIO, TextIO], int]] = {
    "serve": _cmd_serve,
    "check": _cmd_check,
    "sign": _cmd_sign,
    "events": _cmd_events,
    "show": _cmd_show,
    "rejections": _cmd_rejections,
    "runs": _cmd_runs,
    "cancel": _cmd_cancel,
}


def main(
    argv: Sequence[str] | None = None,
    env: Env | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Entry point. Returns the exit code: 0 ok, 1 a problem was reported, 2 bad usage."""
    env = os.environ if env is None else env
    out, err = out or sys.stdout, err or sys.stderr
    parser = build_parser(env)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return COMMANDS[args.command](args, env, out, err)
    except argparse.ArgumentTypeError as exc:
        print(f"gateway {args.command}: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        return 130

"""The ``gateway`` command: serve, check, sign, events, show, rejections. ``main(argv) -> int``.

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
from gateway.errors import ConfigError, GatewayError
from gateway.model import Secret
from gateway.view import event_detail, event_row, rejection_row, render_table

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

    p = add("show", "Show one event: headers, payload, verification and its runs.")
    db_arg(p)
    p.add_argument("id", metavar="EVENT_ID")
    p.add_argument("--json", action="store_true", help="machine-readable output")

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
    asyncio.run(serve(loaded, ServeOptions(db=Path(args.db), host=args.host, port=args.port)))
    return 0


def _cmd_sign(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    from gateway.verify import sign

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
            headers = sign(source.scheme, _signing_key(source.secrets), body, now=time.time())
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


def _open_db(args: argparse.Namespace, err: TextIO) -> Path | None:
    path = Path(args.db)
    if not path.exists():
        print(f"no database at {path} (start `gateway serve` first, or set --db / GATEWAY_DB)", file=err)
        return None
    return path


def _with_store(path: Path, work: Callable[[Any], Awaitable[int]]) -> int:
    from gateway.store import Store

    async def go() -> int:
        store = await Store.open(path)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


def _cmd_events(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    path = _open_db(args, err)
    if path is None:
        return 1
    since = parse_since(args.since, time.time()) if args.since else None

    async def work(store: Any) -> int:
        events = await store.list_events(
            source=args.source, status=args.status, since=since, limit=args.limit
        )
        rows = [event_row(e) for e in events]
        if args.json:
            print(json.dumps(rows, indent=2), file=out)
        else:
            print(
                render_table(rows, ["id", "received_at", "source", "event_type", "status", "verification"])
                or "no events",
                file=out,
            )
        return 0

    return _with_store(path, work)


def _cmd_show(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    path = _open_db(args, err)
    if path is None:
        return 1

    async def work(store: Any) -> int:
        event = await store.get_event(args.id)
        if event is None:
            print(f"no event with id {args.id}", file=err)
            return 1
        detail = event_detail(event, await store.runs_for_event(event.id))
        text = detail.pop("_text")
        print(json.dumps(detail, indent=2) if args.json else text, file=out)
        return 0

    return _with_store(path, work)


def _cmd_rejections(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    path = _open_db(args, err)
    if path is None:
        return 1
    since = parse_since(args.since, time.time()) if args.since else None

    async def work(store: Any) -> int:
        rows = [
            rejection_row(r)
            for r in await store.list_rejections(source=args.source, since=since, limit=args.limit)
        ]
        if args.json:
            print(json.dumps(rows, indent=2), file=out)
        else:
            print(
                render_table(rows, ["received_at", "source", "reason", "remote_addr", "body_size", "detail"])
                or "no rejections",
                file=out,
            )
        return 0

    return _with_store(path, work)


COMMANDS: dict[str, Callable[[argparse.Namespace, Env, TextIO, TextIO], int]] = {
    "serve": _cmd_serve,
    "check": _cmd_check,
    "sign": _cmd_sign,
    "events": _cmd_events,
    "show": _cmd_show,
    "rejections": _cmd_rejections,
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

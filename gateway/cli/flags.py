"""What the ``gateway`` subcommands share: env-backed flags, time and filter flags, loading routes.yaml, and
opening the service on an existing database. I/O: reads routes.yaml and the database named by the flags.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TextIO

from gateway import __version__, durations
from gateway.errors import ConfigError, GatewayError, Invalid, NotFound, StoreError
from gateway.records.service import Service
from gateway.routes import load as config_mod
from gateway.store.open import is_postgres, open_store, shown
from gateway.telemetry.exporter import from_env as tracing_from_env
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.tracing import Tracing

Env = Mapping[str, str]
# ``add(name, help)``: a subcommand's parser, its help shown in ``gateway --help`` and as its description.
AddParser = Callable[[str, str], argparse.ArgumentParser]
TIME_HELP = "a duration ago (30m, 24h, 7d) or an ISO time (2026-11-24T10:00:00Z)"


def parse_since(value: str, now: float) -> float:
    """``30m``, ``24h``, ``7d`` (ago) or an ISO-8601 time → unix seconds; ArgumentTypeError says why not."""
    try:
        return durations.since(value, now)
    except (ValueError, OverflowError, OSError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def env_flag(
    p: argparse.ArgumentParser, flag: str, env: Env, var: str, fallback: str, help: str, **kwargs: Any
) -> None:
    """A flag whose default comes from ``var`` in the environment; --help shows the variable and its value."""
    value = env.get(var) or fallback
    p.add_argument(flag, default=value, help=f"{help} (env {var}; now: {value})", **kwargs)


def routes_arg(p: argparse.ArgumentParser, env: Env) -> None:
    env_flag(p, "--routes", env, "GATEWAY_ROUTES", "./routes.yaml", "routes file", metavar="FILE")


def db_arg(p: argparse.ArgumentParser, env: Env) -> None:
    value = env.get("GATEWAY_DB") or "./gateway.db"
    p.add_argument(
        "--db",
        default=value,
        metavar="DB",
        help="the database: a SQLite file (created if missing), or a PostgreSQL address "
        f"postgresql://user:password@host:5432/name (env GATEWAY_DB; now: {shown(value)})",
    )


def window_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--since", help=f"only {what} at or after {TIME_HELP}")
    p.add_argument("--until", help=f"only {what} at or before {TIME_HELP}")


def window(args: argparse.Namespace) -> tuple[float | None, float | None]:
    """--since and --until as unix times; ArgumentTypeError names the flag."""
    now = time.time()
    bounds: list[float | None] = []
    for flag in ("since", "until"):
        value = getattr(args, flag, None)
        try:
            bounds.append(parse_since(value, now) if value else None)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"--{flag}: {exc}") from None
    return bounds[0], bounds[1]


def load_config(
    args: argparse.Namespace,
    env: Env,
    err: TextIO,
    *,
    sources: Collection[str] | None = None,
    run_tasks: bool = True,
) -> config_mod.Config | None:
    """routes.yaml from --routes, with the secrets of ``sources`` required and the warnings about them
    printed: by default every source (serve and check), the one it signs for (sign), none (the commands on
    stored records: they use no secret). ``run_tasks`` False reads the task modules' @task declarations
    without importing them (intake whose tasks run in workers). None (problems printed) when it does not
    load."""
    try:
        loaded = config_mod.load(args.routes, env, run_tasks=run_tasks)
        loaded.require_secrets(sources)
    except ConfigError as exc:
        print(exc, file=err)
        return None
    for warning in loaded.warnings_for(sources):
        print(f"WARNING: {warning}", file=err)
    return loaded


def with_service(
    args: argparse.Namespace,
    env: Env,
    err: TextIO,
    work: Callable[[Service], Awaitable[int]],
    *,
    needs_routes: bool = False,
) -> int:
    """Run ``work(service)`` on the existing database named by --db (never creates one). Errors the service
    raises on purpose (NotFound, Invalid, store failures) are printed and give exit code 1."""
    if not is_postgres(args.db) and not Path(args.db).exists():
        print(f"no database at {args.db} (start `gateway serve` first, or set --db / GATEWAY_DB)", file=err)
        return 1
    config = None
    if needs_routes:
        config = load_config(args, env, err, sources=())
        if config is None:
            return 1

    try:
        # With OTEL_* set, a replay or rerun made here starts a trace too (linked to the original).
        tracing = tracing_from_env(env, __version__) if needs_routes else Tracing.off()
    except GatewayError as exc:
        print(f"gateway {args.command}: {exc}", file=err)
        return 1

    async def go() -> int:
        store = await open_store(args.db)
        try:
            return await work(Service(store, config, telemetry=Telemetry(tracing)))
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except (NotFound, Invalid, StoreError) as exc:
        print(f"gateway {args.command}: {exc}", file=err)
        return 1
    finally:
        tracing.shutdown()


def print_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False), file=out)

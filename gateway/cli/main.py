"""The ``gateway`` command: ``main(argv) -> int``. serve, check and sign are here; the commands on stored
records are in history.py (find, inspect), actions.py (replay, rerun, routes test, prune, token) and
jobs.py (bulk jobs).

I/O: reads the environment, routes.yaml, the database; prints to stdout/stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from gateway import __version__
from gateway.cli import actions, backup, copy, database, flags, history, workers
from gateway.cli.flags import AddParser, env_flag
from gateway.errors import GatewayError, Problem
from gateway.model import Secret
from gateway.routes.load import Config
from gateway.routes.sizes import parse_size
from gateway.telemetry import logs
from gateway.telemetry.exporter import from_env as tracing_from_env
from gateway.web import auth

Env = Mapping[str, str]


def build_parser(env: Env) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Self-hosted webhook gateway: verify signed webhooks, route them by routes.yaml, "
        "store them durably (fsync before 2xx), and run your tasks.",
    )
    # Named after the distribution (what pip installs and pins), not the command.
    parser.add_argument("--version", action="version", version=f"hookgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help)

    _serve_parser(add, env)
    _check_parser(add, env)
    _sign_parser(add, env)
    backup.add_parser(add, env)
    database.add_parser(add, env)
    copy.add_parser(add, env)
    history.add_parsers(add, env)
    actions.add_parsers(add, env)
    workers.add_parsers(add, env, execution=_execution_flags, log_flags=_log_flags)
    return parser


def _serve_parser(add: AddParser, env: Env) -> None:
    p = add("serve", "Run the gateway: receive webhooks on /hooks/<source> until SIGTERM or Ctrl-C.")
    flags.routes_arg(p, env)
    flags.db_arg(p, env)
    # In the order --help has always listed them: --server after the metrics flags, not beside --host.
    _listen_flags(p, env)
    _execution_flags(p, env)
    workers.serve_flags(p, env)
    _admin_flags(p, env)
    _log_flags(p, env)
    _metrics_flags(p, env)
    _server_flag(p, env)
    _no_metrics_flag(p, env)


def _listen_flags(p: argparse.ArgumentParser, env: Env) -> None:
    env_flag(p, "--host", env, "GATEWAY_HOST", "127.0.0.1", "address to listen on")
    env_flag(p, "--port", env, "GATEWAY_PORT", "8000", "port to listen on", type=int)
    env_flag(
        p,
        "--body-timeout",
        env,
        "GATEWAY_BODY_TIMEOUT",
        "30",
        "seconds a webhook's body may take to arrive after its head; slower ones are refused with 408 "
        "(senders post at once: only a stalled or hostile client takes longer)",
        type=_positive_seconds,
    )
    env_flag(
        p,
        "--body-budget",
        env,
        "GATEWAY_BODY_BUDGET",
        "64MiB",
        "bytes of webhook bodies held in memory at once, across all requests (512KiB, 64MiB, 1GiB); past "
        "it a body is refused with 503 and Retry-After, so a flood of large forged bodies cannot take the "
        "memory. Each request's first 64 KiB are always taken. At least every source's max_body",
        type=_size,
        metavar="SIZE",
    )


def _execution_flags(p: argparse.ArgumentParser, env: Env) -> None:
    env_flag(
        p,
        "--concurrency",
        env,
        "GATEWAY_CONCURRENCY",
        "100",
        "runs executing at once, across all tasks",
        type=int,
    )
    env_flag(
        p,
        "--drain-timeout",
        env,
        "GATEWAY_DRAIN_TIMEOUT",
        "30",
        "seconds running tasks get to finish after SIGTERM before they are interrupted and queued again",
        type=float,
    )
    env_flag(p, "--threads", env, "GATEWAY_THREADS", "8", "worker threads for sync (def) tasks", type=int)
    p.add_argument(
        "--task-logs",
        action="store_true",
        default=env.get("GATEWAY_TASK_LOGS", "").strip().lower() in ("on", "1", "true", "yes"),
        help="also write what tasks log (ctx.log) to the process log, with run, task and attempt, so "
        "`docker logs` shows it; it is stored with each attempt either way (env GATEWAY_TASK_LOGS=on)",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _size(text: str) -> int:
    problems: list[Problem] = []
    size = parse_size(text, "size", problems, 0)
    if problems:
        raise argparse.ArgumentTypeError(f"expected a size such as 64MiB or 1048576, got {text!r}")
    return size


def _admin_flags(p: argparse.ArgumentParser, env: Env) -> None:
    env_flag(
        p,
        "--admin-public-key",
        env,
        "GATEWAY_ADMIN_PUBLIC_KEY",
        "",
        "PEM public key (RSA or EC P-256) that checks RS256/ES256 admin tokens; or set the env "
        "GATEWAY_ADMIN_SECRET for HS256 tokens. Without either, /api and the /ui dashboard are off",
        metavar="PEM",
    )
    env_flag(p, "--admin-host", env, "GATEWAY_ADMIN_HOST", "", "serve /api on this address instead of --host")
    env_flag(
        p,
        "--admin-port",
        env,
        "GATEWAY_ADMIN_PORT",
        "0",
        "serve /api and the /ui dashboard on this port, apart from /hooks (0: on --port, beside the hooks)",
        type=int,
    )
    env_flag(
        p,
        "--trace-url",
        env,
        "GATEWAY_TRACE_URL",
        "",
        "your trace UI's page for one trace, with {trace_id} where the id goes (e.g. "
        "http://jaeger:16686/trace/{trace_id}): the dashboard links each run's and event's trace id there",
        metavar="URL",
    )


def _log_flags(p: argparse.ArgumentParser, env: Env) -> None:
    env_flag(
        p,
        "--log-level",
        env,
        "GATEWAY_LOG_LEVEL",
        "info",
        "log level; info logs one line per request and per attempt, warning only what needs a look",
        choices=["debug", "info", "warning", "error"],
    )
    env_flag(
        p,
        "--log-format",
        env,
        "GATEWAY_LOG_FORMAT",
        "auto",
        "json: one JSON object per line (for log shippers); plain: for a terminal; auto: plain on a "
        "terminal, else json",
        choices=["auto", "json", "plain"],
    )


def _metrics_flags(p: argparse.ArgumentParser, env: Env) -> None:
    env_flag(
        p,
        "--metrics-port",
        env,
        "GATEWAY_METRICS_PORT",
        "0",
        "serve Prometheus /metrics on this port, apart from /hooks (0: at /metrics on --port)",
        type=int,
    )
    env_flag(p, "--metrics-host", env, "GATEWAY_METRICS_HOST", "", "serve /metrics on this address")


def _server_flag(p: argparse.ArgumentParser, env: Env) -> None:
    env_flag(
        p,
        "--server",
        env,
        "GATEWAY_SERVER",
        "hypercorn",
        "HTTP server. uvicorn (with httptools and uvloop: pip install 'hookgate[uvicorn]') is the "
        "faster HTTP stack: use it when one process must take more deliveries per second than Hypercorn "
        "answers (figures in docs/benchmarks.md)",
        choices=["hypercorn", "uvicorn"],
    )


def _no_metrics_flag(p: argparse.ArgumentParser, env: Env) -> None:
    # Not an env_flag: a switch, whose env fallback is GATEWAY_METRICS=off rather than a value.
    p.add_argument(
        "--no-metrics",
        action="store_true",
        default=env.get("GATEWAY_METRICS", "").strip().lower() in ("off", "0", "false", "no"),
        help="do not serve /metrics (env GATEWAY_METRICS=off). Set the env GATEWAY_METRICS_TOKEN to make "
        "scrapes send 'Authorization: Bearer <token>'. Traces: set the standard OTEL_* variables, e.g. "
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318, with the otel extra installed",
    )


def _check_parser(add: AddParser, env: Env) -> None:
    p = add("check", "Validate routes.yaml and import the tasks; print every problem with its location.")
    flags.routes_arg(p, env)


def _sign_parser(add: AddParser, env: Env) -> None:
    p = add(
        "sign",
        "Print the headers SOURCE's provider would send for a body, signed with the configured "
        "secret (for curl: curl -H @headers.txt ...).",
    )
    flags.routes_arg(p, env)
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


def _cmd_check(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    loaded = flags.load_config(args, env, err)
    if loaded is None:
        return 1
    print(
        f"{args.routes}: OK: {len(loaded.sources)} source(s), {len(loaded.routes)} route(s), "
        f"{len(loaded.tasks)} task(s)",
        file=out,
    )
    return 0


def secrets_of(config: Config, env: Env) -> list[str]:
    """Every secret the process knows, for the log filter that keeps them out of every line."""
    values = [secret.reveal() for source in config.sources.values() for secret in source.secrets]
    values += [s.signing_key.reveal() for s in config.sources.values() if s.signing_key is not None]
    values += [env[name] for name in ("GATEWAY_ADMIN_SECRET", "GATEWAY_METRICS_TOKEN") if env.get(name)]
    return values


def _cmd_serve(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    from gateway.server import ServeOptions, serve
    from gateway.web.listen import loop_factory

    logs.setup(level=args.log_level, fmt=args.log_format, stream=err)
    # Task code is imported only where it runs: not by intake whose tasks run in workers.
    here = args.executor == "on" and not args.workers
    loaded = flags.load_config(args, env, err, run_tasks=here)
    if loaded is None:
        return 1
    too_large = [s for s in loaded.sources.values() if s.max_body > args.body_budget]
    if too_large:
        names = ", ".join(f"{s.name} ({s.max_body})" for s in too_large)
        print(
            f"gateway serve: --body-budget {args.body_budget} is below the max_body of source(s) {names}: "
            "their largest deliveries could never be read; raise --body-budget (GATEWAY_BODY_BUDGET) or "
            "lower max_body in routes.yaml",
            file=err,
        )
        return 2
    # From here on every configured secret is replaced in every log line, whatever logs it.
    secrets = secrets_of(loaded, env)
    logs.setup(level=args.log_level, fmt=args.log_format, stream=err, secrets=secrets)
    try:
        admin_key = auth.admin_key(env.get("GATEWAY_ADMIN_SECRET"), args.admin_public_key or None)
        tracing = tracing_from_env(env, __version__)
    except GatewayError as exc:  # Invalid included
        print(f"gateway serve: {exc}", file=err)
        return 1
    options = ServeOptions(
        admin_key=admin_key,
        admin_host=args.admin_host or None,
        admin_port=args.admin_port or None,
        trace_url=args.trace_url or None,
        db=args.db,
        host=args.host,
        port=args.port,
        concurrency=args.concurrency,
        threads=args.threads,
        drain_timeout=args.drain_timeout,
        body_timeout=args.body_timeout,
        body_budget=args.body_budget,
        task_logs=args.task_logs,
        metrics=not args.no_metrics,
        metrics_host=args.metrics_host or None,
        metrics_port=args.metrics_port or None,
        metrics_token=Secret(env["GATEWAY_METRICS_TOKEN"]) if env.get("GATEWAY_METRICS_TOKEN") else None,
        server=args.server,
        executor=here,
        workers=args.workers,
        worker_argv=workers.worker_argv(args) if args.workers else (),
    )
    try:
        # uvloop under uvicorn: the loop is chosen before it starts, not by the server inside it.
        with asyncio.Runner(loop_factory=loop_factory(options.server)) as runner:
            runner.run(serve(loaded, options, tracing=tracing, scrub=logs.Scrub(secrets)))
    except GatewayError as exc:
        print(f"gateway serve: {exc}", file=err)
        return 1
    return 0


def _cmd_sign(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    from gateway.signatures.signing import sign
    from gateway.signatures.verify import PUBLIC_KEY_CHECKS

    # Only SOURCE's secrets are needed (and warned about): another source's unset variable does not matter.
    loaded = flags.load_config(args, env, err, sources=(args.source,))
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
    # Written once, at the end: every failure above leaves stdout empty, so `> headers.txt` holds all or none.
    out.write("".join(f"{name}: {value}\n" for name, value in headers))
    return 0


def _signing_key(secrets: Sequence[Secret]) -> Secret:
    # Sign with the first key that can sign (a whpk_ public key cannot); verification accepts any.
    for secret in secrets:
        if not secret.reveal().startswith("whpk_"):
            return secret
    return secrets[0]


COMMANDS: dict[str, Callable[[argparse.Namespace, Env, TextIO, TextIO], int]] = {
    "serve": _cmd_serve,
    "check": _cmd_check,
    "sign": _cmd_sign,
    "events": history.events_command,
    "show": history.show_command,
    "rejections": history.rejections_command,
    "runs": history.runs_command,
    "cancel": history.cancel_command,
    "backup": backup.backup_command,
    "migrate": database.migrate_command,
    "copy": copy.copy_command,
    "worker": workers.worker_command,
    "workers": workers.workers_command,
    **actions.COMMANDS,
}


def main(
    argv: Sequence[str] | None = None,
    env: Env | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Entry point. Returns the exit code: 0 ok, 1 a problem was reported, 2 bad usage, 130 interrupted, 141
    when the reader of its output went away (`gateway events | head`), quietly, as Unix tools do."""
    env = os.environ if env is None else env
    out, err = out or sys.stdout, err or sys.stderr
    try:
        code = _run(build_parser(env), argv, env, out, err)
        out.flush()  # a reader gone away is met here, not in the interpreter's flush at exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # also from --help
        _quiet_stdout()
        return 128 + signal.SIGPIPE


def _run(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, env: Env, out: TextIO, err: TextIO
) -> int:
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return COMMANDS[args.command](args, env, out, err)
    except argparse.ArgumentTypeError as exc:
        print(f"gateway {args.command}: {exc}", file=err)
        return 2


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the interpreter flushes it at exit, and a flush into the closed pipe would
    raise again, with a traceback ("Exception ignored ... BrokenPipeError")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (a test's StringIO): nothing will flush it
        pass

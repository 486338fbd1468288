"""The telemetry overhead benchmark (issue 6): ingest throughput and latency with tracing off, with the
per-request JSON log line, with traces to a live collector and to an address that refuses connections,
side by side with the floor. I/O: processes, sockets, temp files; writes bench/results/telemetry-<date>.md.

Run from the repository: ``python -m bench.telemetry [--quick]`` (quick: 1 round of 5 s runs, under two
minutes; full: 3 rounds of 10 s). Configurations alternate within a round, so drift shows across rounds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import deliveries, load

RESULTS = Path(__file__).resolve().parent / "results"
BSP_SCHEDULE_DELAY_MS = "1000"  # the SDK default is 5000; batches of 512 spans go sooner at these rates


@dataclass(frozen=True, slots=True)
class Setup:
    """One configuration under test."""

    name: str
    label: str  # what the table says
    gateway: bool
    log_level: str = "warning"
    tracing: str = "off"  # off | live | refused


SETUPS = (
    Setup("floor", "(a) floor: Hypercorn + Starlette, 202 and nothing else", gateway=False),
    Setup("quiet", "(b) gateway, tracing off, --log-level warning", gateway=True),
    Setup("json-log", "(c) gateway, tracing off, --log-level info --log-format json", True, "info"),
    Setup("traced", "(d) gateway, traces to a live collector", gateway=True, tracing="live"),
    Setup("refused", "(e) gateway, traces to an address that refuses connections", True, tracing="refused"),
)


@dataclass(frozen=True, slots=True)
class Plan:
    rounds: int
    duration: int  # seconds per measurement
    warmup: int  # seconds of load before each measurement, on deliveries of their own
    connections: tuple[int, ...] = (50, 10)

    @classmethod
    def of(cls, quick: bool) -> Plan:
        return cls(rounds=1, duration=5, warmup=1) if quick else cls(rounds=3, duration=10, warmup=2)


@dataclass(frozen=True, slots=True)
class Workspace:
    """What every measurement shares: the request files, the routes, the collector and a refused port."""

    root: Path
    requests: Path
    warmup: Path
    routes: Path
    collector_port: int
    refused_port: int


def _otel_env(setup: Setup, ws: Workspace) -> dict[str, str]:
    if setup.tracing == "off":
        return {}
    port = ws.collector_port if setup.tracing == "live" else ws.refused_port
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_BSP_SCHEDULE_DELAY": BSP_SCHEDULE_DELAY_MS,
    }


def measure(setup: Setup, connections: int, plan: Plan, ws: Workspace, run: str) -> dict[str, Any]:
    """Start ``setup`` on a fresh database, warm it up, measure it, stop it; the figures and what its log,
    exit code and the collector say."""
    port = load.free_port()
    while port in (ws.collector_port, ws.refused_port):
        port = load.free_port()
    log = ws.root / f"{run}.log"
    if setup.gateway:
        db = Path(tempfile.mkdtemp(prefix=f"{run}-", dir=ws.root)) / "gateway.db"
        argv = load.gateway_argv(ws.routes, db, port, log_level=setup.log_level, log_format="json")
    else:
        argv = load.floor_argv(port)
    spans_before = _spans(ws.collector_port)
    server = load.Server(argv, port=port, log=log, env=load.clean_env(_otel_env(setup, ws)))
    with server:
        url = server.url + "/"
        warmed = 0
        if plan.warmup:
            warmed = load.run_wrk(url, ws.warmup, connections=connections, duration=plan.warmup).requests
        started = log.stat().st_size
        result = load.run_wrk(url, ws.requests, connections=connections, duration=plan.duration)
    lines = _lines_after(log, started)
    extra: dict[str, Any] = {"exit": server.returncode, "log_lines": lines, "warmup_requests": warmed}
    if setup.tracing == "live":
        extra["spans_exported"] = _spans(ws.collector_port) - spans_before
    return {"setup": setup.name, "run": run, **result.as_dict(), **extra}


def _spans(port: int) -> int:
    return int(load.get_json(port, "/stats")["spans"])


def _lines_after(log: Path, offset: int) -> int:
    """Log lines written from ``offset`` on: the measurement and the stop (the warm-up's are left out)."""
    with log.open("rb") as f:
        f.seek(offset)
        return f.read().count(b"\n")


def run_all(plan: Plan, ws: Workspace, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every setup at every concurrency, round after round; the order rotates each round."""
    results = []
    for r in range(plan.rounds):
        order = SETUPS[r % len(SETUPS) :] + SETUPS[: r % len(SETUPS)]
        for c in plan.connections:
            for setup in order:
                run = f"r{r + 1}-c{c}-{setup.name}"
                result = measure(setup, c, plan, ws, run)
                results.append({"round": r + 1, **result})
                say(
                    f"{run:<22} {result['rps']:>8.1f} req/s  p50 {result['p50']:>7.2f} ms  "
                    f"p99 {result['p99']:>7.2f} ms  errors {_errors(result)}"
                )
    return results


def _errors(result: dict[str, Any]) -> int:
    return int(result["non_2xx"] + result["socket_errors"])


def summarize(results: Sequence[dict[str, Any]], connections: int) -> list[dict[str, Any]]:
    """One row per setup at ``connections``: medians over rounds; the ratio to the floor is taken within each
    round (side by side), then its median."""
    at = [r for r in results if r["connections"] == connections]
    floor = {r["round"]: r["rps"] for r in at if r["setup"] == "floor"}
    rows = []
    for setup in SETUPS:
        mine = sorted((r for r in at if r["setup"] == setup.name), key=lambda r: r["round"])
        if not mine:
            continue
        ratios = [r["rps"] / floor[r["round"]] for r in mine if floor.get(r["round"])]
        rows.append(
            {
                "setup": setup,
                "rps": statistics.median(r["rps"] for r in mine),
                "ratio": statistics.median(ratios) if ratios else None,
                **{k: statistics.median(r[k] for r in mine) for k in ("p50", "p99", "p999")},
                "errors": sum(_errors(r) for r in mine),
                "wraps": sum(r["wraps"] for r in mine),
                "by_round": [r["rps"] for r in mine],
                "exits": sorted({r["exit"] for r in mine}),
            }
        )
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| config | req/s | ratio to floor | p50 ms | p99 ms | p99.9 ms | errors | req/s by round |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}"
        errors = str(row["errors"]) + (f" ({row['wraps']} wraps)" if row["wraps"] else "")
        rounds = " / ".join(f"{x:.0f}" for x in row["by_round"])
        lines.append(
            f"| {row['setup'].label} | {row['rps']:.0f} | {ratio} | {row['p50']:.1f} | {row['p99']:.1f} "
            f"| {row['p999']:.1f} | {errors} | {rounds} |"
        )
    return "\n".join(lines)


def report(plan: Plan, results: Sequence[dict[str, Any]], started: datetime.datetime, mode: str) -> str:
    parts = [
        f"# Telemetry overhead ({mode}), {started:%Y-%m-%d %H:%M}",
        "",
        f"{plan.rounds} round(s) of {plan.duration} s per configuration and concurrency, after "
        f"{plan.warmup} s of warm-up; wrk -t 1, 1 KiB signed GitHub pushes, ingest only (no routes), a "
        f"fresh database per gateway run; {load.pinning()}; Python {platform.python_version()}. "
        "Medians over rounds; the ratio to the floor is taken within each round. This machine moves ±20 % "
        "run to run (LIMITS.md): compare only rows of one table.",
        "",
    ]
    for c in plan.connections:
        parts += [f"## c={c}", "", table(summarize(results, c)), ""]
    parts += _notes(results)
    parts += ["## Raw results", "", "```json", json.dumps(list(results), indent=1), "```", ""]
    return "\n".join(parts)


def _notes(results: Sequence[dict[str, Any]]) -> list[str]:
    """Sanity checks a reader needs: one log line per request in (c), spans actually exported in (d),
    servers that did not stop cleanly."""
    notes = []
    logged = [r for r in results if r["setup"] == "json-log"]
    if logged:
        per = statistics.median(r["log_lines"] / max(r["requests"], 1) for r in logged)
        notes.append(f"- (c) wrote {per:.2f} log lines per measured request (stderr to a file).")
    traced = [r for r in results if r["setup"] == "traced"]
    if traced:
        per = statistics.median(
            r["spans_exported"] / max(r["requests"] + r["warmup_requests"], 1) for r in traced
        )
        notes.append(f"- (d) the collector received {per:.2f} spans per request sent (warm-up included).")
    quiet = [r for r in results if r["setup"] in ("quiet", "refused")]
    if quiet:
        notes.append(
            "- log lines during measurement with --log-level warning: "
            + ", ".join(f"{r['run']}: {r['log_lines']}" for r in quiet)
        )
    bad = [f"{r['run']} exited {r['exit']}" for r in results if r["exit"] not in (0, None)]
    notes.append(f"- servers that did not exit 0 on SIGTERM: {', '.join(bad) or 'none'}.")
    return ["## Checks", "", *notes, ""]


def prepare(root: Path, plan: Plan) -> Workspace:
    seconds = plan.duration
    requests = deliveries.write_deliveries(root / "deliveries.txt", load.deliveries_needed(seconds))
    warmup = deliveries.write_deliveries(
        root / "warmup.txt", load.deliveries_needed(max(plan.warmup, 1)), label="warmup"
    )
    routes = deliveries.write_config(root / "config", routed=False)
    return Workspace(root, requests, warmup, routes, load.free_port(), load.free_port())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="1 round of 5 s runs (default: 3 rounds of 10 s)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})")
    args = parser.parse_args(argv)
    plan = Plan.of(args.quick)
    mode = "quick" if args.quick else "full"
    started = datetime.datetime.now()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        load.wrk_path()
        with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
            ws = prepare(Path(tmp), plan)
            collector = load.Server(
                load.collector_argv(ws.collector_port),
                port=ws.collector_port,
                log=ws.root / "collector.log",
                cpu=load.LOAD_CPU,  # beside wrk: the server under test keeps CPU 0 to itself
            )
            with collector:
                t0 = time.monotonic()
                results = run_all(plan, ws, say)
                say(f"measured in {time.monotonic() - t0:.0f} s")
    except (load.BenchError, subprocess.SubprocessError, OSError) as exc:
        print(f"bench.telemetry: {exc}", file=sys.stderr)
        return 1
    text = report(plan, results, started, mode)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    path = args.out / f"telemetry-{started:%Y-%m-%d}{suffix}.md"
    path.write_text(text)
    print(text.split("## Raw results")[0].rstrip())
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

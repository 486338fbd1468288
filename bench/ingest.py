"""The ingest benchmark (issue 7): signed 1 KiB GitHub pushes against the floor, the gateway (verified, routed
to a no-op task, fsynced, acknowledged), the two hand-written baselines, and the floor and gateway under
uvicorn, side by side in one run. I/O: processes, sockets, temp files; writes bench/results/ingest-<date>.*

Run from the repository: ``python -m bench.ingest [--quick] [-c 50]`` (quick: 1 round of 2 s at c=10 and 50;
full: 3 rounds of 10 s at c=1, 10, 50, 200). Configurations alternate within a round, so drift shows across
rounds; every run of a configuration that stores gets a fresh database, and its stored rows are counted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import deliveries, load

RESULTS = Path(__file__).resolve().parent / "results"
# Deliveries the pools hold per second of load: above the fastest storing configuration on this machine
# (LIMITS.md: the uvicorn floor ~6,900 req/s; the gateway under uvicorn stays well below it).
POOL_RATE = 10_000
TIMES = "\u00d7"  # the multiplication sign, in the tables


@dataclass(frozen=True, slots=True)
class Setup:
    """A configuration under test: ``kind`` is floor, gateway, locked or shared; ``server`` its HTTP stack."""

    name: str
    kind: str
    server: str
    label: str
    args: tuple[str, ...] = ()  # more `gateway serve` flags

    @property
    def stores(self) -> bool:
        return self.kind != "floor"


SETUPS = (
    Setup("floor", "floor", "hypercorn", "floor: Starlette, answers 202, stores nothing"),
    Setup("gateway", "gateway", "hypercorn", "gateway: verified, routed, fsynced, acknowledged"),
    Setup(
        "intake",
        "gateway",
        "hypercorn",
        "intake only (`--executor off`): the same, its runs left queued for workers",
        ("--executor", "off"),
    ),
    Setup("locked", "locked", "hypercorn", "baseline (a): insert + commit per request under a lock"),
    Setup("shared", "shared", "hypercorn", "baseline (b): insert + commit on one shared connection"),
    Setup("floor-uvicorn", "floor", "uvicorn", "floor under uvicorn"),
    Setup("gateway-uvicorn", "gateway", "uvicorn", "gateway under uvicorn (`--server uvicorn`)"),
    Setup(
        "intake-uvicorn",
        "gateway",
        "uvicorn",
        "intake only under uvicorn (`--executor off --server uvicorn`)",
        ("--executor", "off"),
    ),
)
BY_NAME = {s.name: s for s in SETUPS}


@dataclass(frozen=True, slots=True)
class Plan:
    rounds: int
    duration: int  # seconds per measurement
    warmup: int  # seconds of load before each measurement, on deliveries of their own
    connections: tuple[int, ...]
    setups: tuple[str, ...] = field(default=tuple(s.name for s in SETUPS))
    quick: bool = False

    @classmethod
    def of(cls, quick: bool, connections: Sequence[int] | None = None) -> Plan:
        if quick:  # 12 runs of ~4.5 s each (start, 1 s warm-up, 2 s, stop): under a minute
            return cls(1, 2, 1, tuple(connections or (10, 50)), quick=True)
        return cls(3, 10, 2, tuple(connections or (1, 10, 50, 200)))


@dataclass(frozen=True, slots=True)
class Workspace:
    root: Path
    requests: Path  # the measurement pool
    warmup: Path  # the warm-up pool: other delivery ids, so a warm-up never duplicates a measured delivery
    routes: Path


def argv_for(setup: Setup, port: int, db: Path, ws: Workspace) -> list[str]:
    server = ["--server", setup.server]
    if setup.kind == "floor":
        return [*load.floor_argv(port), *server]
    if setup.kind == "gateway":  # --log-level warning: no line per request, like the floor and baselines
        return [*load.gateway_argv(ws.routes, db, port, log_level="warning"), *server, *setup.args]
    baseline = [sys.executable, "-m", "bench.baselines", setup.kind, "--port", str(port)]
    return [*baseline, *server, "--db", str(db)]


def stored_events(db: Path) -> int:
    """Rows in ``events`` (the gateway's and the baselines' table), read-only, once the server stopped."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def store_check(acknowledged: int, stored: int, slack: int) -> dict[str, Any]:
    """Every 2xx must be a stored row. More rows than 2xx are requests the server took and stored while wrk
    was stopping (it drops its connections with a request in flight on each) or after a socket error: at most
    ``slack``, one per connection per wrk run plus its socket errors. Anything else means a wrong count."""
    extra = stored - acknowledged
    return {"acknowledged": acknowledged, "stored": stored, "extra": extra, "ok": 0 <= extra <= slack}


def measure(setup: Setup, connections: int, plan: Plan, ws: Workspace, run: str) -> dict[str, Any]:
    """Start ``setup`` (on a fresh database if it stores), warm it up, measure it, stop it, count its rows."""
    port = load.free_port()
    db = Path(tempfile.mkdtemp(prefix=f"{run}-", dir=ws.root)) / "events.db"
    server = load.Server(argv_for(setup, port, db, ws), port=port, log=ws.root / f"{run}.log")
    with server:
        url = server.url + "/"
        warm = None
        if plan.warmup:
            warm = load.run_wrk(url, ws.warmup, connections=connections, duration=plan.warmup)
        result = load.run_wrk(url, ws.requests, connections=connections, duration=plan.duration)
    row: dict[str, Any] = {"setup": setup.name, "server": setup.server, "run": run, **result.as_dict()}
    row |= {"exit": server.returncode, "warmup_requests": warm.requests if warm else 0, "store": None}
    if setup.stores:
        runs = [m for m in (warm, result) if m is not None]
        acknowledged = sum(m.requests - m.non_2xx for m in runs)
        slack = sum(m.connections + m.socket_errors for m in runs)
        row["store"] = store_check(acknowledged, stored_events(db), slack)
        row["wraps"] += warm.wraps if warm else 0
    return row


def prepare(root: Path, plan: Plan, stamp: str) -> Workspace:
    requests = deliveries.write_deliveries(
        root / "measure.txt", POOL_RATE * plan.duration, label=f"ingest-{stamp}"
    )
    warmup = deliveries.write_deliveries(
        root / "warmup.txt", POOL_RATE * max(plan.warmup, 1), label=f"ingest-warmup-{stamp}"
    )
    return Workspace(root, requests, warmup, deliveries.write_config(root / "config", routed=True))


def run(plan: Plan, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every setup of ``plan`` at every concurrency, round after round (the order rotates each round); the
    raw runs, their summary and the checks, as one JSON-able dict (``markdown`` renders it)."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    load.wrk_path()
    setups = [BY_NAME[name] for name in plan.setups]
    started = datetime.datetime.now()
    runs: list[dict[str, Any]] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        ws = prepare(Path(tmp), plan, f"{started:%Y%m%d%H%M%S}")
        say(f"ingest: {len(setups)} setups x {len(plan.connections)} concurrencies x {plan.rounds} round(s)")
        for r in range(plan.rounds):
            order = setups[r % len(setups) :] + setups[: r % len(setups)]
            for c in plan.connections:
                for setup in order:
                    name = f"r{r + 1}-c{c}-{setup.name}"
                    row = {"round": r + 1, **measure(setup, c, plan, ws, name)}
                    runs.append(row)
                    say(_progress(row))
    return {
        "benchmark": "ingest",
        "mode": "quick" if plan.quick else "full",
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - t0, 1),
        "plan": {**asdict(plan), "pool_rate": POOL_RATE},
        "pinning": load.pinning(),
        "python": platform.python_version(),
        "setups": [asdict(s) for s in setups],
        "summary": {str(c): summarize(runs, setups, c) for c in plan.connections},
        "runs": runs,
    }


def _progress(row: dict[str, Any]) -> str:
    store = row["store"]
    stored = "" if store is None else f"  stored {store['stored']} (2xx {store['acknowledged']})"
    return (
        f"{row['run']:<26} {row['rps']:>8.1f} req/s  p50 {row['p50']:>7.2f} ms  p99 {row['p99']:>7.2f} ms  "
        f"errors {row['non_2xx'] + row['socket_errors']}{stored}"
    )


def summarize(
    runs: Iterable[dict[str, Any]], setups: Sequence[Setup], connections: int
) -> list[dict[str, Any]]:
    """One row per setup at ``connections``: medians over rounds. The ratio to the floor of the same server
    and the p99 above that floor's are taken within each round (side by side), then their median."""
    at = [r for r in runs if r["connections"] == connections]
    floors = {(r["server"], r["round"]): r for r in at if BY_NAME[r["setup"]].kind == "floor"}
    rows = []
    for setup in setups:
        mine = sorted((r for r in at if r["setup"] == setup.name), key=lambda r: r["round"])
        if not mine:
            continue
        pairs = [(r, floors[r["server"], r["round"]]) for r in mine if (r["server"], r["round"]) in floors]
        ratios = [r["rps"] / f["rps"] for r, f in pairs if f["rps"]]
        checks = [r["store"] for r in mine if r["store"] is not None]
        rows.append(
            {
                "setup": setup.name,
                "server": setup.server,
                "rps": statistics.median(r["rps"] for r in mine),
                "ratio": round(statistics.median(ratios), 3) if ratios else None,
                **{k: statistics.median(r[k] for r in mine) for k in ("p50", "p99", "p999")},
                "p99_over_floor": _median_or_none([r["p99"] - f["p99"] for r, f in pairs]),
                "errors": sum(r["non_2xx"] + r["socket_errors"] for r in mine),
                "wraps": sum(r["wraps"] for r in mine),
                "store_ok": all(c["ok"] for c in checks) if checks else None,
                "by_round": [r["rps"] for r in mine],
            }
        )
    return rows


def _median_or_none(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"| config | server | req/s | {TIMES} floor | p50 ms | p99 ms | p99.9 ms | p99 over floor's "
        "| errors | req/s by round |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        setup = BY_NAME[row["setup"]]
        ratio = "—" if row["ratio"] is None or setup.kind == "floor" else f"{row['ratio']:.2f}"
        over = row["p99_over_floor"]
        over_text = "—" if over is None or setup.kind == "floor" else f"{over:+.1f}"
        errors = str(row["errors"]) + (f" ({row['wraps']} wraps)" if row["wraps"] and setup.stores else "")
        rounds = " / ".join(f"{x:.0f}" for x in row["by_round"])
        lines.append(
            f"| {setup.label} | {row['server']} | {row['rps']:.0f} | {ratio} | {row['p50']:.1f} "
            f"| {row['p99']:.1f} | {row['p999']:.1f} | {over_text} | {errors} | {rounds} |"
        )
    return "\n".join(lines)


def glance(result: dict[str, Any]) -> str:
    """req/s (and its ratio to the same server's floor) of every setup at every concurrency, in one table."""
    cs = list(result["summary"])
    lines = ["| config | " + " | ".join(f"c={c}" for c in cs) + " |", "|---|" + "--:|" * len(cs)]
    for setup in (Setup(**s) for s in result["setups"]):
        cells = []
        for c in cs:
            row = next((r for r in result["summary"][c] if r["setup"] == setup.name), None)
            if row is None:
                cells.append("—")
            elif setup.kind == "floor" or row["ratio"] is None:
                cells.append(f"{row['rps']:.0f}")
            else:
                cells.append(f"{row['rps']:.0f} ({row['ratio']:.2f}{TIMES})")
        lines.append(f"| {setup.name} ({setup.server}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checks(result: dict[str, Any]) -> list[str]:
    """What a reader must know before trusting the table: rows stored vs 2xx, repeated deliveries, exits."""
    runs = result["runs"]
    stored = [r for r in runs if r["store"] is not None]
    bad = [r for r in stored if not r["store"]["ok"]]
    notes = [
        f"- stored rows vs 2xx answers (read-only, after each stop): {len(stored) - len(bad)} of "
        f"{len(stored)} runs of the storing setups stored every acknowledged delivery"
        + (", extras being requests in flight when wrk stopped" if not bad else "")
        + "."
    ]
    notes += [
        f"  - MISMATCH {r['run']}: {r['store']['stored']} stored, {r['store']['acknowledged']} answered 2xx"
        for r in bad
    ]
    wrapped = [f"{r['run']} ({r['wraps']})" for r in stored if r["wraps"]]
    notes.append(
        "- repeated deliveries (wraps) in storing runs: "
        + (", ".join(wrapped) + ": those runs saw duplicates" if wrapped else "none: every delivery was new")
        + ". Every run of a storing setup had a fresh database."
    )
    floors = [f"{r['run']} ({r['wraps']})" for r in runs if r["store"] is None and r["wraps"]]
    if floors:
        notes.append(
            f"- floor runs that walked the file again (harmless: nothing stored): {', '.join(floors)}"
        )
    exits = [f"{r['run']} exited {r['exit']}" for r in runs if r["exit"] not in (0, None)]
    notes.append(f"- servers that did not exit 0 on SIGTERM: {', '.join(exits) or 'none'}.")
    return notes


def markdown(result: dict[str, Any]) -> str:
    plan = result["plan"]
    parts = [
        f"{plan['rounds']} round(s) of {plan['duration']} s per configuration and concurrency after "
        f"{plan['warmup']} s of warm-up (other deliveries); wrk -t 1 walking uniquely signed 1 KiB GitHub "
        f"pushes; {result['pinning']}; Python {result['python']}. The gateway runs with --log-level warning "
        "and routes every push to a no-op task. Medians over rounds; ratios and p99 differences are to the "
        "floor of the same server, taken within each round. Compare only rows of one run.",
        "",
        glance(result),
        "",
    ]
    for c, rows in result["summary"].items():
        parts += [f"### c={c}", "", table(rows), ""]
    parts += ["### Checks", "", *checks(result), ""]
    return "\n".join(parts)


def save(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ingest-<date>[-quick].json and .md into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if result["mode"] == "quick" else ""
    stem = out / f"ingest-{result['started'][:10]}{suffix}"
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md_path.write_text(f"# Ingest ({result['mode']}), {result['started']}\n\n{markdown(result)}")
    return json_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s at c=10, 50 (default: full)")
    parser.add_argument(
        "-c", "--connections", type=int, action="append", help="only this concurrency (repeat)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})")
    parser.add_argument("--plot", action="store_true", help="also draw the PNG (bench/plot.py)")
    args = parser.parse_args(argv)
    try:
        result = run(Plan.of(args.quick, args.connections))
    except (load.BenchError, subprocess.SubprocessError, OSError) as exc:
        print(f"bench.ingest: {exc}", file=sys.stderr)
        return 1
    json_path, md_path = save(result, args.out)
    print(markdown(result))
    print(f"written to {md_path} and {json_path} in {result['seconds']:.0f} s")
    if args.plot:
        from bench import plot

        print(f"plot: {plot.draw(result, plot.default_path(result, args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

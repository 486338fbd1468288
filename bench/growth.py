"""The growth benchmark (issue 7, item 6): ingest throughput on a database already holding many events, as a
ratio to an empty one; and the serving process's memory with a large queued backlog. I/O: processes,
sockets, SQLite files (prefilled databases are cached, see bench/prefill.py).

Run from the repository: ``python -m bench.growth [--quick]``; writes bench/results/growth-<date>[-quick]
.json and .md. Quick: 0, 100k and 500k stored events, 100k queued runs; full: 0, 1 M and 5 M, 1 M queued.
"""

from __future__ import annotations

import datetime
import http.client
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import deliveries, load, prefill
from bench.executor import cli, gateway, machine, memory, read_only, write_config

# The RSS run's task: it holds its slot for an hour, and its queue runs one at a time (routes.yaml), so the
# backlog stays queued while memory is read.
HOLD_TASK = '''"""The growth benchmark's task: it sleeps, so its queue's one slot stays taken."""

import asyncio
from typing import Any

from gateway import Context, task


@task(id="noop")
async def noop(payload: Any, ctx: Context) -> None:
    await asyncio.sleep(3600)
'''
ONE_AT_A_TIME = "queues:\n  noop:\n    concurrency: 1\n"


@dataclass(frozen=True, slots=True)
class Plan:
    sizes: tuple[int, ...]  # events stored before ingest is measured, the first 0 (an empty database)
    rounds: int  # each round measures every size in turn
    recheck: bool  # measure the empty database once more at the end: the drift shows in its req/s
    duration: int  # seconds of wrk per measurement
    connections: int
    backlog: int  # queued runs while RSS is read
    settle: float  # seconds after start before RSS is read
    window: float  # seconds over which idle CPU is measured

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls((0, 100_000, 500_000), 1, False, 3, 50, 100_000, settle=1.0, window=2.0)
        return cls((0, 1_000_000, 5_000_000), 3, True, 10, 50, 1_000_000, settle=3.0, window=5.0)


def cpu_seconds(server: load.Server) -> float:
    """User + system CPU time a running server has used so far."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _remove(db: Path) -> None:
    for path in db.parent.glob(f"{db.name}*"):  # the -wal, -shm and .lock files too
        path.unlink()


def ingest_at(size: int, plan: Plan, requests: Path, work: Path) -> dict[str, Any]:
    """wrk at c=``plan.connections`` (routed: every push also makes a no-op run that executes) on a copy of
    a database holding ``size`` prefilled events (stored unrouted, no runs)."""
    started = time.monotonic()
    db = work / f"growth-{size}.db"
    stored: dict[str, Any] = {"events": size, "bytes": 0, "copy_seconds": 0.0, "build_seconds": 0.0}
    if size:
        cached = prefill.cached(size, runs=False)
        stored.update(bytes=cached.size, build_seconds=round(cached.seconds, 1))
        stored["copy_seconds"] = round(prefill.copy(cached.path, db), 2)
    routes = write_config(work / "growth")
    with gateway(routes, db, work) as server:
        measured = load.run_wrk(
            server.url + "/", requests, connections=plan.connections, duration=plan.duration
        )
    _remove(db)
    took = round(time.monotonic() - started, 1)
    return {**stored, **measured.as_dict(), "exit": server.returncode, "wall_seconds": took}


def _queued(db: Path) -> tuple[int, int]:
    with read_only(db) as conn:
        queued = conn.execute("SELECT count(*) FROM runs WHERE status = 'queued'").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    return queued, total


def _scrape(port: int) -> tuple[float, int]:
    """GET /metrics: seconds and bytes."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise load.BenchError(f"/metrics answered {response.status}")
    finally:
        conn.close()
    return time.perf_counter() - started, len(body)


def rss_with_backlog(backlog: int, work: Path, settle: float, window: float) -> dict[str, Any]:
    """VmRSS and VmHWM of ``gateway serve`` on a copy of ``backlog`` queued runs (none when 0) whose queue
    runs one at a time and whose task sleeps, so the backlog stays queued; read after ``settle`` seconds,
    after a /metrics scrape, and the CPU it spends idle over ``window`` seconds."""
    started = time.monotonic()
    db = work / f"rss-{backlog}.db"
    copy_seconds = 0.0
    if backlog:
        cached = prefill.cached(backlog, runs=True)
        copy_seconds = prefill.copy(cached.path, db)
    routes = write_config(work / "rss", HOLD_TASK, ONE_AT_A_TIME)
    with gateway(routes, db, work, "--drain-timeout", "1") as server:
        time.sleep(settle)
        settled = memory(server)
        scrape_seconds, scrape_bytes = _scrape(server.port)
        scraped = memory(server)
        cpu = cpu_seconds(server)
        time.sleep(window)
        idle_cpu = (cpu_seconds(server) - cpu) / window
        queued, total = _queued(db) if backlog else (0, 0)
        final = memory(server)
    _remove(db)
    return {
        "backlog": backlog,
        "queued": queued,
        "queued_share": round(queued / total, 4) if total else None,
        "rss_mib": settled["VmRSS"],
        "rss_after_scrape_mib": scraped["VmRSS"],
        "peak_rss_mib": final["VmHWM"],
        "scrape_seconds": round(scrape_seconds, 3),
        "scrape_bytes": scrape_bytes,
        "idle_cpu_share": round(idle_cpu, 3),
        "copy_seconds": round(copy_seconds, 2),
        "exit": server.returncode,
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def run(quick: bool, say: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    plan = Plan.of(quick)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        work = Path(tmp)
        for size in plan.sizes:  # build missing cached databases before any clock starts
            if size:
                say(f"prefilled database of {size:,} events (cached in {prefill.cache_dir()})")
                prefill.cached(size, runs=False)
        say(f"prefilled database of {plan.backlog:,} queued runs")
        prefill.cached(plan.backlog, runs=True)
        requests = deliveries.write_deliveries(work / "deliveries.txt", load.deliveries_needed(plan.duration))
        ingest = []
        order = [(r + 1, size) for r in range(plan.rounds) for size in plan.sizes]
        order += [(plan.rounds, 0)] if plan.recheck else []
        for round_, size in order:
            say(f"round {round_}: ingest at c={plan.connections} with {size:,} events stored")
            ingest.append({"round": round_, **ingest_at(size, plan, requests, work)})
        say(f"RSS with {plan.backlog:,} queued runs, and with none")
        rss = [
            rss_with_backlog(0, work, plan.settle, plan.window),
            rss_with_backlog(plan.backlog, work, plan.settle, plan.window),
        ]
    return {
        "benchmark": "growth",
        "mode": "quick" if quick else "full",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "plan": asdict(plan),
        "ingest": ingest,
        "summary": summarize(ingest),
        "rss": rss,
        "cache": str(prefill.cache_dir()),
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def summarize(ingest: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size: medians over its measurements, and the median req/s as a ratio to the empty database's."""
    sizes = list(dict.fromkeys(r["events"] for r in ingest))
    rows = []
    for size in sizes:
        runs = [r for r in ingest if r["events"] == size]
        row: dict[str, Any] = {"events": size, "bytes": runs[0]["bytes"], "runs": len(runs)}
        for key in ("rps", "p50", "p99", "p999"):
            row[key] = round(statistics.median(r[key] for r in runs), 1)
        row["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in runs)
        row["rps_each"] = [r["rps"] for r in runs]
        rows.append(row)
    empty = rows[0]["rps"]
    for row in rows:
        row["ratio"] = round(row["rps"] / empty, 3) if empty else None
    return rows


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f}"


def markdown(result: dict[str, Any]) -> str:
    plan = result["plan"]
    m = result["machine"]
    lines = [
        f"{m['cpus']} CPUs, Python {m['python']}, SQLite {m['sqlite']}; {m['pinning']}; the gateway at "
        f"--log-level warning; {result['wall_seconds']} s in all. This machine moves ±20 % run to run "
        "(LIMITS.md).",
        "",
        "### Ingest with events already stored",
        "",
        f"wrk -c {plan['connections']} for {plan['duration']} s of signed 1 KiB pushes, routed (each makes a "
        "no-op run, which executes), on a copy of a prefilled database (bench/prefill.py: pushes stored as "
        "the gateway stores them, unrouted, no runs; fsynced before the gateway starts). "
        f"{plan['rounds']} round(s), each measuring every size "
        "in turn" + (", and the empty database once more at the end" if plan["recheck"] else "") + ". "
        "Medians over the runs of a size; the ratio is of medians.",
        "",
        "| events stored | database MiB | req/s | ratio to empty | p50 ms | p99 ms | p99.9 ms | errors "
        "| req/s of each run |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in result["summary"]:
        each = ", ".join(f"{rps:,.0f}" for rps in r["rps_each"])
        lines.append(
            f"| {r['events']:,} | {_mib(r['bytes'])} | {r['rps']:,.0f} | {r['ratio']:.2f} | {r['p50']:.1f} "
            f"| {r['p99']:.1f} | {r['p999']:.1f} | {r['errors']} | {each} |"
        )
    lines += [
        "",
        "### Memory with a queued backlog",
        "",
        "`gateway serve` on a copy of a prefilled database of queued `noop` runs, with `queues: {noop: "
        "{concurrency: 1}}` in routes.yaml and a task that sleeps, so one run executes and the rest stay "
        f"queued. RSS read {plan['settle']:.0f} s after start, again after one GET /metrics (which counts "
        "the queues), and the peak (VmHWM) at the end; idle CPU is the server's CPU time over "
        f"{plan['window']:.0f} s with no traffic, as a share of one CPU.",
        "",
        "| queued runs | still queued | RSS MiB | after /metrics | peak MiB | /metrics s | idle CPU |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in result["rss"]:
        share = "-" if r["queued_share"] is None else f"{r['queued_share']:.1%}"
        lines.append(
            f"| {r['backlog']:,} | {share} | {r['rss_mib']} | {r['rss_after_scrape_mib']} | "
            f"{r['peak_rss_mib']} | {r['scrape_seconds']} | {r['idle_cpu_share']:.0%} |"
        )
    cached = {r["events"]: r for r in result["summary"] if r["events"]}
    space = ", ".join(f"{n:,} events: {_mib(r['bytes'])} MiB" for n, r in cached.items())
    exits = [r["exit"] for r in result["ingest"] + result["rss"]]
    lines += [
        "",
        f"Cached prefilled databases in {result['cache']} ({space}; the queued-runs one besides). Each run "
        "writes to a copy, deleted after it. Gateway exit codes on SIGTERM: " + str(exits) + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return cli("growth", __doc__, argv, run, markdown)


if __name__ == "__main__":
    sys.exit(main())

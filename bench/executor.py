"""The executor benchmark (issue 7, item 5): event → task start latency at idle and under ingest load, and
no-op runs/s drained from a prefilled backlog, checked for full records. I/O: processes, sockets, SQLite.

Run from the repository: ``python -m bench.executor [--quick]``; writes bench/results/executor-<date>[-quick]
.json and .md. Latency is measured on this machine's one clock (``time.time()``): from just before the sender
writes a delivery to the moment the task starts, which the task records itself (its run's output).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import deliveries, load, prefill

RESULTS = Path(__file__).resolve().parent / "results"

# Written over bench.deliveries' bench_noop.py: the same routes, a task that says when it started.
STAMP_TASK = '''"""The executor benchmark's task: it returns when it started (time.time())."""

import time
from typing import Any

from gateway import Context, task


@task(id="noop")
async def noop(payload: Any, ctx: Context) -> dict[str, float]:
    return {"started": time.time()}
'''


@dataclass(frozen=True, slots=True)
class Plan:
    idle_probes: int  # deliveries sent one at a time, ``gap`` apart, on an otherwise idle gateway
    load_probes: int  # the same while wrk sends routed deliveries at c=50
    load_seconds: int  # wrk's run; probes stop a second before it ends
    gap: float  # seconds between probes
    backlog: int  # queued no-op runs to drain
    concurrencies: tuple[int, ...]  # --concurrency of the draining gateway

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(200, 100, 6, 0.01, 20_000, (100,))
        return cls(2_000, 1_000, 30, 0.01, 100_000, (100, 1_000))


# -- measuring ---------------------------------------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p99 and max of ``values`` (nearest rank), in the values' unit, rounded to 3 decimals."""
    ordered, n = sorted(values), len(values)
    if not n:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    ranked = {f"p{p}": round(ordered[min(n - 1, max(0, round(p / 100 * n) - 1))], 3) for p in (50, 99)}
    return {"n": n, **ranked, "max": round(ordered[-1], 3)}


def read_only(db: Path) -> sqlite3.Connection:
    """A read-only connection beside the serving gateway (WAL readers never block its writer)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def memory(server: load.Server) -> dict[str, float]:
    """VmRSS and VmHWM (its peak) of a running server, in MiB (taskset execs it: the pid is its own)."""
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text().splitlines()
    pairs = (line.split(":", 1) for line in status if line.startswith(("VmRSS:", "VmHWM:")))
    return {name: round(int(value.split()[0]) / 1024, 1) for name, value in pairs}


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise load.BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def write_config(directory: Path, task_source: str | None = None, extra: str = "") -> Path:
    """bench.deliveries' routed routes.yaml (every push → task ``noop``), with ``task_source`` as the tasks
    module and ``extra`` appended to routes.yaml when given."""
    routes = deliveries.write_config(directory, routed=True)
    if task_source is not None:
        (directory / f"{deliveries.TASKS_MODULE}.py").write_text(task_source)
    if extra:
        routes.write_text(routes.read_text() + extra)
    return routes


def gateway(routes: Path, db: Path, work: Path, *flags: str) -> load.Server:
    port = load.free_port()
    argv = [*load.gateway_argv(routes, db, port, log_level="warning"), *flags]
    return load.Server(argv, port=port, log=work / f"{db.stem}.log")


# -- event → task start ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    sent: float  # time.time() just before the request was written
    acked: float  # ... and once the 202 was read
    run_id: str


def signed(count: int, label: str) -> list[tuple[bytes, dict[str, str]]]:
    """``count`` signed push deliveries (body, headers) of their own, built before any clock starts."""
    built = []
    for n in range(count):
        body = deliveries.push_body(n)
        delivery = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-executor-{label}-{n}"))
        built.append((body, dict(deliveries.github_headers(body, deliveries.SECRET, delivery))))
    return built


def send(
    port: int, requests: Sequence[tuple[bytes, dict[str, str]]], gap: float, until: float = 1e18
) -> list[Probe]:
    """Send ``requests`` one at a time, ``gap`` apart, on one keep-alive connection, until the monotonic
    clock passes ``until``; each must be answered 202 with one run."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    probes: list[Probe] = []
    try:
        for body, headers in requests:
            if time.monotonic() > until:
                break
            sent = time.time()
            conn.request("POST", deliveries.SOURCE_PATH, body, headers)
            response = conn.getresponse()
            answer, acked = response.read(), time.time()
            if response.status != 202:
                raise load.BenchError(f"a probe was answered {response.status}: {answer[:200]!r}")
            probes.append(Probe(sent, acked, json.loads(answer)["runs"][0]["id"]))
            time.sleep(gap)
    finally:
        conn.close()
    return probes


_PROBED = """
SELECT r.id, r.status, r.output, e.received_at, a.started_at AS claimed_at
FROM json_each(:ids) AS k
JOIN runs AS r ON r.id = k.value
JOIN events AS e ON e.id = r.event_id
LEFT JOIN attempts AS a ON a.run_id = r.id AND a.number = 1
"""


def latencies(db: Path, probes: Sequence[Probe], timeout: float = 60.0) -> dict[str, Any]:
    """Wait for every probe's run to complete, then the latencies in milliseconds: ``start`` = task start -
    send (the headline), ``ack`` = 202 read - send, ``received_to_start`` = task start - the event's
    received_at (the gateway's clock when it verified the delivery), ``claim_to_start`` = task start - the
    attempt's started_at (when the executor claimed the run)."""
    ids = json.dumps([p.run_id for p in probes])
    with read_only(db) as conn:

        def done() -> bool:
            rows = conn.execute(_PROBED, {"ids": ids}).fetchall()
            return len(rows) == len(probes) and all(row["status"] == "completed" for row in rows)

        wait_until(done, timeout, f"{len(probes)} probe runs to complete", every=0.2)
        rows = {row["id"]: row for row in conn.execute(_PROBED, {"ids": ids})}
    found: dict[str, list[float]] = {"start": [], "ack": [], "received_to_start": [], "claim_to_start": []}
    for probe in probes:
        row = rows[probe.run_id]
        started = json.loads(row["output"])["started"]
        found["start"].append((started - probe.sent) * 1000)
        found["ack"].append((probe.acked - probe.sent) * 1000)
        found["received_to_start"].append((started - row["received_at"]) * 1000)
        found["claim_to_start"].append((started - row["claimed_at"]) * 1000)
    return {name: percentiles(values) for name, values in found.items()}


def start_latency(plan: Plan, work: Path) -> dict[str, Any]:
    """Probes at idle, then probes while wrk sends routed deliveries at c=50 (their runs execute too)."""
    routes = write_config(work / "latency", STAMP_TASK)
    db = work / "latency.db"
    requests = deliveries.write_deliveries(
        work / "load.txt", load.deliveries_needed(plan.load_seconds), label="executor-load"
    )
    idle, busy = signed(plan.idle_probes, "idle"), signed(plan.load_probes, "load")
    with gateway(routes, db, work) as server, ThreadPoolExecutor(1, "wrk") as pool:
        send(server.port, signed(20, "warmup"), plan.gap)  # imports and first-use costs happen here
        idle_probes = send(server.port, idle, plan.gap)
        wrk = pool.submit(
            load.run_wrk, server.url + "/", requests, connections=50, duration=plan.load_seconds, timeout=30
        )
        time.sleep(1.0)  # let the load settle
        load_probes = send(server.port, busy, plan.gap, until=time.monotonic() + plan.load_seconds - 2.0)
        result: dict[str, Any] = {
            "idle": latencies(db, idle_probes),
            "load": latencies(db, load_probes, timeout=120.0),
            "wrk": wrk.result().as_dict(),
        }
    result["exit"] = server.returncode
    return result


# -- drain -------------------------------------------------------------------------------------------------

_UNFINISHED = "SELECT count(*) FROM runs WHERE status IN ('queued', 'executing', 'retrying')"
_CHECKS = {
    "runs": "SELECT count(*) FROM runs",
    "not_completed": "SELECT count(*) FROM runs WHERE status != 'completed'",
    "attempts_not_1": "SELECT count(*) FROM runs WHERE attempts != 1",
    "runs_without_attempt": "SELECT count(*) FROM runs AS r "
    "WHERE NOT EXISTS (SELECT 1 FROM attempts AS a WHERE a.run_id = r.id)",
    "attempts": "SELECT count(*) FROM attempts",
    "attempts_not_completed": "SELECT count(*) FROM attempts WHERE outcome IS NOT 'completed' "
    "OR finished_at IS NULL",
}


def drain(backlog: int, concurrency: int, work: Path) -> dict[str, Any]:
    """Serve a copy of a prefilled backlog of queued no-op runs until every run is completed; runs/s is the
    backlog over first attempt start → last attempt end (from the attempt records)."""
    cached = prefill.cached(backlog, runs=True)
    db = work / f"drain-{concurrency}.db"
    copy_seconds = prefill.copy(cached.path, db)
    routes = write_config(work / f"drain-{concurrency}")  # bench.deliveries' own no-op task
    with gateway(routes, db, work, "--concurrency", str(concurrency)) as server:
        ready = time.monotonic()
        with read_only(db) as conn:
            wait_until(
                lambda: conn.execute(_UNFINISHED).fetchone()[0] == 0,
                timeout=60 + backlog / 200,
                what=f"{backlog} runs to complete",
                every=0.25,
            )
        drained = time.monotonic()
        peak = memory(server)
    with read_only(db) as conn:
        checks = {name: conn.execute(sql).fetchone()[0] for name, sql in _CHECKS.items()}
        first, last = conn.execute("SELECT min(started_at), max(finished_at) FROM attempts").fetchone()
    wrong = {k: v for k, v in checks.items() if v != (backlog if k in ("runs", "attempts") else 0)}
    for leftover in work.glob(f"{db.name}*"):
        leftover.unlink()
    return {
        "backlog": backlog,
        "concurrency": concurrency,
        "runs_per_s": round(backlog / (last - first), 1),
        "seconds": round(last - first, 2),
        "wall_seconds": round(drained - ready, 2),  # ready → all completed, by polling every 0.25 s
        "rss_mib": peak.get("VmRSS"),
        "peak_rss_mib": peak.get("VmHWM"),
        "checks": checks,
        "complete_records": not wrong,
        "wrong": wrong,
        "prefill": {**cached.as_dict(), "copy_seconds": round(copy_seconds, 2)},
        "exit": server.returncode,
    }


# -- the benchmark -----------------------------------------------------------------------------------------


def run(quick: bool, say: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    plan = Plan.of(quick)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-executor-") as tmp:
        work = Path(tmp)
        say("event → task start latency, idle then under load")
        latency = start_latency(plan, work)
        drains = []
        for concurrency in plan.concurrencies:
            say(f"drain of {plan.backlog} queued runs at --concurrency {concurrency}")
            drains.append(drain(plan.backlog, concurrency, work))
    return {
        "benchmark": "executor",
        "mode": "quick" if quick else "full",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "plan": asdict(plan),
        "latency": latency,
        "drain": drains,
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "pinning": load.pinning(),
    }


def _ms(stats: dict[str, Any]) -> str:
    """``p50 / p99`` in milliseconds."""
    if not stats["n"]:
        return "-"
    return " / ".join(f"{stats[k]:.1f}" if stats[k] >= 10 else f"{stats[k]:.2f}" for k in ("p50", "p99"))


def markdown(result: dict[str, Any]) -> str:
    """The section's text (its subsections are ###: bench/__main__.py puts it under a ## heading)."""
    plan, latency, m = result["plan"], result["latency"], result["machine"]
    wrk = latency["wrk"]
    lines = [
        f"{m['cpus']} CPUs, Python {m['python']}, SQLite {m['sqlite']}; {m['pinning']}; the gateway at "
        f"--log-level warning, a fresh database per gateway; {result['wall_seconds']} s in all. This machine "
        "moves ±20 % run to run (LIMITS.md).",
        "",
        "### Event → task start",
        "",
        f"A probe sends one signed 1 KiB push, reads its 202, waits {plan['gap'] * 1000:.0f} ms, and so on; "
        "the run's task (`noop`, async) returns `time.time()` as its output: every time is `time.time()` on "
        "this machine's one clock. **start** = task start - send; ack = 202 read - send; received → start = "
        "task start - the event's `received_at` (the gateway's clock at verification); claim → start = "
        "task start - the attempt's `started_at`. p50 / p99 in milliseconds.",
        "",
        "| when | probes | **start** | ack | received → start | claim → start |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    labels = {
        "idle": "idle (one delivery at a time)",
        "load": f"under load (wrk c=50: {wrk['rps']:.0f} req/s, p99 {wrk['p99']:.0f} ms, "
        f"{wrk['non_2xx'] + wrk['socket_errors']} errors)",
    }
    for when, label in labels.items():
        s = latency[when]
        lines.append(
            f"| {label} | {s['start']['n']} | **{_ms(s['start'])}** | {_ms(s['ack'])} "
            f"| {_ms(s['received_to_start'])} | {_ms(s['claim_to_start'])} |"
        )
    lines += [
        "",
        "### Drain",
        "",
        "A copy of a prefilled database (bench/prefill.py: signed pushes as the gateway stores them, one "
        "queued `noop` run each; the no-op task of bench/deliveries.py) is served until no run waits. "
        "runs/s = backlog ÷ (first attempt start → last attempt end, from the attempt records); then every "
        "run is checked: completed, attempts = 1, one completed attempt record.",
        "",
        "| backlog | --concurrency | runs/s | drain s | RSS MiB | peak RSS MiB | full records |",
        "|--:|--:|--:|--:|--:|--:|---|",
    ]
    for d in result["drain"]:
        records = "yes" if d["complete_records"] else f"**no**: {d['wrong']}"
        lines.append(
            f"| {d['backlog']:,} | {d['concurrency']} | {d['runs_per_s']:,.0f} | {d['seconds']} "
            f"| {d['rss_mib']} | {d['peak_rss_mib']} | {records} |"
        )
    exits = [latency["exit"]] + [d["exit"] for d in result["drain"]]
    lines += ["", f"Gateway exit codes on SIGTERM: {exits}.", ""]
    return "\n".join(lines)


def save(result: dict[str, Any], text: str, name: str, out: Path = RESULTS) -> Path:
    """Write ``<name>-<date>[-quick].json`` and ``.md`` into ``out``; returns the .md path."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{datetime.date.today().isoformat()}" + ("-quick" if result["mode"] == "quick" else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    path = out / f"{stem}.md"
    path.write_text(f"# {name.title()} ({result['mode']}), {result['date']}\n\n{text}")
    return path


def cli(name: str, doc: str | None, argv: Sequence[str] | None, run: Any, markdown: Any) -> int:
    """``python -m bench.<name> [--quick] [--out DIR]``, for this module and bench/growth.py."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc)
    parser.add_argument("--quick", action="store_true", help="the quick mode (see above)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})")
    args = parser.parse_args(argv)
    result = run(args.quick, say=lambda text: print(f"-- {text}", file=sys.stderr, flush=True))
    text = markdown(result)
    path = save(result, text, name, args.out)
    print(text)
    print(f"written: {path} and .json", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli("executor", __doc__, argv, run, markdown)


if __name__ == "__main__":
    sys.exit(main())

"""The workers benchmark (issue 18): what running tasks in `gateway worker` processes changes, against the
embedded executor of `gateway serve`. I/O: processes, sockets, SQLite files; writes bench/results/workers-*.

Run from the repository: ``python -m bench.workers [--quick] [--json FILE]``. Three measurements:

1. **Drain** of a prefilled backlog of queued no-op runs (bench/prefill.py; a copy per case) by the embedded
   executor (`gateway serve`), by one `gateway worker`, and by two; no load generator, nothing pinned (both
   cores free). runs/s = backlog ÷ (first attempt start → last attempt end, from the attempt records); every
   run is checked for its full record and, for workers, for which worker ran it.
2. **Event → task start at idle**: bench/executor.py's probes against `gateway serve --executor off` plus one
   `gateway worker` (intake on CPU 0, the worker on CPU 1), and against `gateway serve` (CPU 0).
3. **Intake throughput**: wrk c=50 of signed routed pushes against the floor (bench/floor.py), `gateway serve
   --executor off` (runs only queue) and `gateway serve` (runs execute beside intake); server on CPU 0, wrk on
   CPU 1; ratios to the floor of the same round.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench import deliveries, executor, ingest, load, prefill

RESULTS = executor.RESULTS
TIMES = "\u00d7"
WORKER_CPU = 1  # the worker of the latency case: intake is on load.SERVER_CPU


@dataclass(frozen=True, slots=True)
class Plan:
    backlog: int  # queued no-op runs each drain case starts from
    drain_rounds: int  # every drain case once per round, in a rotating order
    idle_probes: int  # per latency case, one at a time, ``gap`` apart
    gap: float
    intake_rounds: int  # every intake case once per round, in a rotating order
    intake_seconds: int  # wrk's measured run (0: no intake measurement)
    warmup: int  # seconds of wrk before each measured run, on deliveries of their own
    connections: int = 50

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(20_000, 1, 200, 0.01, 1, 3, 1)
        return cls(100_000, 3, 2_000, 0.01, 3, 10, 2)


DRAIN_CASES = ("serve", "worker-1", "worker-2")
DRAIN_LABELS = {
    "serve": "embedded executor (`gateway serve`)",
    "worker-1": "1 `gateway worker`",
    "worker-2": "2 `gateway worker` processes",
}
LATENCY_CASES = ("serve", "split")
LATENCY_LABELS = {
    "serve": "embedded executor (`gateway serve`, CPU 0)",
    "split": "`serve --executor off` (CPU 0) + 1 `gateway worker` (CPU 1)",
}
INTAKE_CASES = ("floor", "executor-off", "serve")
INTAKE_LABELS = {
    "floor": "floor: Starlette answering 202 (bench/floor.py)",
    "executor-off": "`gateway serve --executor off`: intake only, runs queue",
    "serve": "`gateway serve`: intake + embedded executor, runs execute",
}


# -- processes ---------------------------------------------------------------------------------------------


def cpu_seconds(stat_line: str, ticks: int) -> float:
    """utime + stime (every thread of the process) from a /proc/<pid>/stat line, in seconds. The command
    name (field 2) may hold spaces and parentheses: fields are counted after its last ')'."""
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / ticks  # fields 14 and 15 of proc(5), counted from 1


def process_cpu(pid: int) -> float | None:
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return round(cpu_seconds(line, os.sysconf("SC_CLK_TCK")), 2)


def peak_rss(pid: int) -> float | None:
    """VmHWM of ``pid`` in MiB (None once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    found = [line.split()[1] for line in status if line.startswith("VmHWM:")]
    return round(int(found[0]) / 1024, 1) if found else None


class Worker:
    """A `gateway worker` process: started (pinned to ``cpu`` when given) by :meth:`start`, ready once it is
    registered in the store's workers table, stopped with SIGTERM by :meth:`stop`."""

    def __init__(
        self, routes: Path, db: Path, log: Path, env: Mapping[str, str], cpu: int | None = None
    ) -> None:
        self.db, self.log, self.env, self.cpu = db, log, dict(env), cpu
        self.argv = [sys.executable, "-m", "gateway", "worker", "--routes", str(routes), "--db", str(db)]
        self.argv += ["--log-level", "warning", "--log-format", "json"]
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid  # taskset execs the worker: the pid is its own

    def launch(self) -> Self:
        with self.log.open("ab") as out:
            argv = load.pinned(self.argv, self.cpu)
            self.process = subprocess.Popen(argv, cwd=load.ROOT, env=self.env, stdout=out, stderr=out)
        return self

    def wait_ready(self, timeout: float = 30.0) -> Self:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self.registered():
            if self.process.poll() is not None:
                raise load.BenchError(f"gateway worker exited with {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise load.BenchError(f"gateway worker not registered in {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.05)
        return self

    def registered(self) -> bool:
        try:
            with executor.read_only(self.db) as conn:
                row = conn.execute(
                    "SELECT 1 FROM workers WHERE pid = ? AND stopped_at IS NULL", (self.pid,)
                ).fetchone()
        except sqlite3.Error:  # not migrated yet
            return False
        return row is not None

    def stop(self, timeout: float = 60.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.returncode = self.process.returncode
        return self.returncode

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.launch().wait_ready()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def noisy_lines(log: Path) -> int:
    """Log lines at warning or above (the processes run at --log-level warning, JSON lines)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if line.strip())


@dataclass(frozen=True, slots=True)
class Workspace:
    root: Path
    env: dict[str, str]  # XDG_RUNTIME_DIR in root: the wake-up sockets live and die with the run


def workspace(root: Path) -> Workspace:
    run = root / "run"
    run.mkdir(mode=0o700, parents=True)
    return Workspace(root, load.clean_env({"XDG_RUNTIME_DIR": str(run)}))


# -- 1. drain ----------------------------------------------------------------------------------------------

_BY_WORKER = """
SELECT a.worker_id, w.kind, w.pid, count(*) AS attempts, min(a.started_at) AS first,
       max(a.finished_at) AS last
FROM attempts AS a LEFT JOIN workers AS w ON w.id = a.worker_id
GROUP BY a.worker_id ORDER BY first
"""


def split_of(by_worker: Sequence[Mapping[str, Any]], total: int) -> list[float]:
    """Each worker's share of the attempts, in percent, in the order given."""
    return [round(100 * w["attempts"] / total, 1) if total else 0.0 for w in by_worker]


def record_problems(
    checks: Mapping[str, int], by_worker: Sequence[Mapping[str, Any]], backlog: int, pids: Sequence[int]
) -> dict[str, Any]:
    """What is wrong with a drained database: bench/executor.py's checks (every run completed, one
    attempt, its completed attempt record), plus every attempt naming one of ``pids``' workers."""
    wrong: dict[str, Any] = {
        k: v for k, v in checks.items() if v != (backlog if k in ("runs", "attempts") else 0)
    }
    strangers = [w for w in by_worker if w["worker_id"] is None or w["pid"] not in pids]
    if strangers:
        wrong["attempts_of_other_workers"] = {str(w["worker_id"]): w["attempts"] for w in strangers}
    return wrong


def drain_once(case: str, plan: Plan, ws: Workspace, run: str) -> dict[str, Any]:
    """Drain a copy of the prefilled backlog with ``case``'s processes, unpinned; check every record."""
    cached = prefill.cached(plan.backlog, runs=True)
    db = ws.root / f"{run}.db"
    copy_seconds = prefill.copy(cached.path, db)
    routes = executor.write_config(ws.root / run)  # bench.deliveries' own no-op task
    log = ws.root / f"{run}.log"
    pids: list[int] = []
    ready_cpu: list[float | None] = []
    cpu: list[float | None] = []
    rss: list[float | None] = []
    if case == "serve":
        port = load.free_port()
        argv = load.gateway_argv(routes, db, port, log_level="warning")
        procs: list[Any] = [load.Server(argv, port=port, log=log, env=ws.env, cpu=None)]
    else:
        procs = [Worker(routes, db, log, ws.env) for _ in range(int(case.split("-")[1]))]
    try:
        for proc in procs:  # every worker starts before any is waited for: they begin together
            if isinstance(proc, load.Server):
                proc.start()
            else:
                proc.launch()
        for proc in procs:
            if isinstance(proc, Worker):
                proc.wait_ready()
            assert proc.process is not None
            pids.append(proc.process.pid)
            ready_cpu.append(process_cpu(proc.process.pid))  # start-up: imports, migrations, registration
        with executor.read_only(db) as conn:
            executor.wait_until(
                lambda: conn.execute(executor._UNFINISHED).fetchone()[0] == 0,
                timeout=60 + plan.backlog / 200,
                what=f"{plan.backlog} runs to complete",
                every=0.25,
            )
        cpu = [process_cpu(pid) for pid in pids]
        rss = [peak_rss(pid) for pid in pids]
    finally:
        exits = [proc.stop() for proc in procs]
    with executor.read_only(db) as conn:
        checks = {name: conn.execute(sql).fetchone()[0] for name, sql in executor._CHECKS.items()}
        first, last = conn.execute("SELECT min(started_at), max(finished_at) FROM attempts").fetchone()
        by_worker = [dict(row) for row in conn.execute(_BY_WORKER)]
    for leftover in ws.root.glob(f"{db.name}*"):
        leftover.unlink()
    wrong = record_problems(checks, by_worker, plan.backlog, pids)
    during = [
        round(end - ready, 2) if end is not None and ready is not None else None
        for end, ready in zip(cpu, ready_cpu, strict=True)
    ]
    known_cpu = [c for c in during if c is not None]
    starts = [w["first"] for w in by_worker]
    return {
        "case": case,
        "run": run,
        "backlog": plan.backlog,
        "runs_per_s": round(plan.backlog / (last - first), 1),
        "seconds": round(last - first, 2),
        "cpu_seconds": during,  # each process's, from ready to drained
        "cpu_seconds_total": cpu,  # each process's, start-up included
        "cpu_us_per_run": round(1e6 * sum(known_cpu) / plan.backlog, 1) if known_cpu else None,
        "peak_rss_mib": rss,
        "by_worker": by_worker,
        "split_percent": split_of(by_worker, checks["attempts"]),
        "start_skew_s": round(max(starts) - min(starts), 3) if starts else None,
        "checks": checks,
        "complete_records": not wrong,
        "wrong": wrong,
        "log_lines": noisy_lines(log),
        "prefill": {**cached.as_dict(), "copy_seconds": round(copy_seconds, 2)},
        "exits": exits,
    }


def summarize_drains(drains: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per case: medians over rounds; the ratio to the embedded executor of the same round."""
    embedded = {d["round"]: d["runs_per_s"] for d in drains if d["case"] == "serve"}
    rows = []
    for case in DRAIN_CASES:
        mine = [d for d in drains if d["case"] == case]
        if not mine:
            continue
        ratios = [d["runs_per_s"] / embedded[d["round"]] for d in mine if embedded.get(d["round"])]
        cpus = [d["cpu_us_per_run"] for d in mine if d["cpu_us_per_run"] is not None]
        rows.append(
            {
                "case": case,
                "runs_per_s": statistics.median(d["runs_per_s"] for d in mine),
                "ratio": round(statistics.median(ratios), 2) if ratios else None,
                "seconds": statistics.median(d["seconds"] for d in mine),
                "cpu_seconds": [
                    statistics.median(cs) for cs in zip(*(d["cpu_seconds"] for d in mine), strict=True)
                ],
                "cpu_us_per_run": statistics.median(cpus) if cpus else None,
                "split_percent": [
                    statistics.median(s) for s in zip(*(d["split_percent"] for d in mine), strict=True)
                ],
                "complete_records": all(d["complete_records"] for d in mine),
                "by_round": [d["runs_per_s"] for d in mine],
            }
        )
    return rows


# -- 2. event → task start ---------------------------------------------------------------------------------


def latencies(db: Path, probes: Sequence[executor.Probe], timeout: float = 60.0) -> dict[str, Any]:
    """bench/executor.py's latencies, plus ack → start (task start - 202 read) and received → claim (the
    attempt's started_at - the event's received_at), in milliseconds."""
    ids = json.dumps([p.run_id for p in probes])
    with executor.read_only(db) as conn:

        def done() -> bool:
            rows = conn.execute(executor._PROBED, {"ids": ids}).fetchall()
            return len(rows) == len(probes) and all(row["status"] == "completed" for row in rows)

        executor.wait_until(done, timeout, f"{len(probes)} probe runs to complete", every=0.2)
        rows = {row["id"]: row for row in conn.execute(executor._PROBED, {"ids": ids})}
    names = ("start", "ack", "ack_to_start", "received_to_claim", "claim_to_start")
    found: dict[str, list[float]] = {name: [] for name in names}
    for probe in probes:
        row = rows[probe.run_id]
        started = json.loads(row["output"])["started"]
        found["start"].append((started - probe.sent) * 1000)
        found["ack"].append((probe.acked - probe.sent) * 1000)
        found["ack_to_start"].append((started - probe.acked) * 1000)
        found["received_to_claim"].append((row["claimed_at"] - row["received_at"]) * 1000)
        found["claim_to_start"].append((started - row["claimed_at"]) * 1000)
    return {name: executor.percentiles(values) for name, values in found.items()}


def latency_once(case: str, plan: Plan, ws: Workspace) -> dict[str, Any]:
    """Idle probes against ``case``: the embedded executor, or intake with --executor off plus a worker."""
    routes = executor.write_config(ws.root / f"latency-{case}", executor.STAMP_TASK)
    db = ws.root / f"latency-{case}.db"
    log = ws.root / f"latency-{case}.log"
    port = load.free_port()
    argv = load.gateway_argv(routes, db, port, log_level="warning")
    if case == "split":
        argv += ["--executor", "off"]
    intake = load.Server(argv, port=port, log=log, env=ws.env)  # CPU 0
    worker = Worker(routes, db, log, ws.env, cpu=WORKER_CPU) if case == "split" else None
    label = f"workers-{case}-{time.time_ns()}"
    with intake:
        try:
            if worker is not None:
                worker.launch().wait_ready()
            executor.send(intake.port, executor.signed(20, f"{label}-warmup"), plan.gap)
            probes = executor.send(intake.port, executor.signed(plan.idle_probes, label), plan.gap)
            result = {"case": case, **latencies(db, probes)}
        finally:
            exits = [intake.stop()] + ([worker.stop()] if worker is not None else [])
    return {**result, "exits": exits, "log_lines": noisy_lines(log)}


# -- 3. intake throughput ----------------------------------------------------------------------------------


def run_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())


def intake_once(case: str, plan: Plan, ws: Workspace, pools: tuple[Path, Path], run: str) -> dict[str, Any]:
    """One wrk measurement (after a warm-up on other deliveries) of ``case`` on a fresh database; the
    stored rows are counted against the 2xx answers, and the runs by status (queued or executed)."""
    requests, warmup = pools
    routes = deliveries.write_config(ws.root / "intake-config", routed=True)
    db = Path(tempfile.mkdtemp(prefix=f"{run}-", dir=ws.root)) / "events.db"
    port = load.free_port()
    if case == "floor":
        argv = load.floor_argv(port)
    else:
        argv = load.gateway_argv(routes, db, port, log_level="warning")
        argv += ["--executor", "off"] if case == "executor-off" else []
    log = ws.root / f"{run}.log"
    with load.Server(argv, port=port, log=log, env=ws.env) as server:
        url = server.url + "/"
        warm = load.run_wrk(url, warmup, connections=plan.connections, duration=plan.warmup)
        measured = load.run_wrk(url, requests, connections=plan.connections, duration=plan.intake_seconds)
        cpu = process_cpu(server.process.pid) if server.process is not None else None
    row: dict[str, Any] = {"case": case, "run": run, **measured.as_dict(), "exit": server.returncode}
    row |= {"cpu_seconds": cpu, "store": None, "runs": None, "log_lines": noisy_lines(log)}
    if case != "floor":
        both = (warm, measured)
        acknowledged = sum(m.requests - m.non_2xx for m in both)
        slack = sum(m.connections + m.socket_errors for m in both)
        row["store"] = ingest.store_check(acknowledged, ingest.stored_events(db), slack)
        row["runs"] = run_counts(db)
        row["wraps"] += warm.wraps
    return row


def summarize_intake(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per case: medians over rounds; the ratio to the floor of the same round, then its median."""
    floors = {r["round"]: r["rps"] for r in runs if r["case"] == "floor"}
    embedded = {r["round"]: r["rps"] for r in runs if r["case"] == "serve"}
    rows = []
    for case in INTAKE_CASES:
        mine = [r for r in runs if r["case"] == case]
        if not mine:
            continue
        ratios = [r["rps"] / floors[r["round"]] for r in mine if floors.get(r["round"])]
        to_serve = [r["rps"] / embedded[r["round"]] for r in mine if embedded.get(r["round"])]
        stores = [r["store"] for r in mine if r["store"] is not None]
        executed = [r["runs"].get("completed", 0) / r["store"]["stored"] for r in mine if r["store"]]
        rows.append(
            {
                "case": case,
                "rps": statistics.median(r["rps"] for r in mine),
                "ratio": round(statistics.median(ratios), 3) if ratios else None,
                "to_serve": round(statistics.median(to_serve), 2) if to_serve else None,
                **{k: statistics.median(r[k] for r in mine) for k in ("p50", "p99", "p999")},
                "errors": sum(r["non_2xx"] + r["socket_errors"] for r in mine),
                "wraps": sum(r["wraps"] for r in mine),
                "store_ok": all(s["ok"] for s in stores) if stores else None,
                "executed_share": round(statistics.median(executed), 3) if executed else None,
                "by_round": [r["rps"] for r in mine],
            }
        )
    return rows


# -- the benchmark -----------------------------------------------------------------------------------------


def rotated(cases: Sequence[str], round_: int) -> list[str]:
    k = round_ % len(cases)
    return [*cases[k:], *cases[:k]]


def run(plan: Plan, quick: bool, say: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    started = time.monotonic()
    if plan.intake_seconds:
        load.wrk_path()  # fail before anything long
    drains: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    intake: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        ws = workspace(Path(tmp))
        say(f"prefilled backlog of {plan.backlog} queued runs")
        prefill.cached(plan.backlog, runs=True)
        for r in range(plan.drain_rounds):
            for case in rotated(DRAIN_CASES, r):
                say(f"drain round {r + 1}: {case}")
                drains.append({"round": r + 1, **drain_once(case, plan, ws, f"drain-r{r + 1}-{case}")})
                say(_drain_progress(drains[-1]))
        for case in LATENCY_CASES:
            say(f"event → task start, idle: {case}")
            latency.append(latency_once(case, plan, ws))
        if plan.intake_seconds:
            stamp = f"{datetime.datetime.now():%Y%m%d%H%M%S}"
            pools = (
                deliveries.write_deliveries(
                    ws.root / "measure.txt", ingest.POOL_RATE * plan.intake_seconds, label=f"workers-{stamp}"
                ),
                deliveries.write_deliveries(
                    ws.root / "warmup.txt", ingest.POOL_RATE * max(plan.warmup, 1), label=f"workers-w-{stamp}"
                ),
            )
            for r in range(plan.intake_rounds):
                for case in rotated(INTAKE_CASES, r):
                    row = {"round": r + 1, **intake_once(case, plan, ws, pools, f"intake-r{r + 1}-{case}")}
                    intake.append(row)
                    say(f"intake round {r + 1}: {case}: {row['rps']:.0f} req/s, p99 {row['p99']:.1f} ms")
    return {
        "benchmark": "workers",
        "mode": "quick" if quick else "full",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": executor.machine(),
        "plan": asdict(plan),
        "drain": drains,
        "drain_summary": summarize_drains(drains),
        "latency": latency,
        "intake": intake,
        "intake_summary": summarize_intake(intake),
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def _drain_progress(d: Mapping[str, Any]) -> str:
    return (
        f"  {d['runs_per_s']:,.0f} runs/s over {d['seconds']} s; CPU {d['cpu_seconds']}; split "
        f"{d['split_percent']}; records {'complete' if d['complete_records'] else d['wrong']}"
    )


# -- the report --------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def drain_table(result: Mapping[str, Any]) -> list[str]:
    lines = [
        f"| runs by | runs/s | {TIMES} embedded | drain s | CPU s per process (share of the drain) "
        "| CPU µs per run | split between workers | full records | runs/s by round |",
        "|---|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for row in result["drain_summary"]:
        records = "yes" if row["complete_records"] else "**no** (see the JSON)"
        split = " / ".join(f"{s:.1f} %" for s in row["split_percent"]) if row["case"] == "worker-2" else "-"
        cpu = " + ".join(
            f"{c:.1f} ({100 * c / row['seconds']:.0f} %)" if c is not None and row["seconds"] else "-"
            for c in row["cpu_seconds"]
        )
        lines.append(
            f"| {DRAIN_LABELS[row['case']]} | {row['runs_per_s']:,.0f} | {_num(row['ratio'], 2)} "
            f"| {row['seconds']} | {cpu} | {_num(row['cpu_us_per_run'])} | {split} | {records} "
            f"| {' / '.join(f'{x:,.0f}' for x in row['by_round'])} |"
        )
    return lines


def skews(result: Mapping[str, Any]) -> list[str]:
    """When the second of two workers began, after the first (they are started together)."""
    found = [d["start_skew_s"] for d in result["drain"] if d["case"] == "worker-2"]
    if not found:
        return []
    text = ", ".join(f"{s * 1000:.0f} ms" for s in found if s is not None)
    return [f"Two workers: the second's first attempt began {text} after the first's (by round).", ""]


def latency_table(result: Mapping[str, Any]) -> list[str]:
    lines = [
        "| shape | probes | **start** | ack | ack → start | received → claim | claim → start |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for s in result["latency"]:
        lines.append(
            f"| {LATENCY_LABELS[s['case']]} | {s['start']['n']} | **{executor._ms(s['start'])}** "
            f"| {executor._ms(s['ack'])} | {_ms_signed(s['ack_to_start'])} "
            f"| {executor._ms(s['received_to_claim'])} | {executor._ms(s['claim_to_start'])} |"
        )
    return lines


def _ms_signed(stats: Mapping[str, Any]) -> str:
    if not stats["n"]:
        return "-"
    return " / ".join(f"{stats[k]:.2f}" for k in ("p50", "p99"))


def intake_table(result: Mapping[str, Any]) -> list[str]:
    lines = [
        f"| config | req/s | {TIMES} floor | {TIMES} `gateway serve` | p50 ms | p99 ms | errors "
        "| runs executed by the stop | every 2xx stored | req/s by round |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for row in result["intake_summary"]:
        floor = row["case"] == "floor"
        stored = "-" if row["store_ok"] is None else ("yes" if row["store_ok"] else "**no**")
        executed = "-" if row["executed_share"] is None else f"{100 * row['executed_share']:.0f} %"
        rounds = " / ".join(f"{x:,.0f}" for x in row["by_round"])
        lines.append(
            f"| {INTAKE_LABELS[row['case']]} | {row['rps']:,.0f} | {'—' if floor else _num(row['ratio'], 2)} "
            f"| {'—' if floor else _num(row['to_serve'], 2)} | {row['p50']:.1f} | {row['p99']:.1f} "
            f"| {row['errors']} | {executed} | {stored} | {rounds} |"
        )
    return lines


def markdown(result: Mapping[str, Any]) -> str:
    plan, m = result["plan"], result["machine"]
    exits = [e for d in result["drain"] for e in d["exits"]]
    exits += [e for s in result["latency"] for e in s["exits"]] + [r["exit"] for r in result["intake"]]
    logged = sum(d["log_lines"] for d in result["drain"]) + sum(s["log_lines"] for s in result["latency"])
    lines = [
        f"{m['cpus']} CPUs, Python {m['python']}, SQLite {m['sqlite']}; every process at --log-level "
        f"warning, a fresh database (or copy) per process group; {result['wall_seconds']} s in all. This "
        "machine moves ±20 % run to run (LIMITS.md): compare within a table.",
        "",
        "### Drain",
        "",
        f"A copy of a prefilled database of {plan['backlog']:,} queued no-op runs (bench/prefill.py) per "
        f"case, {plan['drain_rounds']} round(s), the cases in a rotating order; nothing pinned, no load "
        "generator. runs/s = backlog ÷ (first attempt start → last attempt end, from the attempt records); "
        "the ratio is to the embedded executor of the same round; medians over rounds. CPU s is each "
        "process's utime + stime (/proc) from ready (registered, or /healthz) to drained: start-up is not in "
        "it; CPU µs per run is their sum over the backlog. "
        "Full records: every run completed with 1 attempt and its completed attempt record, each attempt "
        "naming a worker of the case.",
        "",
        *drain_table(result),
        "",
        *skews(result),
        "### Event → task start, idle",
        "",
        f"bench/executor.py's probe: one signed 1 KiB push at a time, {plan['gap'] * 1000:.0f} ms apart, "
        "after 20 warm-up ones; the task returns `time.time()` at its start. start = task start - send; "
        "ack = 202 read - send; ack → start = task start - 202 read (negative: the task started before the "
        "sender read its 202); received → claim = the attempt's `started_at` - the event's `received_at`; "
        "claim → start = task start - the attempt's `started_at`. p50 / p99 in ms.",
        "",
        *latency_table(result),
        "",
    ]
    if result["intake_summary"]:
        lines += [
            f"### Intake throughput, wrk c={plan['connections']}",
            "",
            f"{plan['intake_rounds']} round(s) of {plan['intake_seconds']} s after {plan['warmup']} s of "
            "warm-up (other deliveries), the cases in a rotating order, a fresh database each; signed 1 KiB "
            f"pushes routed to a no-op task; {load.pinning()}. Ratios within a round, medians over rounds. "
            "With `--executor off` the runs only queue: this is intake capacity, not end-to-end throughput.",
            "",
            *intake_table(result),
            "",
        ]
    lines += [
        f"Exit codes on SIGTERM: {sorted(set(exits))} ({len(exits)} processes). Log lines at warning or "
        f"above in the drain and latency cases: {logged}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.workers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="20k backlog, 1 round, 200 probes, 3 s of wrk")
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this file")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})")
    args = parser.parse_args(argv)
    try:
        result = run(
            Plan.of(args.quick), args.quick, say=lambda t: print(f"-- {t}", file=sys.stderr, flush=True)
        )
    except (load.BenchError, subprocess.SubprocessError, OSError) as exc:
        print(f"bench.workers: {exc}", file=sys.stderr)
        return 1
    text = markdown(result)
    path = executor.save(result, text, "workers", args.out)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    print(f"written: {path} and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

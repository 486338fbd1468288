"""The PostgreSQL store against SQLite on this machine (issue 19, "Measure"): intake per gateway, two gateways
on one database, drain by one and two workers, event → task start. I/O: processes, sockets, SQLite files, a
PostgreSQL server of its own (tests/support/postgres.py); writes bench/results/postgres-<date>[-quick].md and
.json.

Run from the repository: ``python -m bench.postgres [--quick] [--json FILE]``. One PostgreSQL server for the
whole run (initdb in a temp dir, fsync and synchronous_commit on), a fresh database (or a copy of the
prefilled one) per case; four measurements, the cases of each in a rotating order round after round, ratios
within a round, medians over rounds:

1. **Intake per gateway**: wrk c=50 of signed routed 1 KiB pushes (bench/load.py, bench/deliveries.py)
   against the floor (bench/floor.py), `gateway serve --executor off` on SQLite and on PostgreSQL (the runs
   only queue). The server on CPU 0, wrk on CPU 1, and PostgreSQL's processes on CPU 1 too (the postmaster and
   every child it has, or forks later). Every 2xx is counted back in the database afterwards.
2. **Two gateways on one PostgreSQL**: two `serve --executor off` processes (both on CPU 0), each driven by a
   wrk of its own (c=25 each, on CPU 1, other deliveries each), total req/s against one gateway's.
3. **Drain** of a backlog of queued no-op runs with full records, by one and two `gateway worker` processes on
   PostgreSQL (a copy of a database prefilled through ``PostgresStore.jobs.add``, every delivery admitted
   by the gateway's own functions) and one on SQLite (bench/prefill.py); nothing pinned, no load generator.
   runs/s = backlog ÷ (first attempt start → last attempt end), every run checked complete with one attempt
   naming a worker of the case.
4. **Event → task start, idle**: bench/executor.py's probes against `serve --executor off` + one `gateway
   worker` (woken by LISTEN/NOTIFY) and against `gateway serve` (its embedded executor) on PostgreSQL, and the
   first shape on SQLite for comparison; intake on CPU 0, the worker and PostgreSQL on CPU 1.

Beside the figures: PostgreSQL's version and settings, the CPU its processes used (backends, WAL writer, the
rest), its commits and WAL per request or per run (pg_stat_database, pg_stat_wal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bench import deliveries, executor, ingest, load, prefill, workers
from bench.__main__ import describe, machine
from gateway.model import Event, Run
from gateway.routes.ingest import admit
from gateway.signatures.verify import verify
from gateway.store.postgres.store import PostgresStore
from tests.support import postgres

RESULTS = executor.RESULTS
TIMES = "\u00d7"
POSTGRES_CPU = 1  # beside wrk (intake) or the worker (latency): the server under test has CPU 0 to itself
# What the server runs with, on top of tests/support/postgres.py's (fsync, synchronous_commit on,
# max_connections 200): nothing else, so the figures are those of a stock server. Reported as SHOWn.
SETTINGS: dict[str, str] = {}
SHOWN = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "wal_sync_method",
    "shared_buffers",
    "max_connections",
    "checkpoint_timeout",
    "max_wal_size",
)


@dataclass(frozen=True, slots=True)
class Plan:
    rounds: int  # intake rounds: every intake case once per round, in a rotating order
    intake_seconds: int  # wrk's measured run (0: no intake measurement)
    warmup: int  # seconds of wrk before each measured run, on deliveries of their own (0: none)
    backlog: int  # queued no-op runs each drain case starts from (0: no drain)
    drain_rounds: int
    idle_probes: int  # per latency case (0: no latency measurement)
    gap: float  # seconds between probes
    connections: int = 50  # wrk's, split in two halves for two gateways
    chunk: int = 1_000  # events per jobs.add transaction when prefilling PostgreSQL

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(1, 3, 1, 10_000, 1, 200, 0.01)
        return cls(3, 10, 2, 100_000, 3, 2_000, 0.01)


INTAKE_CASES = ("floor", "sqlite", "postgres", "postgres-2")
INTAKE_LABELS = {
    "floor": "floor: Starlette answering 202 (bench/floor.py)",
    "sqlite": "`serve --executor off`, SQLite",
    "postgres": "`serve --executor off`, PostgreSQL",
    "postgres-2": "2 `serve --executor off` processes, one PostgreSQL (c=25 each)",
}
DRAIN_CASES = ("postgres-1", "postgres-2", "sqlite-1")
DRAIN_LABELS = {
    "postgres-1": "1 `gateway worker`, PostgreSQL",
    "postgres-2": "2 `gateway worker` processes, PostgreSQL",
    "sqlite-1": "1 `gateway worker`, SQLite",
}
LATENCY_CASES = ("postgres-split", "postgres-serve", "sqlite-split")
LATENCY_LABELS = {
    "postgres-split": "PostgreSQL: `serve --executor off` (CPU 0) + 1 `gateway worker` (CPU 1)",
    "postgres-serve": "PostgreSQL: embedded executor (`gateway serve`, CPU 0)",
    "sqlite-split": "SQLite: `serve --executor off` (CPU 0) + 1 `gateway worker` (CPU 1)",
}


# -- the PostgreSQL server ---------------------------------------------------------------------------------


def query(
    dsn: str, text: str, params: Sequence[Any] | Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The rows of one statement on a connection of its own (autocommit)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10, row_factory=dict_row) as conn:
        cursor = conn.execute(text.encode(), params)  # bytes: the statements here are ours, not a template
        return list(cursor.fetchall()) if cursor.description else []


def server_facts(server: postgres.PostgresServer) -> dict[str, Any]:
    """PostgreSQL's version and the settings in force (SHOW), and where its binaries are."""
    with psycopg.connect(server.dsn(), autocommit=True, connect_timeout=10) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        shown = {
            name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone() for name in SHOWN
        }
    return {
        "version": str(version[0]) if version else "?",
        "settings": {name: str(row[0]) if row else "?" for name, row in shown.items()},
        "bin": str(server.binaries.bin),
        "psycopg": psycopg.__version__,
        "libpq": psycopg.pq.version(),
    }


def pin_postgres(server: postgres.PostgresServer, cpus: set[int] | None) -> str:
    """Put the postmaster and every process it has on ``cpus`` (None: all of this machine's); the children
    it forks later inherit the postmaster's. Returns where it now runs, in words."""
    everything = set(range(os.cpu_count() or 1))
    wanted = everything if cpus is None or len(everything) < 2 else cpus & everything or everything
    pid = server.pid
    if pid is None:
        raise load.BenchError("PostgreSQL is not running")
    for each in (pid, *postgres._children(pid)):
        with contextlib.suppress(ProcessLookupError):  # a backend that just ended
            os.sched_setaffinity(each, wanted)
    if wanted == everything:
        return "PostgreSQL not pinned"
    return f"PostgreSQL on CPU {', '.join(map(str, sorted(wanted)))} (sched_setaffinity of its processes)"


def process_kind(title: str) -> str:
    """Which of PostgreSQL's processes a /proc/<pid>/cmdline (its process title) names: ``backend`` (a
    client's), ``walwriter``, ``checkpointer``, ``bgwriter``, ``autovacuum``, else ``other``."""
    text = title.replace("\x00", " ").strip()
    if not text.startswith("postgres:"):
        return "postmaster" if text else "other"
    rest = text.removeprefix("postgres:").strip()
    for prefix, kind in (
        ("walwriter", "walwriter"),
        ("checkpointer", "checkpointer"),
        ("background writer", "bgwriter"),
        ("autovacuum", "autovacuum"),
        ("logical replication", "other"),
        ("archiver", "other"),
        ("stats", "other"),
        ("startup", "other"),
    ):
        if rest.startswith(prefix):
            return kind
    return "backend"


CpuSnapshot = dict[int, tuple[str, int]]  # pid: (kind, utime + stime in clock ticks)


def postgres_cpu(server: postgres.PostgresServer) -> CpuSnapshot:
    """The CPU time so far of the postmaster and each of its children, by pid."""
    pid = server.pid
    if pid is None:
        return {}
    found: CpuSnapshot = {}
    for each in (pid, *postgres._children(pid)):
        try:
            title = Path(f"/proc/{each}/cmdline").read_text(errors="replace")
            stat = Path(f"/proc/{each}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        kind = "postmaster" if each == pid else process_kind(title)
        found[each] = (kind, int(fields[11]) + int(fields[12]))
    return found


def cpu_used(before: CpuSnapshot, after: CpuSnapshot, ticks: int | None = None) -> dict[str, float]:
    """Seconds of CPU by kind of process between two snapshots, and their ``total``: a process that
    appeared meanwhile counts from 0; one that ended meanwhile is not counted (its end is unknown)."""
    ticks = ticks or os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for pid, (kind, now) in after.items():
        used[kind] = used.get(kind, 0.0) + (now - before.get(pid, (kind, 0))[1]) / ticks
    rounded = {kind: round(seconds, 2) for kind, seconds in sorted(used.items())}
    return {**rounded, "total": round(sum(used.values()), 2)}


def busy_seconds(stat: str | None = None, ticks: int | None = None) -> float:
    """CPU seconds this machine spent busy so far, every CPU added up (the ``cpu`` line of /proc/stat: user,
    nice, system, irq and softirq; idle, iowait and steal are not busy here)."""
    line = (stat if stat is not None else Path("/proc/stat").read_text()).split("\n", 1)[0]
    fields = [int(v) for v in line.split()[1:]]
    user, nice, system, irq, softirq = fields[0], fields[1], fields[2], fields[5], fields[6]
    return (user + nice + system + irq + softirq) / (ticks or os.sysconf("SC_CLK_TCK"))


class Elsewhere:
    """How many CPUs the rest of the machine kept busy over a window: all busy time less ours (this process
    and its reaped children, the ``pids`` given, PostgreSQL's processes). Other work on a shared machine,
    made visible beside the figures it disturbs."""

    def __init__(self, server: postgres.PostgresServer, pids: Sequence[int] = ()) -> None:
        self.server, self.pids = server, list(pids)
        self.started, self.busy, self.own = time.monotonic(), busy_seconds(), self._ours()

    def _ours(self) -> float:
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        own += sum(workers.process_cpu(pid) or 0.0 for pid in self.pids)
        ticks = os.sysconf("SC_CLK_TCK")
        return own + sum(j for _, j in postgres_cpu(self.server).values()) / ticks

    def cpus(self) -> float:
        seconds = time.monotonic() - self.started
        other = (busy_seconds() - self.busy) - (self._ours() - self.own)
        return round(max(0.0, other) / seconds, 2) if seconds > 0 else 0.0


_PG_STATS = """
SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()) AS commits,
       wal_records, wal_bytes, wal_sync, wal_write
FROM pg_stat_wal
"""


def pg_stats(dsn: str) -> dict[str, int]:
    """The database's commits so far, and the server's WAL records, bytes, syncs and writes."""
    [row] = query(dsn, _PG_STATS)
    return {name: int(value or 0) for name, value in row.items()}


def stats_used(before: Mapping[str, int], after: Mapping[str, int], per: int) -> dict[str, float | None]:
    """What happened between two :func:`pg_stats`, per request (or run): ``per`` of them."""
    if not per:
        return {name: None for name in after}
    return {name: round((after[name] - before.get(name, 0)) / per, 3) for name in after}


@contextlib.contextmanager
def database(server: postgres.PostgresServer, name: str, template: str | None = None) -> Iterator[str]:
    """A new database ``name`` (a file copy of ``template`` when given) for the ``with`` block, then
    dropped; yields its DSN."""
    made = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template or "template0")
    )
    if template is not None:
        made += sql.SQL(" STRATEGY FILE_COPY")  # a file copy and a checkpoint: nothing left to flush later
    with psycopg.connect(server.dsn(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(made)
    try:
        yield server.dsn(name)
    finally:
        postgres.drop_database(server, name)


# -- processes ---------------------------------------------------------------------------------------------


def serve_argv(routes: Path, db: str, port: int, *flags: str) -> list[str]:
    """`gateway serve` on ``db`` (a SQLite file or a postgresql:// address) at --log-level warning."""
    argv = [sys.executable, "-m", "gateway", "serve", "--routes", str(routes), "--db", db]
    argv += ["--port", str(port)]
    return [*argv, "--log-level", "warning", "--log-format", "json", *flags]


class PgWorker(workers.Worker):
    """bench/workers.py's `gateway worker` on a PostgreSQL database: ready once it is registered there."""

    def __init__(
        self, routes: Path, dsn: str, log: Path, env: Mapping[str, str], cpu: int | None = None
    ) -> None:
        super().__init__(routes, Path(), log, env, cpu)
        self.dsn = dsn
        self.argv[self.argv.index("--db") + 1] = dsn

    def registered(self) -> bool:
        try:
            rows = query(self.dsn, "SELECT 1 FROM workers WHERE pid = %s AND stopped_at IS NULL", (self.pid,))
        except psycopg.Error:  # not migrated yet
            return False
        return bool(rows)


def gateway_cpu(servers: Sequence[load.Server]) -> list[float | None]:
    return [workers.process_cpu(s.process.pid) if s.process is not None else None for s in servers]


def spent(before: Sequence[float | None], after: Sequence[float | None]) -> list[float | None]:
    return [
        round(a - b, 2) if a is not None and b is not None else None
        for a, b in zip(after, before, strict=True)
    ]


# -- 1, 2. intake ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pools:
    """Delivery files: ``measure`` and ``warmup`` for one gateway, their ``_b`` twins for a second one."""

    measure: Path
    warmup: Path
    measure_b: Path
    warmup_b: Path


def write_pools(root: Path, plan: Plan) -> Pools:
    stamp = f"{datetime.datetime.now():%Y%m%d%H%M%S}"
    sizes = (ingest.POOL_RATE * plan.intake_seconds, ingest.POOL_RATE * max(plan.warmup, 1))
    files = [
        deliveries.write_deliveries(root / f"{name}.txt", size, label=f"postgres-{name}-{stamp}")
        for name, size in zip(("measure", "warmup", "measure-b", "warmup-b"), sizes * 2, strict=True)
    ]
    return Pools(*files)


def drive(
    servers: Sequence[load.Server], files: Sequence[tuple[Path, Path]], bench: Bench
) -> tuple[list[load.Measurement], list[load.Measurement], list[float | None], float]:
    """Warm each server up on its own deliveries, then measure them all at once, a wrk each (the
    connections split between them); (warm-ups, measurements, each server's CPU seconds while measured,
    the CPUs busy elsewhere meanwhile)."""
    plan = bench.plan
    connections = plan.connections // len(servers)

    def wrk_all(which: int, seconds: int) -> list[load.Measurement]:
        with ThreadPoolExecutor(len(servers), "wrk") as pool:
            running = [
                pool.submit(load.run_wrk, s.url + "/", f[which], connections=connections, duration=seconds)
                for s, f in zip(servers, files, strict=True)
            ]
            return [r.result() for r in running]

    warm = wrk_all(1, plan.warmup) if plan.warmup else []
    before = gateway_cpu(servers)
    elsewhere = Elsewhere(bench.server, [s.process.pid for s in servers if s.process is not None])
    measured = wrk_all(0, plan.intake_seconds)
    return warm, measured, spent(before, gateway_cpu(servers)), elsewhere.cpus()


def combined(measured: Sequence[load.Measurement]) -> dict[str, Any]:
    """One row of figures for the wrk runs of one case (at once, on two gateways): their requests and req/s
    added up, the worse of their percentiles, their errors added up."""
    if len(measured) == 1:
        return measured[0].as_dict()
    out: dict[str, Any] = {"connections": sum(m.connections for m in measured)}
    out["seconds"] = max(m.seconds for m in measured)
    for name in ("requests", "rps", "non_2xx", "socket_errors", "wraps", "deliveries"):
        out[name] = round(sum(getattr(m, name) for m in measured), 1)
    for name in ("p50", "p90", "p99", "p999", "max"):
        out[name] = max(getattr(m, name) for m in measured)
    out["mean"] = round(sum(m.mean * m.requests for m in measured) / max(1, out["requests"]), 3)
    out["errors"] = {k: sum(m.errors.get(k, 0) for m in measured) for k in measured[0].errors}
    out["each"] = [m.as_dict() for m in measured]
    return out


@dataclass(frozen=True, slots=True)
class Bench:
    """What every measurement shares: the plan, the work directory and its environment, the server."""

    plan: Plan
    ws: workers.Workspace
    server: postgres.PostgresServer

    def workers_plan(self) -> workers.Plan:
        """The same measurement, as bench/workers.py's functions take it (for the SQLite cases)."""
        p = self.plan
        return workers.Plan(p.backlog, p.drain_rounds, p.idle_probes, p.gap, 0, 0, 0, p.connections)


def intake_once(case: str, bench: Bench, pools: Pools, run: str) -> dict[str, Any]:
    """One wrk measurement of ``case`` on a fresh database, after a warm-up; then its rows counted."""
    ws = bench.ws
    routes = deliveries.write_config(ws.root / "intake-config", routed=True)
    log = ws.root / f"{run}.log"
    files = [(pools.measure, pools.warmup), (pools.measure_b, pools.warmup_b)]
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(postgres.fresh_database(bench.server)) if "postgres" in case else None
        count = 2 if case == "postgres-2" else 1
        ports = [load.free_port() for _ in range(count)]
        db = dsn or str(Path(tempfile.mkdtemp(prefix=f"{run}-", dir=ws.root)) / "events.db")
        if case == "floor":
            argvs = [load.floor_argv(ports[0])]
        else:
            argvs = [serve_argv(routes, db, port, "--executor", "off") for port in ports]
        servers = [
            load.Server(argv, port=port, log=log, env=ws.env) for argv, port in zip(argvs, ports, strict=True)
        ]
        stats_before = pg_stats(dsn) if dsn else None
        with contextlib.ExitStack() as running:
            for server in servers:
                running.enter_context(server)  # all stopped (SIGTERM) at the end of the block
            cpu_before = postgres_cpu(bench.server) if dsn else None
            warm, measured, cpu, elsewhere = drive(servers, files[:count], bench)
            pg_cpu = cpu_used(cpu_before, postgres_cpu(bench.server)) if cpu_before is not None else None
        counted = count_rows(db) if case != "floor" else None  # read once every server stopped
        stats_after = pg_stats(dsn) if dsn else None  # a backend flushes its statistics as it exits
    figures = combined(measured)
    row: dict[str, Any] = {"case": case, "run": run, **figures, "exits": [s.returncode for s in servers]}
    requests = figures["requests"]
    row["cpu_seconds"] = cpu  # each server's, while measured
    known = [c for c in cpu if c is not None]
    row["cpu_us_per_request"] = round(1e6 * sum(known) / requests, 1) if known and requests else None
    row["postgres_cpu"] = pg_cpu
    row["elsewhere_cpus"] = elsewhere
    row["postgres_cpu_us_per_request"] = (
        {k: round(1e6 * v / requests, 1) for k, v in pg_cpu.items()} if pg_cpu and requests else None
    )
    row |= {"store": None, "runs": None, "pg_per_request": None, "log_lines": workers.noisy_lines(log)}
    if counted is not None:
        both = [*warm, *measured]
        acknowledged = sum(m.requests - m.non_2xx for m in both)
        slack = sum(m.connections + m.socket_errors for m in both)
        row["store"] = ingest.store_check(acknowledged, counted["events"], slack)
        row["runs"] = counted["runs"]
        row["wraps"] += sum(m.wraps for m in warm)
        if stats_before is not None and stats_after is not None:
            row["pg_per_request"] = stats_used(stats_before, stats_after, sum(m.requests for m in both))
    return row


def count_rows(db: str) -> dict[str, Any]:
    """Events stored, and runs by status, in a SQLite file or a PostgreSQL database (read only)."""
    if postgres_address(db):
        events = query(db, "SELECT count(*) AS n FROM events")[0]["n"]
        runs = {
            r["status"]: r["n"] for r in query(db, "SELECT status, count(*) AS n FROM runs GROUP BY status")
        }
        return {"events": int(events), "runs": runs}
    return {"events": ingest.stored_events(Path(db)), "runs": workers.run_counts(Path(db))}


def postgres_address(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def summarize_intake(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per case: medians over rounds; the ratios to the floor, to SQLite and (two gateways) to one
    gateway on PostgreSQL, each taken within a round, then their median."""
    by_round: dict[str, dict[int, float]] = {}
    for r in runs:
        by_round.setdefault(r["case"], {})[r["round"]] = r["rps"]

    def ratio(row: Mapping[str, Any], to: str) -> float | None:
        base = by_round.get(to, {}).get(row["round"])
        return row["rps"] / base if base else None

    def median(values: Sequence[float | None], digits: int = 3) -> float | None:
        known = [v for v in values if v is not None]
        return round(statistics.median(known), digits) if known else None

    rows = []
    for case in INTAKE_CASES:
        mine = [r for r in runs if r["case"] == case]
        if not mine:
            continue
        stores = [r["store"] for r in mine if r["store"] is not None]
        pg = [r["postgres_cpu_us_per_request"] for r in mine if r.get("postgres_cpu_us_per_request")]
        per = [r["pg_per_request"] for r in mine if r.get("pg_per_request")]
        rows.append(
            {
                "case": case,
                "rps": statistics.median(r["rps"] for r in mine),
                "to_floor": median([ratio(r, "floor") for r in mine]) if case != "floor" else None,
                "to_sqlite": median([ratio(r, "sqlite") for r in mine]) if "postgres" in case else None,
                "to_one": median([ratio(r, "postgres") for r in mine]) if case == "postgres-2" else None,
                **{k: statistics.median(r[k] for r in mine) for k in ("p50", "p99", "p999")},
                "errors": sum(r["non_2xx"] + r["socket_errors"] for r in mine),
                "wraps": sum(r["wraps"] for r in mine),
                "store_ok": all(s["ok"] for s in stores) if stores else None,
                "cpu_us_per_request": median([r["cpu_us_per_request"] for r in mine], 1),
                "postgres_cpu_us_per_request": {k: median([p.get(k) for p in pg], 1) for k in pg[0]}
                if pg
                else None,
                "pg_per_request": {k: median([p[k] for p in per]) for k in per[0]} if per else None,
                "each_rps": [
                    statistics.median(es)
                    for es in zip(*([e["rps"] for e in r["each"]] for r in mine), strict=True)
                ]
                if case == "postgres-2"
                else None,
                "by_round": [r["rps"] for r in mine],
                "elsewhere_by_round": [r.get("elsewhere_cpus") for r in mine],
            }
        )
    return rows


# -- 3. drain ----------------------------------------------------------------------------------------------


def admitted(count: int, chunk: int, *, label: str = "prefill") -> Iterator[tuple[list[Event], list[Run]]]:
    """``count`` signed pushes, each verified and admitted by the gateway's own functions (bench/prefill.py's
    deliveries and routes: one queued ``noop`` run each), received 1 ms apart and ending a minute ago, in
    chunks of ``chunk`` events with their runs."""
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as tmp:
        rows = prefill.Rows(prefill.load_config(True, Path(tmp)), label)
    source, first = rows.source, time.time() - 60 - count * prefill.SPACING
    for start in range(0, count, chunk):
        events: list[Event] = []
        runs: list[Run] = []
        for n in range(start, min(start + chunk, count)):
            inbound, at = rows.request(n), first + n * prefill.SPACING
            verdict = verify(
                source.scheme,
                source.secrets,
                inbound,
                now=at,
                tolerance=source.tolerance,
                remote=source.remote,
            )
            admission = admit(rows.config, source, inbound, verdict, at)
            events.append(admission.event)
            runs += admission.runs
        yield events, runs


async def fill(dsn: str, count: int, chunk: int) -> int:
    """Store ``count`` admitted deliveries and their runs through the store interface (``jobs.add``, one
    transaction per chunk); returns the runs stored."""
    store = await PostgresStore.open(dsn)
    stored = 0
    try:
        for events, runs in admitted(count, chunk):
            await store.jobs.add(events, runs)
            stored += len(runs)
    finally:
        await store.close()
    return stored


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    runs: int
    seconds: float  # to admit and store them, then VACUUM (ANALYZE) events and runs
    bytes: int


def prefill_postgres(server: postgres.PostgresServer, count: int, chunk: int) -> Template:
    """A database of ``count`` queued no-op runs on ``server``: copy it (:func:`database` with
    ``template``), never write to it.

    Its events and runs are vacuumed and analyzed, as autovacuum leaves a backlog that built up over time
    (and so that autovacuum never changes it between copies). The attempts table is left as it is, empty and
    never analyzed. Analyzed empty, the worker's prepared end of an attempt (``UPDATE attempts ... WHERE
    run_id = ... AND number = ...``) gets a generic plan that scans the whole table, made while it holds a
    few rows and kept as it grows, until an ANALYZE of attempts replans it: each end then costs more than
    the one before (measured over a drain of 10,000: 171 buffers per end instead of ~5, 2.5x PostgreSQL's
    CPU per run). Never analyzed, the planner assumes at least 10 pages and takes the primary key."""
    name = f"prefill_{count}"
    started = time.perf_counter()
    dsn = postgres.create_database(server, name)
    runs = asyncio.run(fill(dsn, count, chunk))
    query(dsn, "VACUUM (ANALYZE) events, runs")
    size = query(dsn, "SELECT pg_database_size(current_database()) AS b")[0]["b"]
    return Template(name, runs, round(time.perf_counter() - started, 2), int(size))


_UNFINISHED = "SELECT count(*) AS n FROM runs WHERE status IN ('queued', 'executing', 'retrying')"
CHECKS = {  # bench/executor.py's _CHECKS, in PostgreSQL's dialect
    "runs": "SELECT count(*) FROM runs",
    "not_completed": "SELECT count(*) FROM runs WHERE status <> 'completed'",
    "attempts_not_1": "SELECT count(*) FROM runs WHERE attempts <> 1",
    "runs_without_attempt": "SELECT count(*) FROM runs AS r "
    "WHERE NOT EXISTS (SELECT 1 FROM attempts AS a WHERE a.run_id = r.id)",
    "attempts": "SELECT count(*) FROM attempts",
    "attempts_not_completed": "SELECT count(*) FROM attempts WHERE outcome IS DISTINCT FROM 'completed' "
    "OR finished_at IS NULL",
}
_BY_WORKER = """
SELECT a.worker_id, w.kind, w.pid, count(*) AS attempts, min(a.started_at) AS first_at,
       max(a.finished_at) AS last_at
FROM attempts AS a LEFT JOIN workers AS w ON w.id = a.worker_id
GROUP BY a.worker_id, w.kind, w.pid ORDER BY first_at
"""


def drain_postgres(workers_count: int, bench: Bench, template: Template, run: str) -> dict[str, Any]:
    """Drain a copy of the prefilled database with ``workers_count`` workers, unpinned; check every record."""
    plan, ws = bench.plan, bench.ws
    routes = executor.write_config(ws.root / run)  # bench.deliveries' own no-op task
    log = ws.root / f"{run}.log"
    copy_started = time.perf_counter()
    with database(bench.server, run.replace("-", "_"), template.name) as dsn:
        copy_seconds = time.perf_counter() - copy_started
        procs = [PgWorker(routes, dsn, log, ws.env) for _ in range(workers_count)]
        stats_before = pg_stats(dsn)
        ready_cpu: list[float | None] = []
        cpu: list[float | None] = []
        try:
            for proc in procs:  # every worker starts before any is waited for: they begin together
                proc.launch()
            for proc in procs:
                proc.wait_ready()
                ready_cpu.append(workers.process_cpu(proc.pid))
            pg_before = postgres_cpu(bench.server)
            elsewhere = Elsewhere(bench.server, [proc.pid for proc in procs])
            with psycopg.connect(dsn, autocommit=True) as conn:

                def drained() -> bool:
                    row = conn.execute(_UNFINISHED.encode()).fetchone()
                    return row is not None and row[0] == 0

                executor.wait_until(
                    drained,
                    timeout=60 + plan.backlog / 200,
                    what=f"{plan.backlog} runs to complete",
                    every=0.25,
                )
            busy_elsewhere = elsewhere.cpus()
            cpu = [workers.process_cpu(proc.pid) for proc in procs]
            pg_cpu = cpu_used(pg_before, postgres_cpu(bench.server))
            rss = [workers.peak_rss(proc.pid) for proc in procs]
        finally:
            exits = [proc.stop() for proc in procs]
        stats_after = pg_stats(dsn)
        checks = {name: int(query(dsn, text)[0]["count"]) for name, text in CHECKS.items()}
        [span] = query(dsn, "SELECT min(started_at) AS first, max(finished_at) AS last FROM attempts")
        by_worker = [
            {"worker_id": r["worker_id"], "kind": r["kind"], "pid": r["pid"], "attempts": int(r["attempts"])}
            | {"first": r["first_at"], "last": r["last_at"]}
            for r in query(dsn, _BY_WORKER)
        ]
    pids = [proc.pid for proc in procs]
    wrong = workers.record_problems(checks, by_worker, plan.backlog, pids)
    during = spent(ready_cpu, cpu)
    known = [c for c in during if c is not None]
    starts = [w["first"] for w in by_worker]
    seconds = span["last"] - span["first"] if span["first"] is not None else 0.0
    return {
        "case": f"postgres-{workers_count}",
        "run": run,
        "backlog": plan.backlog,
        "runs_per_s": round(plan.backlog / seconds, 1) if seconds else 0.0,
        "seconds": round(seconds, 2),
        "cpu_seconds": during,  # each worker's, from ready to drained
        "cpu_seconds_total": cpu,
        "cpu_us_per_run": round(1e6 * sum(known) / plan.backlog, 1) if known else None,
        "postgres_cpu": pg_cpu,  # PostgreSQL's processes, from every worker ready to drained
        "elsewhere_cpus": busy_elsewhere,
        "postgres_cpu_us_per_run": {k: round(1e6 * v / plan.backlog, 1) for k, v in pg_cpu.items()},
        "pg_per_run": stats_used(stats_before, stats_after, plan.backlog),
        "peak_rss_mib": rss,
        "by_worker": by_worker,
        "split_percent": workers.split_of(by_worker, checks["attempts"]),
        "start_skew_s": round(max(starts) - min(starts), 3) if starts else None,
        "checks": checks,
        "complete_records": not wrong,
        "wrong": wrong,
        "log_lines": workers.noisy_lines(log),
        "prefill": {**asdict(template), "copy_seconds": round(copy_seconds, 2)},
        "exits": exits,
    }


def drain_once(case: str, bench: Bench, template: Template | None, run: str) -> dict[str, Any]:
    if case == "sqlite-1":
        elsewhere = Elsewhere(bench.server)  # the whole case: its processes are reaped by its end
        row = workers.drain_once("worker-1", bench.workers_plan(), bench.ws, run)
        row |= {"case": case, "postgres_cpu": None, "postgres_cpu_us_per_run": None, "pg_per_run": None}
        return {**row, "elsewhere_cpus": elsewhere.cpus()}
    assert template is not None
    return drain_postgres(int(case.split("-")[1]), bench, template, run)


def summarize_drains(drains: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per case: medians over rounds; the ratios to SQLite's worker and to one PostgreSQL worker of
    the same round, then their median."""
    base: dict[str, dict[int, float]] = {}
    for d in drains:
        base.setdefault(d["case"], {})[d["round"]] = d["runs_per_s"]
    rows = []
    for case in DRAIN_CASES:
        mine = [d for d in drains if d["case"] == case]
        if not mine:
            continue

        def ratio(to: str, of: Sequence[Mapping[str, Any]] = mine) -> float | None:
            found = [d["runs_per_s"] / base[to][d["round"]] for d in of if base.get(to, {}).get(d["round"])]
            return round(statistics.median(found), 2) if found else None

        cpus = [d["cpu_us_per_run"] for d in mine if d["cpu_us_per_run"] is not None]
        pg = [d["postgres_cpu_us_per_run"] for d in mine if d["postgres_cpu_us_per_run"]]
        per = [d["pg_per_run"] for d in mine if d["pg_per_run"]]
        rows.append(
            {
                "case": case,
                "runs_per_s": statistics.median(d["runs_per_s"] for d in mine),
                "to_sqlite": ratio("sqlite-1") if case != "sqlite-1" else None,
                "to_one": ratio("postgres-1") if case == "postgres-2" else None,
                "seconds": statistics.median(d["seconds"] for d in mine),
                "cpu_seconds": [
                    statistics.median(c for c in cs if c is not None)
                    if any(c is not None for c in cs)
                    else None
                    for cs in zip(*(d["cpu_seconds"] for d in mine), strict=True)
                ],
                "cpu_us_per_run": statistics.median(cpus) if cpus else None,
                "postgres_cpu_us_per_run": {k: statistics.median(p.get(k, 0.0) for p in pg) for k in pg[0]}
                if pg
                else None,
                "pg_per_run": {k: statistics.median(p[k] for p in per) for k in per[0]} if per else None,
                "split_percent": [
                    statistics.median(s) for s in zip(*(d["split_percent"] for d in mine), strict=True)
                ],
                "complete_records": all(d["complete_records"] for d in mine),
                "by_round": [d["runs_per_s"] for d in mine],
                "elsewhere_by_round": [d.get("elsewhere_cpus") for d in mine],
            }
        )
    return rows


# -- 4. event → task start ---------------------------------------------------------------------------------

_PROBED = """
SELECT r.id, r.status, r.output, e.received_at, a.started_at AS claimed_at
FROM runs AS r JOIN events AS e ON e.id = r.event_id
LEFT JOIN attempts AS a ON a.run_id = r.id AND a.number = 1
WHERE r.id = ANY(%s)
"""


def latency_figures(
    probes: Sequence[executor.Probe], rows: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """bench/workers.py's latencies from each probe's run row (its output holds the task's start time), in
    milliseconds: start, ack, ack → start, received → claim, claim → start."""
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


def pg_latencies(dsn: str, probes: Sequence[executor.Probe], timeout: float = 60.0) -> dict[str, Any]:
    """Wait for every probe's run to complete, then :func:`latency_figures`."""
    ids = [p.run_id for p in probes]
    found: dict[str, dict[str, Any]] = {}

    def done() -> bool:
        found.clear()
        found.update({row["id"]: row for row in query(dsn, _PROBED, (ids,))})
        return len(found) == len(ids) and all(row["status"] == "completed" for row in found.values())

    executor.wait_until(done, timeout, f"{len(ids)} probe runs to complete", every=0.2)
    return latency_figures(probes, found)


def latency_once(case: str, bench: Bench) -> dict[str, Any]:
    """Idle probes against ``case``'s processes (intake on CPU 0, a worker on CPU 1)."""
    if case == "sqlite-split":
        elsewhere = Elsewhere(bench.server)  # the whole case: its processes are reaped by its end
        row = workers.latency_once("split", bench.workers_plan(), bench.ws)
        return {**row, "case": case, "elsewhere_cpus": elsewhere.cpus()}
    plan, ws = bench.plan, bench.ws
    routes = executor.write_config(ws.root / f"latency-{case}", executor.STAMP_TASK)
    log = ws.root / f"latency-{case}.log"
    port = load.free_port()
    label = f"postgres-{case}-{time.time_ns()}"
    with postgres.fresh_database(bench.server) as dsn:
        split = case == "postgres-split"
        intake = load.Server(
            serve_argv(routes, dsn, port, *(["--executor", "off"] if split else [])),
            port=port,
            log=log,
            env=ws.env,
        )
        worker = PgWorker(routes, dsn, log, ws.env, cpu=workers.WORKER_CPU) if split else None
        with intake:
            try:
                if worker is not None:
                    worker.launch().wait_ready()
                executor.send(intake.port, executor.signed(20, f"{label}-warmup"), plan.gap)
                pids = [p.process.pid for p in (intake, worker) if p is not None and p.process is not None]
                elsewhere = Elsewhere(bench.server, pids)
                probes = executor.send(intake.port, executor.signed(plan.idle_probes, label), plan.gap)
                busy = elsewhere.cpus()
                result = {"case": case, **pg_latencies(dsn, probes), "elsewhere_cpus": busy}
            finally:
                exits = [intake.stop()] + ([worker.stop()] if worker is not None else [])
    return {**result, "exits": exits, "log_lines": workers.noisy_lines(log)}


# -- the benchmark -----------------------------------------------------------------------------------------


def start_server() -> postgres.PostgresServer:
    return postgres.PostgresServer(settings=SETTINGS).start()


def run(plan: Plan, quick: bool, say: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    started, load_before = time.monotonic(), os.getloadavg()[0]
    if plan.intake_seconds:
        load.wrk_path()  # fail before anything long
    intake: list[dict[str, Any]] = []
    drains: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    placed: dict[str, str] = {}
    template: Template | None = None
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as tmp, contextlib.ExitStack() as stack:
        say("PostgreSQL: initdb and start")
        server = start_server()
        stack.callback(server.stop)
        facts = server_facts(server)
        say(f"PostgreSQL {facts['version']}: {facts['settings']}")
        bench = Bench(plan, workers.workspace(Path(tmp)), server)
        if plan.intake_seconds:
            placed["intake"] = f"{load.pinning()}; {pin_postgres(server, {POSTGRES_CPU})}"
            pools = write_pools(bench.ws.root, plan)
            for r in range(plan.rounds):
                for case in workers.rotated(INTAKE_CASES, r):
                    row = {"round": r + 1, **intake_once(case, bench, pools, f"intake-r{r + 1}-{case}")}
                    intake.append(row)
                    say(_intake_progress(row))
        if plan.backlog:
            placed["drain"] = f"workers not pinned; {pin_postgres(server, None)}"
            say(
                f"prefill: {plan.backlog} queued runs on PostgreSQL (jobs.add) and on SQLite "
                "(bench/prefill.py)"
            )
            template = prefill_postgres(server, plan.backlog, plan.chunk)
            prefill.cached(plan.backlog, runs=True)
            say(f"  PostgreSQL: {template.seconds} s, {template.bytes / 2**20:,.0f} MiB")
            for r in range(plan.drain_rounds):
                for case in workers.rotated(DRAIN_CASES, r):
                    say(f"drain round {r + 1}: {case}")
                    drains.append(
                        {"round": r + 1, **drain_once(case, bench, template, f"drain-r{r + 1}-{case}")}
                    )
                    say(_drain_progress(drains[-1]))
            postgres.drop_database(server, template.name)
        if plan.idle_probes:
            placed["latency"] = (
                f"intake on CPU 0, the worker on CPU {workers.WORKER_CPU}; "
                f"{pin_postgres(server, {POSTGRES_CPU})}"
            )
            for case in LATENCY_CASES:
                say(f"event → task start, idle: {case}")
                latency.append(latency_once(case, bench))
                say(f"  start p50 {latency[-1]['start']['p50']} ms, p99 {latency[-1]['start']['p99']} ms")
    return {
        "benchmark": "postgres",
        "mode": "quick" if quick else "full",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "postgres": facts,
        "placement": placed,
        "plan": asdict(plan),
        "intake": intake,
        "intake_summary": summarize_intake(intake),
        "prefill": asdict(template) if template is not None else None,
        "drain": drains,
        "drain_summary": summarize_drains(drains),
        "latency": latency,
        "wall_seconds": round(time.monotonic() - started, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # 1 min: before, after
    }


def _intake_progress(row: Mapping[str, Any]) -> str:
    stored = (
        ""
        if row["store"] is None
        else f", stored {row['store']['stored']} ({'ok' if row['store']['ok'] else 'WRONG'})"
    )
    figures = f"{row['rps']:,.0f} req/s, p99 {row['p99']:.1f} ms{stored}"
    return f"intake round {row['round']}: {row['case']}: {figures}"


def _drain_progress(d: Mapping[str, Any]) -> str:
    return (
        f"  {d['runs_per_s']:,.0f} runs/s over {d['seconds']} s; CPU {d['cpu_seconds']}; PostgreSQL "
        f"{(d.get('postgres_cpu') or {}).get('total', '-')} s; records "
        f"{'complete' if d['complete_records'] else d['wrong']}"
    )


# -- the report --------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pg_cpu(split: Mapping[str, float | None] | None) -> str:
    """PostgreSQL's CPU per request (or run): total (backends + WAL writer + the rest), µs."""
    if not split:
        return "-"
    total = split.get("total") or 0.0
    backends, walwriter = split.get("backend") or 0.0, split.get("walwriter") or 0.0
    rest = total - backends - walwriter
    return f"{total:,.0f} ({backends:,.0f} + {walwriter:,.0f} + {max(rest, 0.0):,.0f})"


def _elsewhere(row: Mapping[str, Any]) -> str:
    """The CPUs other processes of the machine kept busy during each round's measurement."""
    found = row.get("elsewhere_by_round") or []
    return " / ".join("-" if x is None else f"{x:.2f}" for x in found) or "-"


def _per(stats: Mapping[str, float | None] | None, key: str, digits: int = 2) -> str:
    return "-" if not stats or stats.get(key) is None else f"{stats[key]:,.{digits}f}"


def intake_table(result: Mapping[str, Any]) -> list[str]:
    lines = [
        f"| config | req/s | {TIMES} floor | {TIMES} SQLite | p50 ms | p99 ms | errors | every 2xx stored "
        "| gateway CPU µs/req | PostgreSQL CPU µs/req (backends + WAL writer + rest) | commits/req "
        "| WAL fsyncs/req | WAL bytes/req | req/s by round | CPUs busy elsewhere |",
        "|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|---|---|",
    ]
    for row in result["intake_summary"]:
        if row["case"] == "postgres-2":
            continue
        stored = "-" if row["store_ok"] is None else ("yes" if row["store_ok"] else "**no**")
        per = row["pg_per_request"]
        lines.append(
            f"| {INTAKE_LABELS[row['case']]} | {row['rps']:,.0f} | {_num(row['to_floor'], 2)} "
            f"| {_num(row['to_sqlite'], 2)} | {row['p50']:.1f} | {row['p99']:.1f} | {row['errors']} "
            f"| {stored} "
            f"| {_num(row['cpu_us_per_request'])} | {_pg_cpu(row['postgres_cpu_us_per_request'])} "
            f"| {_per(per, 'commits', 3)} | {_per(per, 'wal_sync', 3)} | {_per(per, 'wal_bytes', 0)} "
            f"| {' / '.join(f'{x:,.0f}' for x in row['by_round'])} | {_elsewhere(row)} |"
        )
    return lines


def two_gateways_table(result: Mapping[str, Any]) -> list[str]:
    rows = {r["case"]: r for r in result["intake_summary"]}
    two, one = rows.get("postgres-2"), rows.get("postgres")
    if two is None:
        return []
    lines = [
        f"| config | req/s (total) | {TIMES} one gateway | each gateway's req/s | p50 ms | p99 ms (worse of "
        "the two) | errors | every 2xx stored | gateways' CPU µs/req | PostgreSQL CPU µs/req | commits/req "
        "| req/s by round | CPUs busy elsewhere |",
        "|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|---|---|",
    ]
    for row in (one, two):
        if row is None:
            continue
        stored = "-" if row["store_ok"] is None else ("yes" if row["store_ok"] else "**no**")
        each = " + ".join(f"{x:,.0f}" for x in row["each_rps"]) if row["each_rps"] else "-"
        lines.append(
            f"| {INTAKE_LABELS[row['case']]} | {row['rps']:,.0f} "
            f"| {'1.00' if row is one else _num(row['to_one'], 2)} | {each} | {row['p50']:.1f} "
            f"| {row['p99']:.1f} | {row['errors']} | {stored} | {_num(row['cpu_us_per_request'])} "
            f"| {_pg_cpu(row['postgres_cpu_us_per_request'])} | {_per(row['pg_per_request'], 'commits', 3)} "
            f"| {' / '.join(f'{x:,.0f}' for x in row['by_round'])} | {_elsewhere(row)} |"
        )
    return lines


def drain_table(result: Mapping[str, Any]) -> list[str]:
    lines = [
        f"| runs by | runs/s | {TIMES} SQLite | {TIMES} one worker | drain s | workers' CPU s (share of the "
        "drain) | workers' CPU µs/run | PostgreSQL CPU µs/run (backends + WAL writer + rest) | commits/run "
        "| WAL fsyncs/run | WAL bytes/run | split | full records | runs/s by round | CPUs busy elsewhere |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|---|",
    ]
    for row in result["drain_summary"]:
        records = "yes" if row["complete_records"] else "**no** (see the JSON)"
        split = (
            " / ".join(f"{s:.1f} %" for s in row["split_percent"]) if len(row["split_percent"]) > 1 else "-"
        )
        cpu = " + ".join(
            f"{c:.1f} ({100 * c / row['seconds']:.0f} %)" if c is not None and row["seconds"] else "-"
            for c in row["cpu_seconds"]
        )
        per = row["pg_per_run"]
        lines.append(
            f"| {DRAIN_LABELS[row['case']]} | {row['runs_per_s']:,.0f} | {_num(row['to_sqlite'], 2)} "
            f"| {_num(row['to_one'], 2)} | {row['seconds']} | {cpu} | {_num(row['cpu_us_per_run'])} "
            f"| {_pg_cpu(row['postgres_cpu_us_per_run'])} | {_per(per, 'commits')} | {_per(per, 'wal_sync')} "
            f"| {_per(per, 'wal_bytes', 0)} | {split} | {records} "
            f"| {' / '.join(f'{x:,.0f}' for x in row['by_round'])} | {_elsewhere(row)} |"
        )
    return lines


def latency_table(result: Mapping[str, Any]) -> list[str]:
    lines = [
        "| shape | probes | **start** | ack | ack → start | received → claim | claim → start "
        "| CPUs busy elsewhere |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in result["latency"]:
        lines.append(
            f"| {LATENCY_LABELS[s['case']]} | {s['start']['n']} | **{executor._ms(s['start'])}** "
            f"| {executor._ms(s['ack'])} | {workers._ms_signed(s['ack_to_start'])} "
            f"| {executor._ms(s['received_to_claim'])} | {executor._ms(s['claim_to_start'])} "
            f"| {_num(s.get('elsewhere_cpus'), 2)} |"
        )
    return lines


def markdown(result: Mapping[str, Any]) -> str:
    plan, pg, placed = result["plan"], result["postgres"], result["placement"]
    settings = ", ".join(f"{k}={v}" for k, v in pg["settings"].items())
    exits = [e for r in result["intake"] for e in r["exits"]] + [
        e for d in result["drain"] for e in d["exits"]
    ]
    exits += [e for s in result["latency"] for e in s["exits"]]
    logged = sum(x["log_lines"] for part in ("intake", "drain", "latency") for x in result[part])
    lines = [
        describe(result["machine"]),
        f"- PostgreSQL {pg['version']} ({pg['bin']}; psycopg {pg['psycopg']}, libpq {pg['libpq']}), one "
        f"server of the bench's own (initdb in a temp dir, 127.0.0.1), a fresh database per case: {settings}",
        f"- {result['wall_seconds']} s in all; every gateway and worker at --log-level warning. This machine "
        "moves ±20 % run to run: compare within a table. Load average (1 min) before and after: "
        f"{' and '.join(f'{x:.2f}' for x in result['load_average'])}; the tables say how many CPUs the rest "
        "of the machine kept busy during each measurement (all busy time in /proc/stat less this run's "
        "processes' and PostgreSQL's): well above 0 means other work shared the 2 cores.",
        "",
    ]
    if result["intake_summary"]:
        lines += [
            f"### Intake per gateway, wrk c={plan['connections']}",
            "",
            f"{plan['rounds']} round(s) of {plan['intake_seconds']} s after {plan['warmup']} s of warm-up "
            "(other deliveries), the cases in a rotating order, a fresh database each; signed 1 KiB pushes "
            "routed to a no-op task, `gateway serve --executor off`: the runs only queue (intake capacity, "
            f"not end-to-end throughput). Placement: {placed['intake']}: **PostgreSQL shares CPU 1 with "
            "wrk**, while SQLite's work is done inside the gateway on CPU 0. Ratios within a round, medians "
            "over rounds. CPU: utime + stime (/proc) during the measured run, per request answered; "
            "PostgreSQL's is the postmaster and its children (client backends, the WAL writer, the rest: "
            "checkpointer, background writer, autovacuum). Commits (pg_stat_database of the case's "
            "database), WAL fsyncs and bytes (pg_stat_wal) per request sent, warm-up included. Every 2xx "
            "stored: the events in the database, counted after the gateway stopped, cover every 2xx wrk saw.",
            "",
            *intake_table(result),
            "",
        ]
        two = two_gateways_table(result)
        if two:
            lines += [
                "### Two gateways on one PostgreSQL",
                "",
                "Two `serve --executor off` processes on one database, both on CPU 0, each driven by a wrk "
                f"of its own (c={plan['connections'] // 2} each, on CPU 1, deliveries of their own), "
                "measured at once; against one gateway on PostgreSQL at c=50 in the same round. Same "
                "placement as above: the two gateways share the one core a single gateway has.",
                "",
                *two,
                "",
            ]
    if result["drain_summary"]:
        prefilled = result["prefill"] or {}
        lines += [
            "### Drain",
            "",
            f"A backlog of {plan['backlog']:,} queued no-op runs (bench/deliveries.py's task), "
            f"{plan['drain_rounds']} round(s), the cases in a rotating order. PostgreSQL: a copy (`CREATE "
            "DATABASE … TEMPLATE … STRATEGY FILE_COPY`) of a database prefilled through the store interface "
            f"(`PostgresStore.jobs.add`, {plan['chunk']:,} deliveries a transaction, each admitted by the "
            "gateway's own verify and admit; "
            f"then `VACUUM (ANALYZE) events, runs`, attempts left empty and never analyzed, see "
            f"`prefill_postgres`: {prefilled.get('seconds', '-')} s, "
            f"{(prefilled.get('bytes') or 0) / 2**20:,.0f} MiB); SQLite: a copy of bench/prefill.py's. "
            f"Placement: {placed['drain']}; no load generator. runs/s = backlog ÷ (first attempt start → "
            "last attempt end, from the attempt records); ratios within a round. CPU: from every worker "
            "ready (registered) to drained. Full records: every run completed with 1 attempt and its "
            "completed attempt record, each attempt naming a worker of the case.",
            "",
            *drain_table(result),
            "",
        ]
    if result["latency"]:
        lines += [
            "### Event → task start, idle",
            "",
            f"bench/executor.py's probe: one signed 1 KiB push at a time, {plan['gap'] * 1000:.0f} ms apart, "
            "after 20 warm-up ones; the task returns `time.time()` at its start. start = task start - send; "
            "ack = 202 read - send; ack → start = task start - 202 read; received → claim = the attempt's "
            "`started_at` - the event's `received_at`; claim → start = task start - the attempt's "
            f"`started_at`. p50 / p99 in ms. Placement: {placed['latency']}. A separate worker on PostgreSQL "
            "is woken by LISTEN/NOTIFY (the NOTIFY is sent in the transaction that stores the run); on "
            "SQLite by the wake-up socket.",
            "",
            *latency_table(result),
            "",
        ]
    lines += [
        f"Exit codes on SIGTERM: {sorted(set(exits))} ({len(exits)} processes). Log lines at warning or "
        f"above: {logged}.",
        "",
    ]
    return "\n".join(lines)


def save(result: Mapping[str, Any], text: str, out: Path = RESULTS) -> Path:
    """Write postgres-<date>[-quick].json and .md into ``out``; returns the .md path."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"postgres-{result['date'][:10]}" + ("-quick" if result["mode"] == "quick" else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    path = out / f"{stem}.md"
    path.write_text(f"# PostgreSQL store ({result['mode']}), {result['date']}\n\n{text}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.postgres",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 round of 3 s of wrk, a 10k backlog, 200 probes (full: 3 of 10 s, 100k, 2,000)",
    )
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this file")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})")
    args = parser.parse_args(argv)
    try:
        result = run(
            Plan.of(args.quick), args.quick, say=lambda t: print(f"-- {t}", file=sys.stderr, flush=True)
        )
    except (
        load.BenchError,
        postgres.PostgresMissing,
        postgres.PostgresFailed,
        psycopg.Error,
        subprocess.SubprocessError,
        OSError,
    ) as exc:
        print(f"bench.postgres: {exc}", file=sys.stderr)
        return 1
    text = markdown(result)
    path = save(result, text, args.out)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    print(f"written: {path} and .json", file=sys.stderr)
    wrong = [r for r in result["intake"] if r["store"] is not None and not r["store"]["ok"]]
    wrong += [d for d in result["drain"] if not d["complete_records"]]
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

"""Which PostgreSQL driver the store should use (issue 19): psycopg 3 (async, AsyncConnectionPool,
pipeline mode) against asyncpg (its pool, executemany, copy), on the gateway's two hot writes. I/O: a
PostgreSQL server of its own (tests/support/postgres.py) on 127.0.0.1; writes
bench/results/pgdriver-<date>[-quick].md and .json.

Run from the repository: ``python -m bench.pgdriver [--quick]``. In each case every driver has a fresh
database of its own and the drivers take turns in slices (full: 5, quick: 2), so that whatever else the
machine does falls on each alike; medians over rounds (full: 3 rounds; quick: 1). asyncpg twice: with its
pool's default reset at each release, and without it.

1. **Group commit**: 50 producers each submit one delivery at a time (an event row of ~1 KiB JSON text and its
   run row) to one batcher, which writes all that waits in ONE transaction (``INSERT ... ON CONFLICT DO
   NOTHING`` on the event's unique dedupe key, the run inserted from the event's ``RETURNING``) and answers
   each producer after COMMIT. Idioms: a statement per delivery (psycopg ``executemany`` in a pipeline,
   asyncpg ``executemany``), or one statement per batch over arrays (``unnest``). deliveries/s; p50/p99 of
   submit → answer (full: 10 s per driver and case, quick: 2 s).
2. **Claim**: 50,000 queued rows (filled with COPY); claimers take 1 (or 20) rows at a time with ``UPDATE ...
   WHERE id IN (SELECT id ... ORDER BY ... LIMIT n FOR UPDATE SKIP LOCKED) RETURNING *``, then mark them done
   in a second transaction; rows/s with 1 and 4 claimers, until the time is up or no row is left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import psycopg_pool

from bench.executor import RESULTS, percentiles
from bench.pgwrites import (
    DRIVER_LABELS,
    DRIVERS,
    IDIOMS,
    SCHEMA,
    Driver,
    Load,
    claim_check,
    claims,
    commit_check,
    driver,
    fill,
    group_commit,
)
from tests.support import postgres

CLAIMS = ((1, 1), (1, 4), (20, 1), (20, 4))  # (rows per claim, concurrent claimers)
SERVER_CPU, CLIENT_CPU = 1, 0  # with two CPUs or more: PostgreSQL on one, this process on the other

SETTINGS = (
    "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes", "shared_buffers", "max_wal_size",
    "checkpoint_timeout", "wal_level", "max_connections",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Plan:
    rounds: int
    commit_seconds: float  # measured per driver and case, in ``slices`` slices
    warmup: float  # of the same load before each slice's measured time
    claim_seconds: float  # at most, per driver and case; a case ends early when no row is left
    queued: int  # rows in the claim table at the start of each claim case
    slices: int  # the drivers take turns this many times in each case
    producers: int = 50
    body_bytes: int = 1024

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(1, 2.0, 0.3, 2.0, 50_000, slices=2)
        return cls(3, 10.0, 0.5, 10.0, 50_000, slices=5)


# -- rounds ------------------------------------------------------------------------------------------------


def _jiffies(pid: int | str) -> int:
    """utime + stime of a process, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])


class Elsewhere:
    """How many CPUs the rest of the machine kept busy while a slice ran: all busy time (/proc/stat) less this
    process's and the server's (the postmaster and its backends). A shared machine's noise, made visible."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.start()

    def start(self) -> None:
        self.started, self.busy, self.ours = time.monotonic(), self._busy(), self._ours()

    @staticmethod
    def _busy() -> int:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait

    def _ours(self) -> int:
        pids = [self.server_pid, *postgres._children(self.server_pid)] if self.server_pid else []
        return _jiffies("self") + sum(_jiffies(pid) for pid in pids)

    def cpus(self) -> float:
        ticks = (self._busy() - self.busy) - (self._ours() - self.ours)
        seconds = time.monotonic() - self.started
        return round(max(0, ticks) / os.sysconf("SC_CLK_TCK") / seconds, 2) if seconds else 0.0


Body = Callable[["Driver"], Awaitable[dict[str, Any]]]


async def _on_pool(dsn: str, name: str, size: int, body: Body, meter: Elsewhere | None = None) -> dict:
    """``body`` on a pool of ``size`` connections of driver ``name``; with ``meter`` (started once every
    backend of the pool exists), what the rest of the machine used meanwhile, as "elsewhere"."""
    db = driver(name)
    await db.open(dsn, size)
    try:
        if meter is None:
            return await body(db)
        meter.start()
        return {**await body(db), "elsewhere": meter.cpus()}
    finally:
        await db.close()


def interleaved(
    server: postgres.Databases,
    names: Sequence[str],
    size: int,
    slices: int,
    slice_: Callable[[int], Body],
    prepare: Body | None = None,
    check: Body | None = None,
) -> dict[str, dict[str, Any]]:
    """One case for every driver of ``names``, each on a fresh database of its own holding SCHEMA (and what
    ``prepare`` puts there), measured in ``slices`` slices that take turns (A B C, B C A, ...), so that what
    else the machine does falls on every driver alike. ``slice_(k)`` runs slice k on a pool of ``size``
    connections; a driver whose slice reports ``drained`` has no more. Returns each driver's slices and what
    ``prepare`` and ``check`` said."""
    pid = getattr(server, "pid", None)
    with contextlib.ExitStack() as stack:
        dsns = {name: stack.enter_context(postgres.fresh_database(server)) for name in names}
        found: dict[str, dict[str, Any]] = {name: {"slices": []} for name in names}
        for name, dsn in dsns.items():
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(SCHEMA)
            if prepare is not None:
                found[name] |= asyncio.run(_on_pool(dsn, name, 1, prepare))
        for k in range(slices):
            for name in order(k, names):
                parts = found[name]["slices"]
                if not (parts and parts[-1].get("drained")):
                    slice_run = _on_pool(dsns[name], name, size, slice_(k), Elsewhere(pid))
                    parts.append(asyncio.run(slice_run))
        if check is not None:
            for name in names:
                found[name]["stored"] = asyncio.run(_on_pool(dsns[name], name, 1, check))
        return found


def _tally(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One driver's slices added up: the rate over their measured time, percentiles of all their latencies."""
    count, seconds = sum(p["count"] for p in parts), sum(p["seconds"] for p in parts)
    cpu = sum(p["cpu"] for p in parts)
    return {
        "per_s": round(count / seconds, 1) if seconds else 0.0,
        "count": count,
        "seconds": round(seconds, 3),
        "client_cpu_us": round(cpu / count * 1e6, 1) if count else None,
        "latency_ms": percentiles([v for p in parts for v in p["latencies"]]),
        "slices": [round(p["count"] / p["seconds"], 1) if p["seconds"] else 0.0 for p in parts],
        "elsewhere_cpus": round(statistics.fmean(p["elsewhere"] for p in parts), 2) if parts else None,
    }


def order(round_index: int, names: Sequence[str]) -> list[str]:
    """The drivers in the order of this round or slice: rotated each time, so none always goes first."""
    shift = round_index % len(names)
    return [*names[shift:], *names[:shift]]


Found = dict[str, list[dict[str, Any]]]  # "commit" and "claim": one row per case, driver and round


def commit_case(server: postgres.Databases, plan: Plan, idiom: str, r: int) -> list[dict[str, Any]]:
    names = order(r, IDIOMS[idiom])
    seconds = plan.commit_seconds / plan.slices
    load = Load(plan.producers, plan.warmup, plan.body_bytes)

    def slice_(k: int) -> Body:
        return lambda db: group_commit(db, load, idiom, seconds, first=k * 10**9)

    rows = []
    for name, got in interleaved(server, names, 1, plan.slices, slice_, check=commit_check).items():
        parts, acknowledged = got["slices"], sum(p["acknowledged"] for p in got["slices"])
        batches = [b for p in parts for b in p["batches"]]
        rows.append({
            "round": r + 1, "driver": name, "idiom": idiom, **_tally(parts),
            "mean_batch": round(statistics.fmean(batches), 1) if batches else 0,
            "acknowledged": acknowledged, "stored": got["stored"],
            "ok": got["stored"]["events"] == got["stored"]["runs"] == acknowledged,
        })  # fmt: skip
    return rows


def claim_case(server: postgres.Databases, plan: Plan, limit: int, claimers: int, r: int) -> list[dict]:
    names = order(r, DRIVERS)
    seconds = plan.claim_seconds / plan.slices

    def slice_(k: int) -> Body:
        return lambda db: claims(db, limit, claimers, seconds)

    def prepare(db: Driver) -> Awaitable[dict[str, Any]]:
        return fill(db, plan.queued)

    found = interleaved(server, names, claimers, plan.slices, slice_, prepare, claim_check)
    rows = []
    for name, got in found.items():
        ids = [i for p in got["slices"] for i in p["ids"]]
        done, queued = got["stored"]["done"], got["stored"]["queued"]
        rows.append({
            "round": r + 1, "driver": name, "limit": limit, "claimers": claimers, **_tally(got["slices"]),
            "fill_s": got["fill_s"], "stored": got["stored"], "rows": len(ids),
            "ok": len(set(ids)) == len(ids) == done and done + queued == plan.queued,
        })  # fmt: skip
    return rows


def rounds(plan: Plan, server: postgres.Databases, say: Callable[[str], None]) -> Found:
    found: Found = {"commit": [], "claim": []}
    for r in range(plan.rounds):
        for idiom in IDIOMS:
            for row in commit_case(server, plan, idiom, r):
                found["commit"].append(row)
                say(f"round {r + 1} commit {idiom} {row['driver']}: {row['per_s']:,.0f}/s {row['slices']}")
        for limit, claimers in CLAIMS:
            for row in claim_case(server, plan, limit, claimers, r):
                found["claim"].append(row)
                say(f"round {r + 1} claim {limit}x{claimers} {row['driver']}: {row['per_s']:,.0f} rows/s")
    return found


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def _summary(rows: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per case (``keys`` + driver) in first-seen order: medians over its rounds, and its rate as a
    multiple of psycopg's in the same case."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in (*keys, "driver")), []).append(row)
    out = []
    for group in groups.values():
        first, by_round = group[0], sorted(group, key=lambda r: r["round"])
        out.append({
            **{k: first[k] for k in (*keys, "driver")},
            "rounds": len(group),
            "per_s": _median(r["per_s"] for r in group),
            "p50_ms": _median(r["latency_ms"]["p50"] for r in group),
            "p99_ms": _median(r["latency_ms"]["p99"] for r in group),
            "client_cpu_us": _median(r["client_cpu_us"] for r in group),
            **({"mean_batch": _median(r["mean_batch"] for r in group)} if "mean_batch" in first else {}),
            **({"fill_s": _median(r["fill_s"] for r in group)} if "fill_s" in first else {}),
            "by_round": [r["per_s"] for r in by_round],
            "elsewhere_by_round": [r.get("elsewhere_cpus") for r in by_round],
            "ok": all(r["ok"] for r in group),
        })  # fmt: skip
    base = {tuple(r[k] for k in keys): r["per_s"] for r in out if r["driver"] == "psycopg"}
    for r in out:
        psycopg_rate = base.get(tuple(r[k] for k in keys))
        r["x_psycopg"] = round(r["per_s"] / psycopg_rate, 2) if psycopg_rate and r["per_s"] else None
    return out


def summarize(found: Found) -> Found:
    """Medians over rounds per case and driver."""
    return {
        "commit": _summary(found["commit"], ("idiom",)),
        "claim": _summary(found["claim"], ("limit", "claimers")),
    }


# -- the report --------------------------------------------------------------------------------------------

TIMES = "\u00d7"  # the multiplication sign, in the tables


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _elsewhere(row: dict[str, Any]) -> str:
    return ", ".join("-" if v is None else f"{v:.1f}" for v in row.get("elsewhere_by_round", []))


def _ok(row: dict[str, Any]) -> str:
    return "yes" if row["ok"] else "**no**"


def _header(m: dict[str, Any], pg: dict[str, Any], plan: dict[str, Any], result: dict[str, Any]) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in pg["settings"].items())
    load = result["load_average"]
    return (
        f"{m['cpus']} CPUs ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}, {m['pinning']}; "
        f"psycopg {m['psycopg']} (libpq {m['libpq']}, {m['psycopg_impl']}), psycopg_pool "
        f"{m['psycopg_pool']}, asyncpg {m['asyncpg']}, the default asyncio loop. PostgreSQL {pg['version']} "
        f"on 127.0.0.1 (TCP), started by tests/support/postgres.py: {settings}. {plan['rounds']} round(s); "
        "in each case every driver has a fresh database of its own and the drivers take turns in "
        f"{plan['slices']} slices (A B C, B C A, ...), so that other work on the machine falls on each "
        f"alike; medians over rounds; {result['wall_seconds']} s in all (load average {load[0]} before, "
        f"{load[1]} after). This machine moves ±20 % run to run (LIMITS.md): compare within a table. CPUs "
        "busy elsewhere: what the rest of the machine used during a driver's slices (all busy CPU time less "
        "this process's and the server's, ÷ time), by round: a round with other work beside it is slower "
        "for that reason."
    )


def markdown(result: dict[str, Any]) -> str:
    m, pg, plan, summary = result["machine"], result["postgres"], result["plan"], result["summary"]
    lines = [
        f"# PostgreSQL drivers ({result['mode']}), {result['date']}",
        "",
        _header(m, pg, plan, result),
        "",
        "### Group commit",
        "",
        f"{plan['producers']} producers, each submitting one delivery at a time (an event of "
        f"{plan['body_bytes']} B of JSON text + its run) to one batcher on one connection, which writes all "
        "that waits in one transaction (`INSERT ... ON CONFLICT (source, dedupe_key) DO NOTHING`, the run "
        "from the event's `RETURNING`) and answers after COMMIT. per-row: one statement per delivery "
        "(psycopg: `executemany` inside `pipeline()`; asyncpg: `executemany`); arrays: one statement per "
        "batch over `unnest($1::text[], ...)` (psycopg: binary parameters, `%b`; arrays-text: `%s`). "
        f"{plan['commit_seconds']} s measured per driver and case, in {plan['slices']} slices each after "
        f"{plan['warmup']} s of warm-up; latency = submit → answer; client CPU = this process's CPU time "
        "per delivery (producers, batcher and driver).",
        "",
        f"| idiom | driver | deliveries/s | {TIMES} psycopg | p50 ms | p99 ms | mean batch | client CPU µs "
        "| stored = acknowledged | by round | CPUs busy elsewhere |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|---|---|",
    ]
    for r in summary["commit"]:
        lines.append(
            f"| {r['idiom']} | {DRIVER_LABELS[r['driver']]} | {_n(r['per_s'])} | {_n(r['x_psycopg'], 2)} "
            f"| {_n(r['p50_ms'], 2)} | {_n(r['p99_ms'], 2)} | {_n(r['mean_batch'], 1)} "
            f"| {_n(r['client_cpu_us'])} | {_ok(r)} | {', '.join(_n(v) for v in r['by_round'])} "
            f"| {_elsewhere(r)} |"
        )
    lines += [
        "",
        "### Claim",
        "",
        f"{plan['queued']:,} queued rows (COPY: psycopg `cursor.copy`, asyncpg `copy_records_to_table`; then "
        "VACUUM ANALYZE), a partial index on the queued rows. Each claimer loops: `UPDATE jobs SET status = "
        "'running' ... WHERE id IN (SELECT id ... ORDER BY run_at, id LIMIT n FOR UPDATE SKIP LOCKED) "
        "RETURNING *`, then `UPDATE ... SET status = 'done' WHERE id = ANY(...)` in a second transaction, "
        f"each on a connection from a pool of one per claimer, for {plan['claim_seconds']} s per driver and "
        f"case ({plan['slices']} slices on the same table) or until no row is left. rows/s = rows done ÷ "
        "time; claim ms = the claim statement's round trip, pool included.",
        "",
        f"| rows per claim | claimers | driver | rows/s | {TIMES} psycopg | claim p50 ms | claim p99 ms "
        "| client CPU µs per row | COPY s | no row twice, counts agree | by round | CPUs busy elsewhere |",
        "|--:|--:|---|--:|--:|--:|--:|--:|--:|---|---|---|",
    ]
    for r in summary["claim"]:
        lines.append(
            f"| {r['limit']} | {r['claimers']} | {DRIVER_LABELS[r['driver']]} | {_n(r['per_s'])} "
            f"| {_n(r['x_psycopg'], 2)} | {_n(r['p50_ms'], 2)} | {_n(r['p99_ms'], 2)} "
            f"| {_n(r['client_cpu_us'])} | {_n(r['fill_s'], 2)} | {_ok(r)} "
            f"| {', '.join(_n(v) for v in r['by_round'])} | {_elsewhere(r)} |"
        )
    return "\n".join([*lines, ""])


# -- running it --------------------------------------------------------------------------------------------


def server_facts(server: postgres.Databases) -> dict[str, Any]:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        shown = {name: conn.execute(f"SHOW {name}").fetchone() for name in ("server_version", *SETTINGS)}
    values = {name: str(row[0]) if row else "?" for name, row in shown.items()}
    return {"version": values.pop("server_version"), "settings": values}


def machine(pinning: str) -> dict[str, Any]:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")
    return {
        "cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "python": platform.python_version(),
        "psycopg": psycopg.__version__, "psycopg_impl": psycopg.pq.__impl__, "libpq": psycopg.pq.version(),
        "psycopg_pool": psycopg_pool.__version__, "asyncpg": asyncpg.__version__, "pinning": pinning,
    }  # fmt: skip


def run(plan: Plan, server: postgres.Databases, mode: str, pinning: str, say: Callable[[str], None]) -> dict:
    started, load_before = time.monotonic(), os.getloadavg()[0]
    found = rounds(plan, server, say)
    return {
        "mode": mode,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(pinning),
        "postgres": server_facts(server),
        "plan": asdict(plan),
        "summary": summarize(found),
        "cases": found,
        "wall_seconds": round(time.monotonic() - started, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # 1 min: before, after
    }


def pinned_server() -> tuple[postgres.PostgresServer, str]:
    """Our own server on CPU 1 and this process on CPU 0, when there are two CPUs to share."""
    if len(os.sched_getaffinity(0)) < 2:
        return postgres.PostgresServer().start(), "nothing pinned (one CPU)"
    everything = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {SERVER_CPU})  # the postmaster and every backend it forks inherit it
    try:
        server = postgres.PostgresServer().start()
    finally:
        os.sched_setaffinity(0, everything)
    os.sched_setaffinity(0, {CLIENT_CPU})
    return server, f"PostgreSQL on CPU {SERVER_CPU}, the drivers on CPU {CLIENT_CPU}"


def save(result: dict[str, Any], text: str, out: Path = RESULTS) -> Path:
    """Write pgdriver-<date>[-quick].json and .md into ``out``; returns the .md path."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"pgdriver-{result['date'][:10]}" + ("-quick" if result["mode"] == "quick" else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(text)
    return out / f"{stem}.md"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pgdriver", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s per case (full: 3 of 10 s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})")
    args = parser.parse_args(argv)
    server, pinning = pinned_server()
    try:
        result = run(
            Plan.of(args.quick),
            server,
            "quick" if args.quick else "full",
            pinning,
            lambda text: print(f"-- {text}", file=sys.stderr, flush=True),
        )
    finally:
        server.stop()
    text = markdown(result)
    path = save(result, text, args.out)
    print(text)
    print(f"written: {path} and .json", file=sys.stderr)
    return 0 if all(r["ok"] for rows in result["summary"].values() for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

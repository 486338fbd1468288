"""bench/postgres.py: its pure parts (PostgreSQL's process kinds and CPU, the busy time elsewhere, the
statistics per request, the summaries and their ratios, the report) with hand-made figures, and one tiny
real run of the drains and the latency cases on a PostgreSQL server of its own, checked for its counts,
never for its speed. The tiny run needs PostgreSQL's binaries: without them it fails naming `apt-get install
postgresql`; it is never skipped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import executor
from bench import postgres as bench
from bench.postgres import Plan


def test_process_kind_reads_postgres_process_titles() -> None:
    assert bench.process_kind("postgres: walwriter ") == "walwriter"
    assert bench.process_kind("postgres: checkpointer ") == "checkpointer"
    assert bench.process_kind("postgres: background writer ") == "bgwriter"
    assert bench.process_kind("postgres: autovacuum worker gateway_x") == "autovacuum"
    assert bench.process_kind("postgres: logical replication launcher ") == "other"
    assert bench.process_kind("postgres: postgres gateway_x 127.0.0.1(40112) idle") == "backend"
    assert bench.process_kind("/usr/lib/postgresql/15/bin/postgres\x00-D\x00/tmp/data\x00") == "postmaster"
    assert bench.process_kind("") == "other"


def test_cpu_used_by_kind_counts_new_processes_from_zero() -> None:
    before = {10: ("postmaster", 5), 11: ("walwriter", 100), 12: ("backend", 1_000)}
    after = {10: ("postmaster", 5), 11: ("walwriter", 150), 12: ("backend", 1_300), 13: ("backend", 200)}
    assert bench.cpu_used(before, after, ticks=100) == {
        "backend": 5.0,
        "postmaster": 0.0,
        "walwriter": 0.5,
        "total": 5.5,
    }


def test_busy_seconds_leaves_out_idle_iowait_and_steal() -> None:
    line = "cpu  100 20 30 5000 40 5 5 70 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    assert bench.busy_seconds(line, ticks=100) == 1.6  # user + nice + system + irq + softirq
    assert bench.busy_seconds() > 0


def test_stats_used_per_request() -> None:
    before = {"commits": 10, "wal_bytes": 1_000, "wal_sync": 5}
    after = {"commits": 110, "wal_bytes": 501_000, "wal_sync": 55}
    assert bench.stats_used(before, after, 1_000) == {"commits": 0.1, "wal_bytes": 500.0, "wal_sync": 0.05}
    assert bench.stats_used(before, after, 0) == {"commits": None, "wal_bytes": None, "wal_sync": None}


def measurement(rps: float, requests: int, p99: float) -> Any:
    from bench.load import Measurement

    return Measurement(
        connections=25,
        seconds=10.0,
        requests=requests,
        rps=rps,
        p50=10.0,
        p90=20.0,
        p99=p99,
        p999=p99 + 5,
        mean=12.0,
        max=p99 + 10,
        non_2xx=1,
        socket_errors=0,
        errors={"connect": 0, "read": 0, "write": 0, "status": 1, "timeout": 0},
        wraps=0,
        deliveries=5_000,
    )


def test_combined_adds_two_gateways_up_and_keeps_the_worse_percentiles() -> None:
    one = measurement(300.0, 3_000, 40.0)
    both = bench.combined([one, measurement(200.0, 2_000, 60.0)])
    assert (both["rps"], both["requests"], both["connections"]) == (500.0, 5_000, 50)
    assert (both["p99"], both["non_2xx"]) == (60.0, 2)
    assert [each["rps"] for each in both["each"]] == [300.0, 200.0]
    assert bench.combined([one])["rps"] == 300.0


def intake(case: str, round_: int, rps: float) -> dict[str, Any]:
    stores, pg = case != "floor", case.startswith("postgres")
    return {
        "case": case,
        "round": round_,
        "rps": rps,
        "p50": 10.0,
        "p99": 40.0,
        "p999": 60.0,
        "non_2xx": 0,
        "socket_errors": 0,
        "wraps": 0,
        "exits": [0, 0] if case == "postgres-2" else [0],
        "log_lines": 0,
        "cpu_us_per_request": 700.0,
        "postgres_cpu_us_per_request": {"backend": 300.0, "walwriter": 20.0, "total": 330.0} if pg else None,
        "pg_per_request": {"commits": 0.1, "wal_sync": 0.05, "wal_bytes": 4_500.0} if pg else None,
        "store": {"stored": 1000, "acknowledged": 990, "extra": 10, "ok": True} if stores else None,
        "each": [{"rps": rps * 0.6}, {"rps": rps * 0.4}] if case == "postgres-2" else None,
        "elsewhere_cpus": 0.1,
    }


def test_intake_ratios_are_taken_within_a_round() -> None:
    runs = [intake("floor", 1, 2000), intake("sqlite", 1, 1000), intake("postgres", 1, 800)]
    runs += [intake("postgres-2", 1, 1200), intake("floor", 2, 1000), intake("sqlite", 2, 1000)]
    runs += [intake("postgres", 2, 900), intake("postgres-2", 2, 900)]
    rows = {r["case"]: r for r in bench.summarize_intake(runs)}
    assert rows["sqlite"]["to_floor"] == 0.75  # median of 0.5 and 1.0
    assert rows["postgres"]["to_sqlite"] == 0.85  # median of 0.8 and 0.9
    assert rows["postgres-2"]["to_one"] == 1.25  # median of 1.5 and 1.0
    assert rows["postgres-2"]["each_rps"] == [630.0, 420.0]
    assert rows["postgres"]["postgres_cpu_us_per_request"]["total"] == 330.0
    assert rows["floor"]["to_floor"] is None and rows["sqlite"]["to_sqlite"] is None
    assert rows["postgres"]["elsewhere_by_round"] == [0.1, 0.1]


def drain(case: str, round_: int, rps: float) -> dict[str, Any]:
    two, pg = case == "postgres-2", case.startswith("postgres")
    return {
        "case": case,
        "round": round_,
        "runs_per_s": rps,
        "seconds": 10.0,
        "cpu_seconds": [4.0, 3.0] if two else [8.0],
        "cpu_us_per_run": 70.0 if two else 80.0,
        "postgres_cpu_us_per_run": {"backend": 150.0, "walwriter": 5.0, "total": 160.0} if pg else None,
        "pg_per_run": {"commits": 0.04, "wal_sync": 0.02, "wal_bytes": 6_400.0} if pg else None,
        "split_percent": [55.0, 45.0] if two else [100.0],
        "complete_records": True,
        "exits": [0, 0] if two else [0],
        "log_lines": 0,
        "elsewhere_cpus": 0.0,
    }


def test_drain_ratios_to_sqlite_and_to_one_worker() -> None:
    drains = [drain("postgres-1", 1, 1000), drain("postgres-2", 1, 1500), drain("sqlite-1", 1, 4000)]
    drains += [drain("postgres-1", 2, 2000), drain("postgres-2", 2, 2000), drain("sqlite-1", 2, 4000)]
    rows = {r["case"]: r for r in bench.summarize_drains(drains)}
    assert rows["postgres-1"]["to_sqlite"] == 0.38  # median of 0.25 and 0.5
    assert rows["postgres-2"]["to_one"] == 1.25  # median of 1.5 and 1.0
    assert rows["postgres-2"]["split_percent"] == [55.0, 45.0]
    assert rows["postgres-2"]["cpu_seconds"] == [4.0, 3.0]
    assert rows["sqlite-1"]["postgres_cpu_us_per_run"] is None


def stats(p50: float) -> dict[str, Any]:
    return {"n": 5, "p50": p50, "p99": 2 * p50, "max": 3 * p50}


def test_latency_figures_from_run_rows() -> None:
    probes = [executor.Probe(100.000, 100.004, "run_a"), executor.Probe(101.000, 101.006, "run_b")]
    rows = {
        "run_a": {"output": '{"started": 100.010}', "received_at": 100.001, "claimed_at": 100.008},
        "run_b": {"output": '{"started": 101.012}', "received_at": 101.001, "claimed_at": 101.009},
    }
    found = bench.latency_figures(probes, rows)
    assert found["start"]["n"] == 2
    assert found["start"]["max"] == pytest.approx(12.0, abs=1e-3)
    assert found["ack"]["p50"] == pytest.approx(4.0, abs=1e-3)
    assert found["received_to_claim"]["p50"] == pytest.approx(7.0, abs=1e-3)
    assert found["claim_to_start"]["max"] == pytest.approx(3.0, abs=1e-3)


def test_markdown_has_every_table_and_the_settings() -> None:
    runs = [intake(case, 1, 1000) for case in bench.INTAKE_CASES]
    drains = [drain(case, 1, 1000) for case in bench.DRAIN_CASES]
    names = ("start", "ack", "ack_to_start", "received_to_claim", "claim_to_start")
    latency = [
        {"case": c, **dict.fromkeys(names, stats(1.0)), "exits": [0], "log_lines": 0, "elsewhere_cpus": 0.0}
        for c in bench.LATENCY_CASES
    ]
    plan = Plan.of(quick=True)
    result = {
        "plan": {name: getattr(plan, name) for name in plan.__slots__},
        "machine": {
            "cpu": "AMD EPYC",
            "cores": 2,
            "ram_gib": 23.5,
            "python": "3.11",
            "sqlite": "3.40",
            "kernel": "Linux",
            "pinning": "server on CPU 0, wrk on CPU 1 (taskset)",
            "wrk": "wrk 4.1.0",
        },
        "postgres": {
            "version": "15.18",
            "bin": "/usr/lib/postgresql/15/bin",
            "psycopg": "3.3",
            "libpq": 180006,
            "settings": {"fsync": "on", "synchronous_commit": "on", "shared_buffers": "128MB"},
        },
        "placement": {
            "intake": "PostgreSQL on CPU 1",
            "drain": "not pinned",
            "latency": "PostgreSQL on CPU 1",
        },
        "wall_seconds": 1.0,
        "load_average": [0.1, 0.2],
        "intake": runs,
        "intake_summary": bench.summarize_intake(runs),
        "prefill": {"name": "prefill_10000", "runs": 10_000, "seconds": 3.0, "bytes": 50 * 2**20},
        "drain": drains,
        "drain_summary": bench.summarize_drains(drains),
        "latency": latency,
    }
    text = bench.markdown(result)
    for heading in (
        "### Intake per gateway, wrk c=50",
        "### Two gateways on one PostgreSQL",
        "### Drain",
        "### Event → task start, idle",
    ):
        assert heading in text
    assert "PostgreSQL 15.18" in text and "fsync=on, synchronous_commit=on, shared_buffers=128MB" in text
    assert "**PostgreSQL shares CPU 1 with wrk**" in text
    assert "330 (300 + 20 + 10)" in text  # PostgreSQL's CPU per request: backends + WAL writer + the rest
    assert "| 1.00 | 600 + 400 |" in text  # two gateways: the ratio to one, each gateway's req/s
    assert "55.0 % / 45.0 %" in text
    assert "50 MiB" in text
    assert "Exit codes on SIGTERM: [0] (12 processes)" in text


def test_plans() -> None:
    quick, full = Plan.of(quick=True), Plan.of(quick=False)
    assert (quick.rounds, quick.backlog) == (1, 10_000)
    assert (full.rounds, full.intake_seconds, full.backlog, full.drain_rounds) == (3, 10, 100_000, 3)


@pytest.mark.timeout(240)  # about 15 s here: initdb, 3 drains, 3 latency cases
def test_a_tiny_run_counts_every_run_and_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drains and the latency cases once, tiny (300 queued runs, 5 probes): every run complete with one
    attempt naming a worker of its case, every process exiting 0. Intake (wrk) is measured by the full run
    only, as bench/workers.py's test does; PostgreSQL's binaries are needed (`apt-get install postgresql`)."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    plan = Plan(
        rounds=1, intake_seconds=0, warmup=0, backlog=300, drain_rounds=1, idle_probes=5, gap=0.0, chunk=100
    )
    result = bench.run(plan, quick=True)
    assert result["postgres"]["settings"]["fsync"] == "on"
    assert result["intake"] == []
    assert result["prefill"]["runs"] == 300
    assert [d["case"] for d in result["drain"]] == list(bench.DRAIN_CASES)
    for d in result["drain"]:
        assert d["complete_records"], d["wrong"]
        assert d["checks"]["runs"] == d["checks"]["attempts"] == 300
        assert sum(w["attempts"] for w in d["by_worker"]) == 300
        assert all(w["kind"] == "worker" for w in d["by_worker"])
        assert d["exits"] == [0] * len(d["exits"])
    assert len(next(d for d in result["drain"] if d["case"] == "postgres-2")["exits"]) == 2
    for s in result["latency"]:
        assert s["start"]["n"] == 5
        assert s["exits"] == ([0, 0] if "split" in s["case"] else [0])
    assert "### Drain" in bench.markdown(result)

"""bench/workers.py: its pure parts (CPU from /proc, the record checks, the summaries and the report), and a
tiny drain by two `gateway worker` processes and a tiny latency run of intake plus a worker, checked for
their records, never for their speed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench import workers
from bench.workers import Plan


def test_cpu_seconds_reads_utime_and_stime_after_the_command_name() -> None:
    fields = ["S", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "250", "50", "7", "7"]
    line = "4121 (a (strange) name) " + " ".join(fields) + "\n"
    assert workers.cpu_seconds(line, 100) == 3.0


def test_process_cpu_of_this_process_and_of_none() -> None:
    assert (workers.process_cpu(os.getpid()) or 0) > 0
    assert workers.process_cpu(2**22 + 1) is None


def test_split_and_record_problems() -> None:
    by_worker = [
        {"worker_id": "wrk_a", "kind": "worker", "pid": 10, "attempts": 600},
        {"worker_id": "wrk_b", "kind": "worker", "pid": 11, "attempts": 400},
    ]
    assert workers.split_of(by_worker, 1000) == [60.0, 40.0]
    fine = {"runs": 1000, "attempts": 1000, "not_completed": 0, "attempts_not_1": 0}
    assert workers.record_problems(fine, by_worker, 1000, [10, 11]) == {}
    wrong = workers.record_problems({**fine, "not_completed": 3}, by_worker, 1000, [10, 12])
    assert wrong == {"not_completed": 3, "attempts_of_other_workers": {"wrk_b": 400}}


def drain(case: str, round_: int, rps: float) -> dict[str, Any]:
    two = case == "worker-2"
    return {
        "case": case,
        "round": round_,
        "runs_per_s": rps,
        "seconds": 10.0,
        "cpu_seconds": [4.0, 3.0] if two else [8.0],
        "cpu_us_per_run": 70.0 if two else 80.0,
        "split_percent": [55.0, 45.0] if two else [100.0],
        "start_skew_s": 0.2 if two else 0.0,
        "complete_records": True,
        "exits": [0, 0] if two else [0],
        "log_lines": 0,
    }


def intake(case: str, round_: int, rps: float) -> dict[str, Any]:
    stores = case != "floor"
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
        "exit": 0,
        "store": {"stored": 1000, "acknowledged": 990, "extra": 10, "ok": True} if stores else None,
        "runs": ({"completed": 900, "queued": 100} if case == "serve" else {"queued": 1000})
        if stores
        else None,
    }


def test_summaries_take_ratios_within_a_round_and_medians_over_rounds() -> None:
    drains = [drain("serve", 1, 1000), drain("worker-1", 1, 1500), drain("serve", 2, 2000)]
    drains += [drain("worker-1", 2, 2000), drain("worker-2", 1, 1200), drain("worker-2", 2, 2400)]
    rows = {r["case"]: r for r in workers.summarize_drains(drains)}
    assert rows["worker-1"]["ratio"] == 1.25  # median of 1.5 and 1.0
    assert rows["worker-2"]["runs_per_s"] == 1800
    assert rows["worker-2"]["split_percent"] == [55.0, 45.0]
    runs = [intake("floor", 1, 2000), intake("executor-off", 1, 1000), intake("serve", 1, 800)]
    rows = {r["case"]: r for r in workers.summarize_intake(runs)}
    assert (rows["executor-off"]["ratio"], rows["executor-off"]["to_serve"]) == (0.5, 1.25)
    assert rows["serve"]["executed_share"] == 0.9
    assert rows["executor-off"]["executed_share"] == 0.0


def test_markdown_has_every_table() -> None:
    drains = [drain(case, 1, 1000) for case in workers.DRAIN_CASES]
    runs = [intake(case, 1, 1000) for case in workers.INTAKE_CASES]
    stats = {"n": 5, "p50": 1.0, "p99": 2.0, "max": 3.0}
    names = ("start", "ack", "ack_to_start", "received_to_claim", "claim_to_start")
    latency = [
        {"case": c, **dict.fromkeys(names, stats), "exits": [0], "log_lines": 0} for c in ("serve", "split")
    ]
    result = {
        "plan": vars_of(Plan.of(quick=True)),
        "machine": {"cpus": 2, "python": "3.11", "sqlite": "3.40", "pinning": "-"},
        "wall_seconds": 1.0,
        "drain": drains,
        "drain_summary": workers.summarize_drains(drains),
        "latency": latency,
        "intake": runs,
        "intake_summary": workers.summarize_intake(runs),
    }
    text = workers.markdown(result)
    for heading in ("### Drain", "### Event → task start, idle", "### Intake throughput, wrk c=50"):
        assert heading in text
    assert "55.0 % / 45.0 %" in text
    assert "4.0 (40 %) + 3.0 (30 %)" in text
    assert "200 ms after the first's" in text


def vars_of(plan: Plan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in plan.__slots__}


def test_rotated_and_plans() -> None:
    assert workers.rotated(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert Plan.of(quick=True).backlog == 20_000
    assert Plan.of(quick=False).backlog == 100_000


def test_a_tiny_drain_and_latency_run_keep_full_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    plan = Plan(
        backlog=300, drain_rounds=1, idle_probes=5, gap=0.0, intake_rounds=0, intake_seconds=0, warmup=0
    )
    ws = workers.workspace(tmp_path / "work")
    drained = workers.drain_once("worker-2", plan, ws, "tiny")
    assert drained["complete_records"], drained["wrong"]
    assert drained["checks"]["runs"] == 300
    assert sum(w["attempts"] for w in drained["by_worker"]) == 300
    assert all(w["kind"] == "worker" for w in drained["by_worker"])
    assert drained["exits"] == [0, 0]
    latency = workers.latency_once("split", plan, ws)
    assert latency["start"]["n"] == 5
    assert latency["exits"] == [0, 0]

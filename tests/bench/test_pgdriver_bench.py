"""bench/pgdriver.py and bench/pgwrites.py: summaries and report from given figures (no I/O), and one tiny
real run against the suite's PostgreSQL, judged by the rows it stored, never by its speed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import pgdriver, pgwrites
from tests.support import postgres


def commit_row(driver: str, idiom: str, round_: int, per_s: float, ok: bool = True) -> dict[str, Any]:
    return {
        "round": round_, "driver": driver, "idiom": idiom, "per_s": per_s, "deliveries": int(per_s),
        "latency_ms": {"n": 1, "p50": per_s / 1000, "p99": per_s / 100, "max": 1.0}, "mean_batch": 50.0,
        "client_cpu_us": 20.0, "acknowledged": 1, "stored": {"events": 1, "runs": 1}, "ok": ok,
    }  # fmt: skip


def claim_row(driver: str, limit: int, claimers: int, round_: int, per_s: float) -> dict[str, Any]:
    return {
        "round": round_, "driver": driver, "limit": limit, "claimers": claimers, "rows": 10, "seconds": 1.0,
        "per_s": per_s, "latency_ms": {"n": 1, "p50": 1.0, "p99": 2.0, "max": 2.0}, "client_cpu_us": 30.0,
        "fill_s": 0.1, "stored": {"done": 10, "queued": 0}, "ok": True,
    }  # fmt: skip


def test_placeholders_become_psycopg_ones_in_order() -> None:
    assert pgwrites.psycopg_sql("VALUES ($1, $2, $3)") == "VALUES (%s, %s, %s)"
    assert pgwrites.psycopg_sql("ANY($1)", "%b") == "ANY(%b)"
    assert "$" not in pgwrites.psycopg_sql(pgwrites.ARRAYS) + pgwrites.psycopg_sql(pgwrites.CLAIM)


def test_a_delivery_is_about_a_kibibyte_of_valid_json_unique_by_number() -> None:
    first, second = pgwrites.delivery(1, 1024), pgwrites.delivery(2, 1024)
    assert abs(len(first[4]) - 1024) <= 16
    assert json.loads(first[4])["delivery"] == 1
    assert first[0] != second[0] and first[3] != second[3]


def test_the_driver_order_rotates_so_none_always_goes_first() -> None:
    orders = [pgdriver.order(r, pgwrites.DRIVERS) for r in range(3)]
    assert [o[0] for o in orders] == list(pgwrites.DRIVERS)
    assert all(sorted(o) == sorted(pgwrites.DRIVERS) for o in orders)
    assert pgdriver.order(1, ("psycopg",)) == ["psycopg"]


def test_slices_add_up_to_one_rate_over_their_time_and_latencies_of_them_all() -> None:
    parts = [
        {"count": 100, "seconds": 1.0, "cpu": 0.01, "latencies": [1.0] * 100, "elsewhere": 0.0},
        {"count": 300, "seconds": 1.0, "cpu": 0.03, "latencies": [3.0] * 300, "elsewhere": 1.0},
    ]
    tally = pgdriver._tally(parts)
    assert (tally["per_s"], tally["count"], tally["slices"]) == (200.0, 400, [100.0, 300.0])
    assert tally["client_cpu_us"] == 100.0
    assert tally["latency_ms"]["p50"] == 3.0 and tally["latency_ms"]["n"] == 400
    assert tally["elsewhere_cpus"] == 0.5


def test_the_summary_takes_medians_over_rounds_and_compares_with_psycopg() -> None:
    found = {
        "commit": [
            commit_row("psycopg", "per-row", 1, 1000),
            commit_row("psycopg", "per-row", 2, 3000),
            commit_row("psycopg", "per-row", 3, 2000),
            commit_row("asyncpg", "per-row", 1, 3000, ok=False),
            commit_row("asyncpg", "per-row", 2, 3000),
            commit_row("asyncpg", "per-row", 3, 3000),
        ],
        "claim": [claim_row("asyncpg", 20, 4, 1, 500), claim_row("psycopg", 20, 4, 1, 1000)],
    }
    summary = pgdriver.summarize(found)
    psycopg_row, asyncpg_row = summary["commit"]
    assert psycopg_row["per_s"] == 2000 and psycopg_row["by_round"] == [1000, 3000, 2000]
    assert psycopg_row["x_psycopg"] == 1
    assert (asyncpg_row["per_s"], asyncpg_row["x_psycopg"], asyncpg_row["ok"]) == (3000, 1.5, False)
    assert psycopg_row["p50_ms"] == 2.0 and psycopg_row["mean_batch"] == 50.0
    assert [(r["driver"], r["x_psycopg"]) for r in summary["claim"]] == [("asyncpg", 0.5), ("psycopg", 1.0)]


def test_the_report_names_every_driver_and_says_a_failed_check() -> None:
    found = {
        "commit": [
            commit_row("psycopg", "arrays", 1, 100),
            commit_row("asyncpg", "arrays", 1, 200, ok=False),
        ],
        "claim": [claim_row("asyncpg-noreset", 1, 1, 1, 50)],
    }
    result = {
        "mode": "quick", "date": "2026-12-07T00:00:00", "wall_seconds": 1.0, "load_average": [0.1, 0.2],
        "plan": {"rounds": 1, "commit_seconds": 2, "warmup": 0.5, "claim_seconds": 2, "queued": 50_000,
                 "slices": 2, "producers": 50, "body_bytes": 1024},
        "postgres": {"version": "15.18", "settings": {"fsync": "on", "synchronous_commit": "on"}},
        "machine": {"cpus": 2, "cpu": "x", "kernel": "6", "python": "3.11", "pinning": "none", "psycopg": "3",
                    "psycopg_impl": "binary", "libpq": 1, "psycopg_pool": "3", "asyncpg": "0.32"},
        "summary": pgdriver.summarize(found),
    }  # fmt: skip
    text = pgdriver.markdown(result)
    assert "# PostgreSQL drivers (quick), 2026-12-07" in text
    assert "fsync=on, synchronous_commit=on" in text
    assert "| arrays | psycopg 3 | 100 | 1.00 |" in text
    assert "| arrays | asyncpg | 200 | 2.00 |" in text and "**no**" in text
    assert "| 1 | 1 | asyncpg, pool reset off | 50 |" in text


@pytest.mark.timeout(180)  # 19 cases of 0.1 s, a fresh database each: 5-8 s here
def test_a_tiny_real_run_stores_every_acknowledged_delivery_and_claims_each_row_once(
    postgres_server: postgres.PostgresServer, tmp_path: Path
) -> None:
    plan = pgdriver.Plan(
        1, commit_seconds=0.1, warmup=0.05, claim_seconds=0.1, queued=300, slices=2, producers=5
    )
    result = pgdriver.run(plan, postgres_server, "quick", "nothing pinned", lambda text: None)

    commits, claims = result["cases"]["commit"], result["cases"]["claim"]
    assert sorted({(r["idiom"], r["driver"]) for r in commits}) == sorted(
        (idiom, name) for idiom, names in pgwrites.IDIOMS.items() for name in names
    )
    for row in commits:
        assert len(row["slices"]) == plan.slices  # the drivers took turns
        assert row["acknowledged"] > 0
        assert row["stored"] == {"events": row["acknowledged"], "runs": row["acknowledged"]}, row
    assert len(claims) == len(pgdriver.CLAIMS) * len(pgwrites.DRIVERS)
    for row in claims:
        assert row["rows"] > 0 and row["ok"], row
        assert row["stored"]["done"] == row["rows"]
        assert row["stored"]["done"] + row["stored"]["queued"] == plan.queued
    assert result["postgres"]["settings"]["fsync"] == "on"

    path = pgdriver.save(result, pgdriver.markdown(result), tmp_path)
    assert path.name == f"pgdriver-{result['date'][:10]}-quick.md"
    assert json.loads(path.with_suffix(".json").read_text())["plan"]["queued"] == 300

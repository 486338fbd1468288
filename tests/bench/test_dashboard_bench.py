"""bench/dashboard.py: its pure parts (the statistics, the ratios), the history it writes over a prefill and
its cache, and one tiny quick run through ``python -m bench dashboard``, checked for the shape of its
results, never for its speed."""

from __future__ import annotations

import datetime
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from bench import __main__ as bench_main
from bench import dashboard
from bench.dashboard import Plan

TINY = Plan(small=200, large=600, requests=2, warmup=1, deep=2)


def test_ms_stats_take_the_median_and_the_nearest_rank_p95_in_ms() -> None:
    stats = dashboard.ms_stats([n / 1000 for n in range(1, 21)])
    assert stats == {"n": 20, "median": 10.5, "p95": 19.0, "max": 20.0}


def test_ratios_are_of_medians_and_multiples_of_the_same_sizes_floor() -> None:
    def row(name: str, small: float, large: float) -> dict[str, Any]:
        by_size = {"small": {"median": small}, "large": {"median": large}}
        return {"name": name, "by_size": by_size}

    rows = dashboard.with_ratios([row("floor", 1.0, 2.0), row("events", 5.0, 10.0), row("empty", 0.0, 1.0)])
    assert [(r["ratio"], r["floor_x"]) for r in rows] == [
        (2.0, {"small": 1.0, "large": 1.0}),
        (2.0, {"small": 5.0, "large": 5.0}),
        (None, {"small": 0.0, "large": 0.5}),
    ]


def test_the_history_finishes_runs_but_the_newest_and_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    made = dashboard.database(1_000)
    assert made.seconds > 0
    again = dashboard.database(1_000)
    assert (again.path, again.seconds) == (made.path, 0.0)
    with closing(sqlite3.connect(f"file:{made.path}?mode=ro", uri=True)) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
        attempts = conn.execute("SELECT count(*), count(finished_at) FROM attempts").fetchone()
        rejections = conn.execute("SELECT count(*) FROM rejections").fetchone()[0]
    assert statuses == {"completed": 990, "failed": 9, "queued": 1}  # rowid 1000 is the queued one
    assert attempts == (999, 999)
    assert rejections == 10


def test_a_tiny_quick_run_writes_every_page_at_both_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(dashboard.Plan, "of", classmethod(lambda cls, quick: TINY))
    assert bench_main.main(["dashboard", "--quick", "--out", str(tmp_path / "results")]) == 0
    stem = tmp_path / "results" / f"dashboard-{datetime.date.today().isoformat()}-quick"
    result = json.loads(stem.with_suffix(".json").read_text())
    assert (result["benchmark"], result["mode"], result["plan"]["large"]) == ("dashboard", "quick", 600)
    assert [p["name"] for p in result["pages"]] == [t.name for t in dashboard.TARGETS]
    for page in result["pages"]:
        assert set(page["by_size"]) == {"small", "large"}
        assert all(s["n"] == TINY.requests and s["median"] > 0 for s in page["by_size"].values())
        assert page["ratio"] is not None and set(page["floor_x"]) == {"small", "large"}
    assert {d["events"] for d in result["databases"].values()} == {200, 600}
    statements = result["statements"]["large"]
    assert {s["statement"] for s in statements} >= {"deliveries_per_minute", "run_counts", "task_durations"}
    assert all(s["plan"] for s in statements)
    text = stem.with_suffix(".md").read_text()
    assert text.startswith("# Dashboard (quick)")
    for label in [t.label for t in dashboard.TARGETS] + ["### The statements behind the window pages"]:
        assert label in text

"""The ingest benchmark's pure parts: the store check, the summary (ratios within a round, medians across
rounds), the tables, the checks a reader sees, the plot's points and the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import ingest, plot
from bench.__main__ import sections
from bench.ingest import BY_NAME, Plan, Workspace


def raw(setup: str, round_: int, rps: float, p99: float, c: int = 50, **extra: Any) -> dict[str, Any]:
    """One measurement as ingest.measure returns it."""
    stores = BY_NAME[setup].stores
    store = ingest.store_check(int(rps), int(rps), c) if stores else None
    return {
        "setup": setup,
        "server": BY_NAME[setup].server,
        "round": round_,
        "run": f"r{round_}-c{c}-{setup}",
        "connections": c,
        "rps": rps,
        "p50": p99 / 2,
        "p99": p99,
        "p999": p99 * 1.5,
        "non_2xx": 0,
        "socket_errors": 0,
        "wraps": 0,
        "exit": 0,
        "store": store,
        **extra,
    }


def result_of(runs: list[dict[str, Any]], connections: tuple[int, ...] = (50,)) -> dict[str, Any]:
    setups = [s for s in ingest.SETUPS if any(r["setup"] == s.name for r in runs)]
    return {
        "mode": "quick",
        "started": "2026-11-24T10:00:00",
        "plan": {"rounds": 2, "duration": 2, "warmup": 1},
        "pinning": "server on CPU 0, wrk on CPU 1 (taskset)",
        "python": "3.11.7",
        "setups": [{"name": s.name, "kind": s.kind, "server": s.server, "label": s.label} for s in setups],
        "summary": {str(c): ingest.summarize(runs, setups, c) for c in connections},
        "runs": runs,
    }


def test_every_acknowledged_delivery_stored_passes_with_in_flight_extras_up_to_the_slack() -> None:
    assert ingest.store_check(1000, 1000, 100)["ok"]
    assert ingest.store_check(1000, 1100, 100) == {
        "acknowledged": 1000,
        "stored": 1100,
        "extra": 100,
        "ok": True,
    }


def test_fewer_rows_than_2xx_or_more_than_in_flight_fails_the_store_check() -> None:
    assert ingest.store_check(1000, 999, 100)["ok"] is False  # a 202 the server did not store
    assert ingest.store_check(1000, 1101, 100)["ok"] is False  # rows nobody sent: the count is wrong


def test_ratio_and_p99_difference_are_taken_within_a_round_against_the_same_servers_floor() -> None:
    runs = [
        raw("floor", 1, 2000, 40),
        raw("gateway", 1, 1800, 45),
        raw("floor", 2, 1000, 80),  # a slow round: the ratio within it is still 0.9
        raw("gateway", 2, 900, 86),
        raw("floor-uvicorn", 1, 6000, 20),
        raw("gateway-uvicorn", 1, 3000, 30),
    ]
    rows = {row["setup"]: row for row in ingest.summarize(runs, ingest.SETUPS, 50)}
    assert rows["gateway"]["ratio"] == 0.9
    assert rows["gateway"]["rps"] == 1350  # the median of the rounds' 1800 and 900
    assert rows["gateway"]["p99_over_floor"] == 5.5  # median of +5 and +6
    assert rows["gateway-uvicorn"]["ratio"] == 0.5  # against the uvicorn floor, not Hypercorn's
    assert rows["gateway"]["by_round"] == [1800, 900]
    assert rows["floor"]["store_ok"] is None and rows["gateway"]["store_ok"] is True


def test_a_setup_without_its_floor_has_no_ratio() -> None:
    rows = ingest.summarize([raw("locked", 1, 500, 100)], ingest.SETUPS, 50)
    assert (rows[0]["ratio"], rows[0]["p99_over_floor"]) == (None, None)


def test_the_markdown_shows_ratios_and_says_that_every_row_was_stored() -> None:
    runs = [raw("floor", 1, 2000, 40), raw("gateway", 1, 1800, 45), raw("locked", 1, 600, 120)]
    text = ingest.markdown(result_of(runs))
    assert "| gateway (hypercorn) | 1800 (0.90\u00d7) |" in text
    assert (
        "| gateway: verified, routed, fsynced, acknowledged | hypercorn "
        "| 1800 | 0.90 | 22.5 | 45.0 | 67.5 | +5.0 | 0 | 1800 |" in text
    )
    assert "2 of 2 runs of the storing setups stored every acknowledged delivery" in text
    assert "repeated deliveries (wraps) in storing runs: none" in text
    assert "servers that did not exit 0 on SIGTERM: none." in text


def test_the_markdown_names_a_store_mismatch_wraps_and_a_bad_exit() -> None:
    bad = raw("gateway", 1, 1800, 45, wraps=3, exit=1)
    bad["store"] = ingest.store_check(5400, 5300, 100)
    text = ingest.markdown(result_of([raw("floor", 1, 2000, 40), bad]))
    assert "0 of 1 runs of the storing setups stored every acknowledged delivery." in text
    assert "  - MISMATCH r1-c50-gateway: 5300 stored, 5400 answered 2xx" in text
    assert (
        "repeated deliveries (wraps) in storing runs: r1-c50-gateway (3): those runs saw duplicates" in text
    )
    assert "servers that did not exit 0 on SIGTERM: r1-c50-gateway exited 1." in text


def test_the_plot_draws_one_line_per_setup_ordered_by_concurrency() -> None:
    runs = [raw(s, 1, rps, 10, c) for c, rps in ((200, 3), (1, 1), (50, 2)) for s in ("floor", "gateway")]
    points = plot.series(result_of(runs, (200, 1, 50)))
    assert points["gateway"] == [(1, 1.0, 10.0), (50, 2.0, 10.0), (200, 3.0, 10.0)]
    assert set(points) == {"floor", "gateway"}


def test_quick_mode_measures_fewer_cells_and_full_mode_all_four_concurrencies() -> None:
    assert Plan.of(quick=True) == Plan(1, 2, 1, (10, 50), quick=True)
    assert Plan.of(quick=False).connections == (1, 10, 50, 200)
    assert (Plan.of(quick=False).rounds, Plan.of(quick=False).duration) == (3, 10)
    assert Plan.of(quick=False, connections=[50]).connections == (50,)


def test_every_setup_runs_on_its_own_server_and_storing_ones_on_their_database(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, tmp_path / "m.txt", tmp_path / "w.txt", tmp_path / "routes.yaml")
    db = tmp_path / "events.db"
    gateway = ingest.argv_for(BY_NAME["gateway-uvicorn"], 9000, db, ws)
    assert gateway[-2:] == ["--server", "uvicorn"] and str(db) in gateway and "--log-level" in gateway
    assert ingest.argv_for(BY_NAME["floor"], 9000, db, ws)[-2:] == ["--server", "hypercorn"]
    locked = ingest.argv_for(BY_NAME["locked"], 9000, db, ws)
    assert locked[1:4] == ["-m", "bench.baselines", "locked"] and locked[-2:] == ["--db", str(db)]
    intake = ingest.argv_for(BY_NAME["intake-uvicorn"], 9000, db, ws)
    assert intake[-4:] == ["--server", "uvicorn", "--executor", "off"] and str(db) in intake


def test_only_picks_sections_and_rejects_unknown_ones() -> None:
    assert sections(None) == ["ingest", "executor", "growth"]
    assert sections("ingest, growth") == ["ingest", "growth"]
    with pytest.raises(SystemExit, match=r"^--only: unknown section\(s\) ingset \(choose from ingest, "):
        sections("ingset")

"""bench/compare_flows.py: the settings, the downstream's luck, the table arithmetic, the gateway's generated
config, and two fast end-to-end runs of the Zapier-style flows (no gateway, a tiny time scale)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bench import compare_flows as cf
from gateway.routes import load as config_mod


def test_quick_mode_divides_every_duration_by_ten() -> None:
    s = cf.settings_for(quick=True)
    assert (s.events, s.scale) == (20, 10.0)
    assert s.work(s.sender_timeout) == 1.0
    assert s.work(s.step_limit) == 3.0
    assert s.wait(3600.0) == 2.0  # an hour of retry waiting: 3600 / (10 * 180)


def test_explicit_events_and_seed_override_the_mode() -> None:
    assert cf.settings_for(quick=False, events=7, seed=3) == replace(cf.Settings(), events=7, seed=3)


def test_the_gateway_retry_policy_is_given_in_compressed_seconds() -> None:
    retry = cf.settings_for(quick=False).task_retry()
    assert retry == {
        "max_attempts": 6,
        "factor": 2.0,
        "min_timeout": round(300 / 180, 4),
        "max_timeout": 120.0,
        "jitter": False,
    }


def test_the_downstreams_luck_is_the_same_for_the_same_call() -> None:
    s = cf.Settings()
    assert cf.outcome(s, "evt-1", 0) == cf.outcome(s, "evt-1", 0)
    draws = [cf.outcome(s, "evt-1", n) for n in range(20)]
    assert len({d.seconds for d in draws}) == 20
    assert draws != [cf.outcome(replace(s, seed=8), "evt-1", n) for n in range(20)]


def test_the_downstream_takes_one_to_forty_seconds_and_fails_about_thirty_percent() -> None:
    s = cf.Settings()
    draws = [cf.outcome(s, f"evt-{n}", 0) for n in range(5000)]
    assert all(1.0 <= d.seconds <= 40.0 for d in draws)
    failed = sum(1 for d in draws if not d.ok) / len(draws)
    assert 0.27 < failed < 0.33


def _log() -> tuple[list[cf.Ack], list[cf.Effect]]:
    acks = [
        cf.Ack("zapier", "a", 200),
        cf.Ack("zapier", "b", None),  # the sender gave up
        cf.Ack("zapier", "c", 500),
        cf.Ack("gateway", "c", 202),  # another flow's ack
    ]
    effects = [
        cf.Effect("zapier", "a", 5.0),
        cf.Effect("zapier", "a", 2.0),
        cf.Effect("zapier", "a", 9.0),
        cf.Effect("zapier", "b", 4.0),
        cf.Effect("gateway", "c", 1.0),  # another flow's side effect
    ]
    return acks, effects


def test_a_row_counts_duplicates_lost_events_and_the_last_first_side_effect() -> None:
    acks, effects = _log()
    row = cf.summarize("zapier", ["a", "b", "c"], acks, effects, 7, True)
    assert row == cf.Row(
        flow="zapier",
        events=3,
        acked=1,
        completed=2,
        lost=1,
        pending=0,
        duplicates=2,
        calls=7,
        completion=4.0,
    )


def test_an_unsettled_flow_reports_its_missing_events_as_pending_not_lost() -> None:
    acks, effects = _log()
    row = cf.summarize("zapier", ["a", "b", "c"], acks, effects, 7, False)
    assert (row.lost, row.pending) == (0, 1)


def test_a_flow_with_no_side_effect_has_no_completion_time() -> None:
    row = cf.summarize("gateway", ["x"], [], [], 0, True)
    assert (row.completed, row.lost, row.duplicates, row.completion) == (0, 1, 0, None)


def test_the_table_shows_each_flow_and_unsettled_events() -> None:
    rows = [
        cf.Row("zapier", 3, 3, 2, 1, 0, 2, 7, 4.0),
        cf.Row("gateway", 3, 3, 2, 0, 1, 0, 5, None),
    ]
    text = cf.render(cf.Settings(events=3), rows, wall=12.3)
    assert "| Zapier-style: 200 at once, step in the platform | 3/3 | 2 | 1 | 2 | 7 | 4.0 s |" in text
    assert "| this gateway: ack after fsync, then a task | 3/3 | 2 | 0 (+1 unsettled) | 0 | 5 | - |" in text
    assert "sender (GitHub's policy): 10 s delivery timeout, no automatic retries" in text


def test_the_generated_routes_and_task_load_in_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = cf.settings_for(quick=True)
    (tmp_path / "routes.yaml").write_text(cf.routes_yaml())
    (tmp_path / f"{cf.TASKS_MODULE}.py").write_text(cf.task_source(s, "http://127.0.0.1:9/work/gateway"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader puts tmp_path on sys.path
    monkeypatch.delitem(sys.modules, cf.TASKS_MODULE, raising=False)
    try:
        loaded = config_mod.load(tmp_path / "routes.yaml", {})
    finally:
        sys.modules.pop(cf.TASKS_MODULE, None)
    task = loaded.tasks["call-downstream"]
    assert task.timeout == 6.0
    assert (task.retry.max_attempts, task.retry.min_timeout, task.retry.jitter) == (
        6,
        round(300 / 1800, 4),
        False,
    )
    assert [r.task for r in loaded.routes] == ["call-downstream"]


def _luck(s: cf.Settings, event: str) -> list[bool]:
    """Whether each of an event's six possible calls succeeds downstream."""
    return [cf.outcome(s, event, n).ok for n in range(1 + len(s.autoreplay))]


async def test_fast_calls_stop_each_zap_run_at_its_first_success(tmp_path: Path) -> None:
    # Calls of 1-5 s against the 30 s step limit (all durations / 20): nothing times out. With seed 1 the four
    # events need 1, 2, 3 and 2 calls.
    s = cf.Settings(events=4, seed=1, scale=20.0, compress=1800.0, downstream=(1.0, 5.0))
    rows, _ = await cf.run(s, tmp_path, with_gateway=False, say=lambda _: None)
    luck = [_luck(s, event) for event in cf.delivery_ids(s)]
    assert [calls.index(True) + 1 for calls in luck] == [1, 2, 3, 2]
    for row in rows:  # both Zapier-style flows make the same calls; only their acks differ
        assert (row.completed, row.lost, row.pending, row.duplicates, row.calls) == (4, 0, 0, 0, 8)


async def test_calls_past_the_step_limit_are_replayed_and_their_side_effects_duplicated(
    tmp_path: Path,
) -> None:
    # Calls of 100-110 s against the 30 s limit: every step is "errored", so all six attempts are made, and
    # every call that succeeds downstream (after its caller gave up) is a side effect.
    s = cf.Settings(events=3, scale=200.0, compress=1800.0, downstream=(100.0, 110.0))
    rows, text = await cf.run(s, tmp_path, with_gateway=False, say=lambda _: None)
    luck = [_luck(s, event) for event in cf.delivery_ids(s)]
    for row in rows:
        assert row.calls == 3 * 6
        assert row.completed == sum(any(calls) for calls in luck)
        assert row.duplicates == sum(max(0, sum(calls) - 1) for calls in luck)
    assert {row.flow: row.acked for row in rows}["in-request"] == 0  # it answers after six steps, not in 10 s
    assert "| Zapier-style step inside the request | 0/3 |" in text

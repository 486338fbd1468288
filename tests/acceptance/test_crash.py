"""SIGKILL under load (bench/crash.py): no acknowledged delivery is lost or stored twice, every run ends, and
every re-execution is one the gateway recorded as a crash. Also the invariant checker on its own."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.crash import Plan, Sent, Stored, StoredRun, check, run, summary

pytestmark = pytest.mark.acceptance


@pytest.mark.timeout(120)
def test_three_sigkills_under_load_lose_no_acknowledged_delivery(tmp_path: Path) -> None:
    outcome = run(Plan(cycles=3, senders=8, seed=7, keep=tmp_path))
    f = outcome.figures
    report = summary(outcome)
    print(report)  # the figures, for docs/reliability.md (pytest -s shows them)
    assert outcome.violations == [], report
    assert f["kills"] == 3 and f["exit_code_on_sigterm"] == 0, report
    assert f["sent"] >= 100 and f["acked"] == f["stored"] == f["sent"], report
    assert (f["lost"], f["stored_twice"], f["unexplained_reexecutions"]) == (0, 0, 0), report
    assert f["runs"] == f["runs_final"] == f["sent"], report
    # The kills landed under load: some senders had to retry, and some runs were caught executing.
    assert f["retried"] > 0 and f["runs_with_crash"] > 0, report


@pytest.mark.timeout(150)
def test_sigkills_of_intake_and_of_workers_lose_nothing_and_rerun_only_recorded_crashes(
    tmp_path: Path,
) -> None:
    """The worker topology: `serve --executor off` plus two `gateway worker`s, each kill at random."""
    outcome = run(Plan(cycles=4, senders=8, seed=4, keep=tmp_path, workers=2))
    f = outcome.figures
    report = summary(outcome)
    print(report, f["kills_of"])
    assert outcome.violations == [], report
    assert f["kills"] == 4 and f["exit_code_on_sigterm"] == 0, report
    assert f["sent"] >= 100 and f["acked"] == f["stored"] == f["sent"], report
    assert (f["lost"], f["stored_twice"], f["unexplained_reexecutions"]) == (0, 0, 0), report
    assert f["runs"] == f["runs_final"] == f["sent"], report
    assert f["kills_of"] == {"intake": 2, "worker": 2}, f["kills_of"]  # seed 4: intake, w1, intake, w2


@pytest.mark.timeout(150)
def test_sigkills_on_postgresql_lose_nothing_and_rerun_only_recorded_crashes(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """The same on PostgreSQL: intake and two workers on one database, each kill at random."""
    outcome = run(Plan(cycles=4, senders=8, seed=4, keep=tmp_path, workers=2, postgres=postgres_dsn))
    f = outcome.figures
    report = summary(outcome)
    print(report, f["kills_of"])
    assert outcome.violations == [], report
    assert f["store"] == "postgresql" and f["kills"] == 4 and f["exit_code_on_sigterm"] == 0, report
    assert f["sent"] >= 100 and f["acked"] == f["stored"] == f["sent"], report
    assert (f["lost"], f["stored_twice"], f["unexplained_reexecutions"]) == (0, 0, 0), report
    assert f["runs"] == f["runs_final"] == f["sent"], report


# -- the checker, on figures made by hand ------------------------------------------------------------------


def sent(n: int, **changes: Any) -> Sent:
    """Delivery d<n>, acknowledged at the first try with event evt_<n>."""
    return replace(Sent(f"d{n}", True, f"evt_{n}"), **changes)


def stored(
    n: int, *, executions: dict[str, int] | None = None, runs: tuple[StoredRun, ...] | None = None
) -> Stored:
    """n deliveries d0…d(n-1), each stored once as evt_i with one completed run run_i executed once."""
    made = tuple(StoredRun(f"run_{i}", f"evt_{i}", "completed", 1, 0) for i in range(n))
    return Stored(
        events={f"d{i}": (f"evt_{i}",) for i in range(n)},
        runs=made if runs is None else runs,
        executions={f"run_{i}": 1 for i in range(n)} if executions is None else executions,
    )


def test_a_run_re_executed_after_a_recorded_crash_breaks_no_invariant() -> None:
    deliveries = [sent(0), sent(1, attempts=3, retried=True, duplicate=True)]
    runs = (StoredRun("run_0", "evt_0", "completed", 1, 0), StoredRun("run_1", "evt_1", "completed", 1, 1))
    outcome = check(deliveries, stored(2, runs=runs, executions={"run_0": 1, "run_1": 2}), planned=1, kills=1)
    assert outcome.violations == []
    f = outcome.figures
    assert (f["sent"], f["acked"], f["stored"], f["lost"], f["stored_twice"]) == (2, 2, 2, 0, 0)
    assert (f["requests"], f["retried"], f["retries_answered_duplicate"]) == (4, 1, 1)
    assert (f["runs"], f["runs_final"], f["executions"]) == (2, 2, 3)
    assert f["runs_executed_more_than_once"] == f["runs_with_crash"] == 1
    assert f["unexplained_reexecutions"] == 0


def test_an_acknowledged_delivery_missing_from_the_database_is_reported_lost() -> None:
    outcome = check([sent(0), sent(1)], stored(1))
    assert outcome.figures["lost"] == 1
    assert outcome.violations == ["lost: 1 (e.g. d1)"]


def test_a_delivery_stored_as_two_events_is_reported_stored_twice() -> None:
    twice = Stored(
        events={"d0": ("evt_0", "evt_9")},
        runs=(StoredRun("run_0", "evt_0", "completed", 1, 0), StoredRun("run_9", "evt_9", "completed", 1, 0)),
        executions={"run_0": 1, "run_9": 1},
    )
    outcome = check([sent(0)], twice)
    assert outcome.figures["stored_twice"] == 1
    assert outcome.violations == ["stored twice: 1 (e.g. d0: evt_0, evt_9)"]


def test_a_second_execution_without_a_recorded_crash_is_unexplained() -> None:
    outcome = check([sent(0)], stored(1, executions={"run_0": 2}))
    assert outcome.figures["unexplained_reexecutions"] == 1
    assert outcome.violations == [
        "unexplained re-execution: 1 (e.g. run_0: 2 executions, 1 attempt(s), 0 crash(es))"
    ]


def test_unfinished_runs_refusals_and_a_bad_shutdown_are_each_named() -> None:
    runs = (StoredRun("run_0", "evt_0", "executing", 0, 1),)
    refused = sent(1, acked=False, event_id=None, failure="401 b'bad_signature'")
    outcome = check([sent(0), refused], stored(1, runs=runs), planned=5, kills=2, exit_code=-9)
    assert outcome.violations == [
        "unacked: 1 (e.g. d1: 401 b'bad_signature')",
        "run not final: 1 (e.g. run_0: executing)",
        "kills: only 2 of 5 within --max-seconds",
        "shutdown: the gateway exited with -9 on SIGTERM",
    ]


def test_a_run_that_sent_nothing_fails() -> None:
    assert check([], stored(0)).violations == ["sent: not one delivery was sent"]


def test_only_the_first_three_examples_are_shown() -> None:
    outcome = check([sent(i) for i in range(5)], stored(0))
    assert outcome.violations == ["lost: 5 (e.g. d0, d1, d2, …)"]


def test_a_run_that_never_executed_or_an_execution_of_no_run_is_reported() -> None:
    outcome = check([sent(0), sent(1)], stored(2, executions={"run_1": 1, "run_7": 1}))
    assert outcome.violations == [
        "completed but never executed: 1 (e.g. run_0)",
        "execution of an unknown run: 1 (e.g. run_7)",
    ]

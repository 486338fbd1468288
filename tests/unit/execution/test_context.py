"""The task Context and its stored log."""

from __future__ import annotations

import threading

from gateway.execution.context import MAX_LINE_CHARS, RunLog
from tests.support.clock import Clock


def test_log_lines_keep_level_time_and_formatting() -> None:
    log = RunLog(Clock(100.0, tick=1))
    log("deploying %s", "o/r")
    log.warning("slow")
    log.error("failed: %d", 3)
    log.debug("detail")
    assert log.lines() == (
        {"ts": 101.0, "level": "info", "message": "deploying o/r"},
        {"ts": 102.0, "level": "warning", "message": "slow"},
        {"ts": 103.0, "level": "error", "message": "failed: 3"},
        {"ts": 104.0, "level": "debug", "message": "detail"},
    )


def test_the_log_is_bounded_and_says_what_it_dropped() -> None:
    log = RunLog(Clock(100.0, tick=1), max_lines=3)
    for i in range(10):
        log.info("line %d", i)
    lines = log.lines()
    assert [line["message"] for line in lines] == [
        "line 0",
        "line 1",
        "line 2",
        "7 more log lines were dropped (limit 3)",
    ]


def test_a_huge_line_is_cut() -> None:
    log = RunLog(Clock(100.0, tick=1))
    log.info("x" * (MAX_LINE_CHARS + 10))
    assert log.lines()[0]["message"].endswith("… (10 more characters)")


def test_threads_can_log_at_once() -> None:
    log = RunLog(Clock(100.0, tick=1), max_lines=10_000)
    workers = [threading.Thread(target=lambda: [log.info("t") for _ in range(500)]) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(log.lines()) == 4000

"""Retry arithmetic: a table over attempts, factors, caps and jitter, with `now` and `rand` pinned."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

import pytest

from gateway.errors import Problem, RetryAfter
from gateway.execution.retry import RetryPolicy, backoff, next_attempt_at, parse_retry, policy_from

DEFAULT = RetryPolicy()
NO_JITTER = RetryPolicy(jitter=False)


@pytest.mark.parametrize(
    ("policy", "failed_attempt", "rand", "wait"),
    [
        (NO_JITTER, 1, 0.9, 1.0),  # the first retry waits min_timeout
        (NO_JITTER, 2, 0.9, 2.0),  # then factor 2 each time
        (NO_JITTER, 3, 0.0, 4.0),
        (NO_JITTER, 7, 0.0, 60.0),  # 64 s capped at max_timeout
        (DEFAULT, 1, 0.0, 1.0),  # jitter with rand 0: no spread
        (DEFAULT, 1, 0.5, 1.5),  # jitter only lengthens: r = 1 + rand
        (DEFAULT, 3, 0.999, 4 * 1.999),
        (DEFAULT, 6, 0.99, 60.0),  # 32 s * 1.99 capped at max_timeout
        (RetryPolicy(factor=1.8, min_timeout=0.5, jitter=False), 2, 0.0, 0.9),  # Trigger.dev's docs example
        (RetryPolicy(factor=1.8, min_timeout=0.5, jitter=False), 3, 0.0, 1.62),
        (RetryPolicy(factor=1, min_timeout=3, jitter=False), 5, 0.0, 3.0),  # constant backoff
        (RetryPolicy(min_timeout=0, jitter=False), 4, 0.0, 0.0),  # immediate retries
        (RetryPolicy(factor=10, max_timeout=5, jitter=False), 2000, 0.0, 5.0),  # overflow still capped
    ],
)
def test_backoff_table(policy: RetryPolicy, failed_attempt: int, rand: float, wait: float) -> None:
    assert backoff(policy, failed_attempt, rand) == pytest.approx(wait)


@pytest.mark.parametrize(
    ("max_attempts", "attempts_used", "expected"),
    [
        (3, 1, 1001.0),  # first attempt failed: retry after 1 s
        (3, 2, 1002.0),
        (3, 3, None),  # three attempts in all, counting the first: no more
        (1, 1, None),  # max_attempts 1 = no retries
    ],
)
def test_next_attempt_respects_max_attempts(
    max_attempts: int, attempts_used: int, expected: float | None
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, jitter=False)
    assert next_attempt_at(policy, attempts_used=attempts_used, now=1000.0, rand=0.0) == expected


def test_retry_after_replaces_the_backoff_but_not_the_budget() -> None:
    assert next_attempt_at(DEFAULT, attempts_used=1, now=1000.0, rand=0.5, retry_at=1030.0) == 1030.0
    assert next_attempt_at(DEFAULT, attempts_used=1, now=1000.0, rand=0.5, retry_at=990.0) == 1000.0
    assert next_attempt_at(DEFAULT, attempts_used=3, now=1000.0, rand=0.5, retry_at=1030.0) is None


def test_retry_after_signal_resolves_seconds_and_datetimes() -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC).timestamp()
    assert RetryAfter(30).when(now) == now + 30
    at = datetime(2030, 1, 1, tzinfo=UTC)
    assert RetryAfter(at=at).when(now) == at.timestamp()
    assert RetryAfter(at=datetime(2000, 1, 1, tzinfo=UTC)).when(now) == now  # never in the past


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "RetryAfter takes seconds or at=datetime, exactly one of them"),
        (
            (5,),
            {"at": datetime(2030, 1, 1, tzinfo=UTC)},
            "RetryAfter takes seconds or at=datetime, exactly one of them",
        ),
        ((), {"at": datetime(2030, 1, 1)}, "RetryAfter(at=...) needs a timezone-aware datetime"),
        ((-1,), {}, "RetryAfter seconds must be >= 0, got -1"),
    ],
)
def test_retry_after_rejects_bad_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError) as info:
        RetryAfter(*args, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_policy_from_run_options_fills_defaults() -> None:
    assert policy_from({"retry": {"max_attempts": 5}}) == RetryPolicy(max_attempts=5)
    assert policy_from({}) == DEFAULT


def test_parse_retry_reports_each_bad_value() -> None:
    problems: list[Problem] = []
    policy = parse_retry({"factor": 0.5, "jitter": "yes", "min_timeout": -1}, "retry", problems)
    assert [str(p) for p in problems] == [
        "retry.factor: expected a number >= 1, got 0.5",
        "retry.jitter: expected true or false, got 'yes'",
        "retry.min_timeout: expected a number >= 0, got -1",
    ]
    assert policy == DEFAULT
    problems.clear()
    assert parse_retry("3", "routes[0].retry", problems) == DEFAULT
    assert [str(p) for p in problems] == [
        "routes[0].retry: expected a mapping with keys max_attempts, factor, min_timeout, max_timeout, jitter"
    ]


def test_as_dict_names_every_field_of_the_policy_with_its_value() -> None:
    policy = RetryPolicy(max_attempts=5, factor=3.0, min_timeout=0.5, max_timeout=9.0, jitter=False)
    assert policy.as_dict() == {
        "max_attempts": 5,
        "factor": 3.0,
        "min_timeout": 0.5,
        "max_timeout": 9.0,
        "jitter": False,
    }
    assert tuple(policy.as_dict()) == tuple(f.name for f in fields(RetryPolicy))

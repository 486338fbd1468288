"""``rejections:`` and ``dedupe_window:`` of a source in routes.yaml: the bytes of refused requests it keeps,
and how long a dedupe key holds. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import Problem
from gateway.model import RejectionKeep
from gateway.routes.keeping import DEFAULT_REJECTIONS, parse_dedupe_window, parse_rejections


def parsed(raw: dict[str, Any]) -> tuple[RejectionKeep, list[str]]:
    problems: list[Problem] = []
    return parse_rejections(raw, "sources.stripe", problems), [str(p) for p in problems]


@pytest.mark.parametrize(
    ("raw", "keep"),
    [
        ({}, 32 * 1024 * 1024),
        ({"rejections": {"keep": "64MiB"}}, 64 * 1024 * 1024),
        ({"rejections": {"keep": 1000}}, 1000),
        ({"rejections": {"keep": 0}}, 0),
        ({"rejections": {"keep": "0"}}, 0),
    ],
)
def test_keep_takes_a_size_or_0_and_defaults_to_32_mib(raw: dict[str, Any], keep: int) -> None:
    assert parsed(raw) == (RejectionKeep(keep), [])


def test_a_quarter_of_keep_may_turn_over_an_hour() -> None:
    assert RejectionKeep(1000).turnover == 250 and DEFAULT_REJECTIONS.turnover == 8 * 1024 * 1024


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("64MiB", "sources.stripe.rejections: expected a mapping like {keep: 32MiB}, got '64MiB'"),
        ({}, "sources.stripe.rejections.keep: missing: how many bytes of rejected requests to keep (32MiB)"),
        (
            {"keep": "lots"},
            "sources.stripe.rejections.keep: expected a size like 1048576, '512KiB' or '10MiB', got 'lots'",
        ),
        (
            {"keep": True},
            "sources.stripe.rejections.keep: expected a size like 1048576, '512KiB' or '10MiB', got True",
        ),
        (
            {"keep": "1MiB", "kep": 1},
            "sources.stripe.rejections.kep: unknown key 'kep' (did you mean 'keep'?)",
        ),
    ],
)
def test_a_bad_value_is_reported_with_its_path(value: object, problem: str) -> None:
    keep, problems = parsed({"rejections": value})
    assert problems == [problem]
    assert keep == (RejectionKeep(1024 * 1024) if value == {"keep": "1MiB", "kep": 1} else DEFAULT_REJECTIONS)


FORMS = "expected a duration like 7d, 12h or 90m (units s, m, h, d, w), or forever (as long as kept)"


def window(value: object, *, has_key: bool = True) -> tuple[float | None, list[str]]:
    problems: list[Problem] = []
    raw = {} if value is ... else {"dedupe_window": value}
    return parse_dedupe_window(raw, "sources.github", problems, has_key=has_key), [str(p) for p in problems]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(..., None), (None, None), ("forever", None), ("7d", 7 * 86400.0), ("90m", 5400.0), ("1.5h", 5400.0)],
)
def test_a_dedupe_window_is_a_duration_or_forever(value: object, seconds: float | None) -> None:
    assert window(value) == (seconds, [])


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("30s", "dedupe_window must be at least 1m, got '30s'"),
        ("7", "a duration needs a unit (s, m, h, d or w): write 7d, not '7'"),
        (7, "a duration needs a unit (s, m, h, d or w): write 7d, not 7"),
        (
            "7x",
            f"{FORMS}, got '7x'",
        ),
        (
            "soon",
            f"{FORMS}, got 'soon'",
        ),
    ],
)
def test_a_bad_dedupe_window_is_reported_with_its_path(value: object, problem: str) -> None:
    assert window(value) == (None, [f"sources.github.dedupe_window: {problem}"])


def test_a_dedupe_window_without_a_dedupe_key_is_refused() -> None:
    assert window("7d", has_key=False) == (
        None,
        ["sources.github.dedupe_window: this source has no dedupe key (dedupe:); set one, or remove it"],
    )

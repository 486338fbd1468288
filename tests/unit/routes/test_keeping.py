"""``rejections:`` of a source in routes.yaml: the bytes of refused requests it keeps. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import Problem
from gateway.model import RejectionKeep
from gateway.routes.keeping import DEFAULT_REJECTIONS, parse_rejections


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

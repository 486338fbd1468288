"""durations: the one grammar of 30m / 1.5h / 7d that --since, retention: and token lifetimes share."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.durations import format_duration, seconds, since, split

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", 30.0), ("15m", 900.0), ("1.5h", 5400.0), ("7d", 604800.0), ("2w", 1209600.0), (" 2 h ", 7200.0)],
)
def test_a_number_and_a_unit_are_seconds(text: str, expected: float) -> None:
    assert seconds(text) == expected


@pytest.mark.parametrize(
    "text", ["", "30", "-5m", "5M", "5 days", "m5", "1e3m", "nan", "1" + "0" * 400 + "d"]
)
def test_anything_else_is_not_a_duration(text: str) -> None:
    assert seconds(text) is None


def test_split_leaves_the_unit_to_the_caller_and_refuses_non_numbers() -> None:
    assert split("30x") == (30.0, "x")
    assert split(1.5) == (1.5, "")
    assert split(True) == (None, "")
    assert split(float("inf")) == (None, "")
    assert split({"days": 3}) == (None, "")


def test_since_reads_a_duration_ago_or_an_iso_time() -> None:
    assert since("30m", NOW) == NOW - 1800
    assert since("2026-11-24T10:00:00Z", NOW) == datetime(2026, 11, 24, 10, tzinfo=UTC).timestamp()
    assert since("2026-11-24T10:00:00", NOW) == datetime(2026, 11, 24, 10, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "-5m", "30"])
def test_since_names_what_it_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration like 30m, 24h, 7d or an ISO time"):
        since(text, NOW)


@pytest.mark.parametrize(
    ("value", "text"),
    [(2592000, "30d"), (1209600, "14d"), (43200, "12h"), (5400, "90m"), (45, "45s"), (0.5, "0.5s")],
)
def test_a_duration_is_written_in_its_largest_whole_unit(value: float, text: str) -> None:
    assert format_duration(value) == text

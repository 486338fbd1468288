"""retention: parsing durations into a Retention, the cutoff per source at a given now (records/prune.py), and
the dry-run description."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError, Problem
from gateway.records.prune import Cutoffs, cutoffs, describe, kept
from gateway.routes import load as config_mod
from gateway.routes.retention import Retention, parse_retention

NOW = 1_700_000_000.0
HOUR, DAY = 3600.0, 86400.0
FORMS = "expected a duration like 30d, 12h or 1.5d (units s, m, h, d, w), or forever (never prune)"


def parsed(value: object) -> tuple[float | None, list[str]]:
    problems: list[Problem] = []
    seconds = parse_retention(value, "sources.github.retention", problems)
    return seconds, [str(p) for p in problems]


def config(text: str) -> config_mod.Config:
    # No `tasks:` and `verify: none` sources: parse() imports and reads nothing, so this stays a unit test.
    return config_mod.parse(text, file=Path("routes.yaml"), environ={})


EXAMPLE = """
retention: 30d
sources:
  github:
    verify: none
    retention: 7d
  stripe:
    verify: none
    retention: forever
  acme:
    verify: none
"""


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90d", 90 * DAY),
        ("12h", 12 * HOUR),
        ("1.5d", 36 * HOUR),
        ("2w", 14 * DAY),
        ("60m", HOUR),
        ("3600s", HOUR),
        ("1h", HOUR),
        ("1.1h", 3960.0),
        (" 30d ", 30 * DAY),
    ],
)
def test_durations_are_read_as_seconds(value: str, seconds: float) -> None:
    assert parsed(value) == (seconds, [])


@pytest.mark.parametrize("value", ["forever", None])
def test_forever_and_null_mean_never_prune(value: object) -> None:
    assert parsed(value) == (None, [])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5m", "retention must be at least 1h, got '5m'"),
        ("59m", "retention must be at least 1h, got '59m'"),
        ("0d", "retention must be at least 1h, got '0d'"),
        ("-3d", "retention must be at least 1h, got '-3d'"),
        (-5, "retention must be at least 1h, got -5"),
        (30, "a duration needs a unit (s, m, h, d or w): write 30d, not 30"),
        (1.5, "a duration needs a unit (s, m, h, d or w): write 1.5d, not 1.5"),
        ("30", "a duration needs a unit (s, m, h, d or w): write 30d, not '30'"),
        ("30x", "unknown unit 'x' in '30x' (use s, m, h, d or w, e.g. 30d)"),
        ("30 days", "unknown unit 'days' in '30 days' (use s, m, h, d or w, e.g. 30d)"),
        ("1M", "unknown unit 'M' in '1M' (use s, m, h, d or w, e.g. 30d)"),
        (True, f"{FORMS}, got True"),
        (False, f"{FORMS}, got False"),
        ("", f"{FORMS}, got ''"),
        ("never", f"{FORMS}, got 'never'"),
        ("d30", f"{FORMS}, got 'd30'"),
        (float("inf"), f"{FORMS}, got inf"),
        ("1" + "0" * 400 + "d", f"{FORMS}, got '1{'0' * 400}d'"),
        ({"days": 30}, f"{FORMS}, got {{'days': 30}}"),
    ],
)
def test_bad_values_are_problems_naming_the_value_and_the_fix(value: object, message: str) -> None:
    assert parsed(value) == (None, [f"sources.github.retention: {message}"])


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30 * DAY, "30d"),
        (14 * DAY, "14d"),
        (12 * HOUR, "12h"),
        (36 * HOUR, "36h"),
        (5400.0, "90m"),
        (45.0, "45s"),
        (3601.0, "3601s"),
        (0.5, "0.5s"),
        (None, "forever"),
    ],
)
def test_durations_are_formatted_in_the_largest_whole_unit(seconds: float | None, text: str) -> None:
    assert kept(seconds) == text


def test_a_routes_file_with_top_level_and_per_source_retention_gives_each_source_its_cutoff() -> None:
    loaded = config(EXAMPLE)
    assert loaded.retention == Retention(
        30 * DAY, {"github": 7 * DAY, "stripe": None}, ("github", "stripe", "acme")
    )
    assert (loaded.sources["github"].retention, loaded.sources["github"].retention_set) == (7 * DAY, True)
    assert (loaded.sources["acme"].retention, loaded.sources["acme"].retention_set) == (None, False)
    cut = cutoffs(loaded.retention, NOW)
    assert cut == Cutoffs(default=NOW - 30 * DAY, per_source={"github": NOW - 7 * DAY, "stripe": None})
    assert cut.for_source("github") == NOW - 7 * DAY
    assert cut.for_source("acme") == NOW - 30 * DAY


def test_a_forever_source_is_never_cut_off_under_a_30d_default() -> None:
    cut = cutoffs(config(EXAMPLE).retention, NOW)
    assert cut.default == NOW - 30 * DAY
    assert cut.for_source("stripe") is None


def test_records_of_a_source_removed_from_the_file_use_the_default() -> None:
    assert cutoffs(config(EXAMPLE).retention, NOW).for_source("gitlab") == NOW - 30 * DAY


def test_without_retention_nothing_is_cut_off_except_sources_that_ask() -> None:
    loaded = config("sources:\n  github: {verify: none, retention: 90d}\n  acme: {verify: none}\n")
    assert loaded.retention.default is None and loaded.retention.prunes
    cut = cutoffs(loaded.retention, NOW)
    assert cut == Cutoffs(default=None, per_source={"github": NOW - 90 * DAY})
    assert cut.for_source("acme") is None
    assert cut.for_source("gone") is None


def test_a_source_that_repeats_the_default_is_not_listed_separately() -> None:
    loaded = config("retention: 30d\nsources:\n  github: {verify: none, retention: 720h}\n")
    assert cutoffs(loaded.retention, NOW) == Cutoffs(default=NOW - 30 * DAY, per_source={})


def test_describe_lists_each_source_then_the_rest() -> None:
    assert describe(config(EXAMPLE).retention) == [
        "github: 7d",
        "stripe: forever",
        "acme: 30d (default)",
        "(other sources): 30d",
    ]
    assert describe(config("sources: {}\n").retention) == ["(other sources): forever"]


def test_bad_retention_values_are_reported_with_their_paths() -> None:
    text = "retention: 30\nsources:\n  github: {verify: none, retention: 5m}\n"
    with pytest.raises(ConfigError) as info:
        config(text)
    assert str(info.value).splitlines() == [
        "routes.yaml:1:1: retention: a duration needs a unit (s, m, h, d or w): write 30d, not 30",
        "routes.yaml:3:26: sources.github.retention: retention must be at least 1h, got '5m'",
    ]


def test_retention_may_come_from_an_environment_variable() -> None:
    text = "retention: ${RETENTION:-30d}\nsources: {}\n"
    assert config(text).retention.default == 30 * DAY
    env_set = config_mod.parse(text, file=Path("routes.yaml"), environ={"RETENTION": "forever"})
    assert env_set.retention.default is None and not env_set.retention.prunes

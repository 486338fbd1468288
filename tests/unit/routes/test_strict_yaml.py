"""routes.yaml's YAML reader: where each path of the document is, and problems shown at their line."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError, Problem
from gateway.routes.strict_yaml import position_of, read_yaml

TEXT = """\
tasks: [tasks, billing]
sources:
  github:
    verify: github
    secrets:
      - a
      - b
defaults: &route {source: github, timeout: 30}
routes:
  - id: one
    when: {body.ref: refs/heads/main}
  - <<: *route
    id: two
"""


def test_each_path_starts_at_its_key_or_its_item_counted_from_one() -> None:
    _, positions = read_yaml(TEXT, "routes.yaml")
    assert positions["tasks"] == (1, 1)
    assert positions["tasks[1]"] == (1, 16)
    assert positions["sources.github"] == (3, 3)
    assert positions["sources.github.secrets[1]"] == (7, 9)
    assert positions["routes[0]"] == (10, 5)
    assert positions["routes[0].when.body.ref"] == (11, 12)  # a key with dots is one key
    # a merged entry is shown where it is written; the route's own keys where they are
    assert positions["routes[1].timeout"] == (8, 35)
    assert positions["routes[1].id"] == (13, 5)
    assert "routes[1].<<" not in positions


def test_a_missing_key_is_shown_at_the_mapping_that_lacks_it() -> None:
    _, positions = read_yaml(TEXT, "routes.yaml")
    assert position_of("sources.github.secret", positions) == (3, 3)
    assert position_of("routes[0].retry.max_attempts", positions) == (10, 5)
    assert position_of("queues.emails", positions) is None  # no queues: section at all
    assert position_of("", positions) is None


def test_an_empty_document_has_no_positions() -> None:
    assert read_yaml("", "routes.yaml") == ({}, {})


def test_invalid_yaml_is_shown_at_its_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        read_yaml("sources:\n  github: {verify: github\n", "routes.yaml")
    [problem] = info.value.problems
    assert problem.position == (3, 1)
    assert str(info.value).startswith("routes.yaml:3:1: not valid YAML: ")


def test_a_config_error_shows_each_position_or_none() -> None:
    error = ConfigError(
        [Problem("routes[6].task", "unknown task 'x'", (42, 5)), Problem("", "cannot read the file")],
        "routes.yaml",
    )
    assert str(error).splitlines() == [
        "routes.yaml:42:5: routes[6].task: unknown task 'x'",
        "routes.yaml: cannot read the file",
    ]

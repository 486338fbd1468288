"""Hypothesis strategies and settings shared by the property tests (tests/unit/properties/) and the path
tests: JSON bodies and the paths into them, `when:` filters, `input:` mappings, what else YAML can hold."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def props(examples: int) -> settings:
    """Bounded and repeatable in CI: the same examples on every run, nothing written to .hypothesis/.
    GATEWAY_PROPERTY_SCALE=50 explores fifty times as many fresh (random) examples, to hunt for bugs."""
    scale = int(os.environ.get("GATEWAY_PROPERTY_SCALE", "1"))
    return settings(
        max_examples=examples * scale,
        deadline=None,
        derandomize=scale == 1,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# -- JSON bodies and paths into them -------------------------------------------------------------------------

KEYS = st.text(alphabet="ab01 -$", min_size=1, max_size=2)  # shared by bodies and paths, so paths hit

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=12,
)

body_steps = st.one_of(KEYS.map(".{}".format), st.integers(0, 3).map("[{}]".format))

path_strings = st.one_of(
    st.lists(body_steps, max_size=4).map(lambda steps: "body" + "".join(steps)),
    st.sampled_from(["headers.", "query.", "event."]).flatmap(
        lambda root: st.text(max_size=8).map(root.__add__)
    ),
    st.text(max_size=12),
)


# -- `when:` filters and the views they are tested on --------------------------------------------------------

HEADERS = [("X-Count", "5"), ("X-Event", "push"), ("X-Flag", "true"), ("X-Ratio", "0.5")]
header_paths = st.sampled_from(["headers.x-count", "headers.X-Event", "headers.x-flag", "headers.X-Ratio"])

# Bodies and filters share their keys and values, so conditions hit as often as they miss.
leaves = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, 1.0, -0.0]), KEYS)

finite_json = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=10,
)

bodies = st.one_of(finite_json, json_values)  # json_values also brings NaN, infinities and long text

body_paths = st.lists(st.one_of(KEYS, st.integers(0, 2).map(str)), max_size=3).map(
    lambda keys: ".".join(["body", *keys])
)

paths = st.one_of(body_paths, header_paths, st.sampled_from(["event.type", "event.source", "event.id"]))

patterns = st.sampled_from(["a", "^a", "b$", "0|1", "[ab]+", r"\$", "(?i)A", ".*", "^$", "a{2,}"])

operators = st.one_of(
    st.tuples(st.sampled_from(["$eq", "$ne", "$contains"]), finite_json),
    st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(finite_json, max_size=3)),
    st.tuples(st.just("$exists"), st.booleans()),
    st.tuples(st.just("$regex"), patterns),
    st.tuples(
        st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), st.one_of(st.integers(-3, 3), st.floats(), KEYS)
    ),
)


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several conditions as keys of one mapping (the implicit all); a repeated key keeps its first."""
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            merged.setdefault(key, value)
    return merged


fields = st.builds(lambda path, ops: {path: dict(ops)}, paths, st.lists(operators, min_size=1, max_size=3))

filters = st.recursive(
    fields,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"all": parts}),
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"any": parts}),
        inner.map(lambda part: {"not": part}),
        st.lists(inner, min_size=2, max_size=3).map(_merge),
    ),
    max_leaves=6,
)

# Values YAML can produce besides JSON: bytes (!!binary), dates, big and non-finite numbers.
yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.dates(),
    st.datetimes(),
)

yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.one_of(KEYS, yaml_scalars), inner, max_size=3)
    ),
    max_leaves=8,
)

op_names = st.one_of(
    st.sampled_from(["$eq", "$ne", "$in", "$nin", "$exists", "$regex", "$gt", "$lte", "$contains"]), KEYS
)

any_filters = st.recursive(
    st.dictionaries(
        st.one_of(path_strings, yaml_scalars, st.sampled_from(["any", "all", "not", "$or", "$and"])),
        st.one_of(yaml_values, st.dictionaries(op_names, yaml_values, max_size=3)),
        max_size=3,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda parts: {"any": parts}),
        st.lists(inner, max_size=3).map(lambda parts: {"all": parts}),
        inner.map(lambda part: {"not": part}),
        yaml_values,
    ),
    max_leaves=6,
)


# -- `input:` mappings ---------------------------------------------------------------------------------------

literals = finite_json.map(lambda value: {"$literal": value})

names = st.text(alphabet="abcxyz_-", min_size=1, max_size=4)  # output keys: never "$…"

specs = st.recursive(
    st.one_of(paths, literals),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3)),
    max_leaves=8,
)

mappings = st.dictionaries(names, specs, max_size=4)

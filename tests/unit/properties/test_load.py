"""Properties of the routes.yaml loader: any document or text gives a Config or a ConfigError whose problems
each name a path and a message, never another exception, never a secret; what loads has sane numbers."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.errors import ConfigError, Problem
from gateway.execution.retry import RETRY_KEYS
from gateway.routes import load as config_mod
from gateway.signatures.schemes import PRESETS
from tests.support.routes import TASKS_CODE
from tests.support.strategies import (
    any_filters,
    filters,
    mappings,
    path_strings,
    props,
    yaml_scalars,
    yaml_values,
)

MODULE = "tasks_properties_config"  # written next to the routes file by the `folder` fixture
SECRET = re.compile(r"s3cr3t-[0-9a-f]{12}")
secrets = st.binary(min_size=6, max_size=6).map(lambda b: f"s3cr3t-{b.hex()}")
ENVIRON = {"GW_SECRET": "s3cr3t-0123456789ab", "GW_EMPTY": ""}  # a secret that arrives through ${GW_SECRET}
secret_values = st.one_of(
    secrets,
    secrets.map(lambda s: f"${{GW_MISSING:-{s}}}"),
    st.sampled_from(["${GW_SECRET}", "${GW_MISSING}", "${GW_EMPTY}", "whsec_${GW_SECRET}"]),
    secrets.map(lambda s: "whsec_" + s),
    secrets.map(lambda s: f"user:{s}"),
)


def maybe(right: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the right type, sometimes anything YAML can hold."""
    return st.one_of(right, right, yaml_values)


recipes = st.fixed_dictionaries(
    {"scheme": st.sampled_from(["hmac", "token", "jwt", "github", "hmca"])},
    optional={
        "header": maybe(st.sampled_from(["X-Sig", ""])),
        "query": maybe(st.just("token")),
        "algorithm": maybe(st.sampled_from(["sha256", "sha1", "md5"])),
        "encoding": maybe(st.sampled_from(["hex", "base64", "b64"])),
        "prefix": maybe(st.sampled_from(["", "v1="])),
        "signed": maybe(st.sampled_from(["{body}", "{timestamp}.{body}", "{id}.{body}", "{bdy}", "x"])),
        "timestamp_header": maybe(st.just("X-Ts")),
        "id_header": maybe(st.just("X-Id")),
        "tolerance": maybe(st.integers(-5, 500)),
        "secret": secret_values,  # misplaced: an unknown key of the recipe
    },
)
sources = st.fixed_dictionaries(
    {"verify": maybe(st.one_of(st.sampled_from([*PRESETS, "hmac", "githb"]), recipes))},
    optional={
        "secret": maybe(secret_values),
        "secrets": maybe(st.lists(maybe(secret_values), max_size=3)),
        "public_key": maybe(secret_values),
        "public_keys": maybe(st.lists(secret_values, max_size=2)),
        "signing_key": maybe(secret_values),
        "tolerance": maybe(st.integers(-10, 1000)),
        "dedupe": maybe(path_strings),
        "event_type": maybe(path_strings),
        "path": maybe(st.sampled_from(["/hooks/a", "/hooks/b", "hooks", "/x?y"])),
        "max_body": maybe(st.sampled_from([1024, "1KiB", "10 MB", "0", -1, "1 TB"])),
        "public_url": maybe(st.sampled_from(["https://h.example/hooks/a", "ftp://x", "https://h/x?q"])),
        "retention": maybe(st.sampled_from(["30d", "1h", "5m", "forever", "1.5d", 3, ".inf"])),
        "sender_timeout": maybe(st.floats()),
        "client_id": maybe(st.just("c1")),
        # Hashable only until gateway/signatures/remote.py's _environment stops raising TypeError on a list
        # (see below).
        "environment": st.one_of(st.sampled_from(["sandbox", "production", "prod"]), yaml_scalars),
        "audience": maybe(st.just("https://h/x")),
        "service_account": maybe(st.sampled_from(["a@p.iam.gserviceaccount.com", "nobody"])),
        "webhook_id": maybe(st.just("WH1")),
        "trust_anchors": yaml_values.filter(
            lambda v: not isinstance(v, str | list)
        ),  # never read a real file
        "jwks_url": maybe(st.sampled_from(["https://i.example/jwks", "http://i"])),
        "issuer": maybe(st.just("https://i.example")),
        "algorithms": maybe(st.lists(st.sampled_from(["HS256", "RS256", "none"]), max_size=2)),
        "verfy": yaml_values,
    },
)
routes = st.fixed_dictionaries(
    {
        "id": maybe(st.sampled_from(["r1", "r2"])),
        "source": maybe(st.sampled_from(["a", "b", "gh"])),
        "task": maybe(st.sampled_from(["deploy-preview", "record-payment", "deplyo-preview"])),
    },
    optional={
        "event": maybe(st.one_of(st.sampled_from(["push", "invoice.*", ""]), st.lists(st.just("push")))),
        "when": st.one_of(filters, any_filters),
        "input": st.one_of(mappings, yaml_values),
        "retry": maybe(
            st.dictionaries(
                st.sampled_from([*RETRY_KEYS, "max_attempt"]),
                st.one_of(st.integers(-1, 100), st.floats(), st.booleans()),
            )
        ),
        "timeout": maybe(st.one_of(st.floats(), st.integers(-1, 100))),
        "queue": maybe(st.sampled_from(["emails", ""])),
        "concurrency": maybe(st.integers(-1, 5)),
        "priority": maybe(st.integers(-5, 5)),
        "rout": yaml_values,
    },
)
queue_limits = st.fixed_dictionaries({"concurrency": st.integers(-1, 5)})
documents = st.fixed_dictionaries(
    {},
    optional={
        # Only names that are safe to import: the test's own task module, one that does not exist, junk.
        "tasks": st.sampled_from(
            [[MODULE], MODULE, [], ["no_such_tasks_module"], [MODULE, MODULE], 5, [3], ""]
        ),
        "sources": maybe(st.dictionaries(st.sampled_from(["a", "b", "gh", "bad name!", 5]), maybe(sources))),
        "routes": maybe(st.lists(maybe(routes), max_size=3)),
        "queues": maybe(st.dictionaries(st.sampled_from(["emails", "x"]), maybe(queue_limits))),
        "retention": maybe(st.sampled_from(["30d", "1h", "forever", "1m"])),
        "sourcs": yaml_values,
    },
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("properties_config")
    (path / f"{MODULE}.py").write_text(textwrap.dedent(TASKS_CODE))
    return path


def load(folder: Path, text: str) -> config_mod.Config | ConfigError:
    """The Config, or the ConfigError: nothing else may come out."""
    try:
        return config_mod.parse(text, file=folder / "routes.yaml", environ=ENVIRON)
    except ConfigError as exc:
        for problem in exc.problems:
            assert isinstance(problem, Problem)
            assert isinstance(problem.path, str) and isinstance(problem.message, str) and problem.message
        return exc


def _secrets_in(value: Any) -> set[str]:
    """Every secret written anywhere in a generated document, and the one the environment holds."""
    found = {ENVIRON["GW_SECRET"]}
    if isinstance(value, str):
        found.update(SECRET.findall(value))
    elif isinstance(value, dict):
        for k, v in value.items():
            found |= _secrets_in(k) | _secrets_in(v)
    elif isinstance(value, list):
        for item in value:
            found |= _secrets_in(item)
    return found


def _finite(value: Any) -> bool:
    if isinstance(value, dict):
        return all(map(_finite, value.values()))
    return not isinstance(value, float) or math.isfinite(value)


@props(150)
@given(doc=documents)
@example(doc={"routes": [{"id": "r", "source": "a", "task": "deploy-preview", "timeout": math.nan}]})
@example(
    doc={"routes": [{"id": "r", "source": "a", "task": "deploy-preview", "retry": {"max_timeout": math.nan}}]}
)
@example(doc={"routes": [{"id": "r", "source": "a", "task": "t", "input": {"x": {"$literal": math.inf}}}]})
def test_any_document_loads_or_lists_problems_with_paths_and_never_a_secret(
    folder: Path, doc: dict[Any, Any]
) -> None:
    text = yaml.safe_dump({"tasks": [MODULE], **doc} if "tasks" not in doc else doc)
    loaded = load(folder, text)
    shown = [str(loaded), repr(loaded)]
    if isinstance(loaded, ConfigError):
        roots = {"", *map(str, doc), *config_mod.TOP_KEYS}
        for problem in loaded.problems:
            assert re.split(r"[.\[]", problem.path, maxsplit=1)[0] in roots, problem
            # every problem at a path is shown at its line in the file (or at its parent's, for a missing key)
            assert problem.position is not None or not problem.path, problem
    else:
        shown += loaded.warnings
        for route in loaded.routes:  # a run's options must be numbers the executor can wait on
            assert _finite(dict(route.options)), route.options
    leaks = [s for s in _secrets_in(doc) for text in shown if s in text]
    assert leaks == []


@props(60)
@given(
    section=st.sampled_from(["sources", "routes", "queues"]),
    value=yaml_values.filter(lambda v: v is not None),
)
@example(section="routes", value={})  # `{} or []` used to pass for "no routes"
@example(section="queues", value=[])
def test_a_section_of_the_wrong_type_is_reported_at_its_path(folder: Path, section: str, value: Any) -> None:
    right = dict if section != "routes" else list
    loaded = load(folder, yaml.safe_dump({"tasks": [MODULE], section: value}))
    if isinstance(value, right):
        return  # the right type: its content is the other properties' business
    assert isinstance(loaded, ConfigError)
    assert section in [p.path for p in loaded.problems]


yaml_pieces = st.sampled_from(
    ["a", ": ", "- ", "\n", "  ", "[", "]", "{", "}", ",", "&x ", "*x", "!!int ", "!!binary ", "!!timestamp ",
     "? ", "'", '"', "#", "|", ">", "%YAML 1.1\n", "---\n", "${GW_SECRET}", "2001-13-01", "0x", "1e999",
     ".nan", "routes", "sources", "when", "$regex", "<<: *x"]
)  # fmt: skip
LAUGHS = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
    for p, c in zip("abcde", "bcdef", strict=True)
)  # a "billion laughs": 10^6 values once its aliases are expanded
NASTY = [
    ("a: &a [*a]", "1:8: not valid YAML: alias *a is inside the node it names"),
    ("x: " + "[" * 60 + "]" * 60, "1:53: not valid YAML: nested more than 50 levels deep"),
    (LAUGHS, "5:4: not valid YAML: holds more than 100000 values once its aliases are expanded"),
    (
        "retention: 0x" + "f" * 2000,
        "1:12: not valid YAML: an integer of more than 1,000 digits (quote it to make it a string)",
    ),
    ("{[1]: 2}", "1:2: not valid YAML: a key must be a plain value, not a list or a mapping"),
    ("tasks: [a]\ntasks: [b]", "2:1: not valid YAML: duplicate key 'tasks'"),
    ("a: 1\n---\nb: 2", "2:1: not valid YAML: but found another document"),
    (
        "a: 2001-02-30",
        "1:4: not valid YAML: this value cannot be read as timestamp (quote it to make it a string)",
    ),
    (
        "a: !!int ''",
        "1:4: not valid YAML: this value cannot be read as int (quote it to make it a string)",
    ),
]


def _spliced(doc: dict[str, Any], at: int, piece: str) -> str:
    text = yaml.safe_dump(doc)
    at %= len(text) + 1
    return text[:at] + piece + text[at:]


@props(200)
@given(
    text=st.one_of(
        st.text(max_size=80),
        st.lists(yaml_pieces, max_size=12).map("".join),
        st.builds(
            _spliced, documents, st.integers(0, 10_000), st.lists(yaml_pieces, max_size=3).map("".join)
        ),
    )
)
@example(text="? [a]\n: 1\n")
@example(text="a: !!float x")
@example(text="retention: 2001-13-01")
def test_any_text_loads_or_lists_problems_never_another_exception(folder: Path, text: str) -> None:
    load(folder, text)


@pytest.mark.parametrize(("text", "message"), NASTY)
def test_hostile_yaml_is_one_problem_with_its_line_not_a_crash_or_a_hang(
    folder: Path, text: str, message: str
) -> None:
    loaded = load(folder, text)
    assert isinstance(loaded, ConfigError)
    assert str(loaded).splitlines() == [f"routes.yaml:{message}"]


def test_a_plaid_environment_that_is_a_list_is_a_problem(folder: Path) -> None:
    text = "sources: {p: {verify: plaid, secret: s, client_id: c, environment: [production]}}"
    loaded = load(folder, text)
    assert isinstance(loaded, ConfigError)
    assert "sources.p.environment" in [p.path for p in loaded.problems]


def test_a_merge_key_shares_settings_between_routes(folder: Path) -> None:
    # The duplicate-key check used to construct `<<` as a key, which PyYAML cannot do: every merge failed.
    text = f"""
tasks: [{MODULE}]
sources: {{a: {{verify: none}}}}
routes:
  - &base {{id: r1, source: a, task: deploy-preview, timeout: 30}}
  - {{<<: *base, id: r2}}
"""
    loaded = load(folder, text)
    assert isinstance(loaded, config_mod.Config), loaded
    assert [(r.id, r.options["timeout"]) for r in loaded.routes] == [("r1", 30), ("r2", 30)]

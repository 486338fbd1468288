"""Reading the tasks' declarations agrees with importing them: for the sample tasks/, for each task module the
tests write, and for the sample routes.yaml loaded as intake (``gateway serve --executor off``) loads it."""

from __future__ import annotations

import ast
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import Problem
from gateway.execution.declared import ids_in_text
from gateway.execution.tasks import Task, load_tasks
from gateway.routes import load as config_mod
from tests.support.repo import REPO


def _seen(tasks: dict[str, Task]) -> dict[str, tuple[dict[str, Any], str | None, bool]]:
    """What intake takes from a task when it creates a run: never its function."""
    return {t.id: (t.options(), t.concurrency_key, t.is_async) for t in tasks.values()}


def _fixtures() -> list[tuple[str, str]]:
    """Every task module the tests write: each string in tests/ that parses as Python and declares @task (but
    the fragments of the unit tests of reading, refused on purpose)."""
    found: list[tuple[str, str]] = []
    fragments = REPO / "tests" / "unit" / "execution" / "test_declared.py"
    for file in sorted(f for f in (REPO / "tests").rglob("*.py") if f != fragments):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if not (
                isinstance(node, ast.Constant) and isinstance(node.value, str) and "@task(" in node.value
            ):
                continue
            code = textwrap.dedent(node.value)
            try:
                ast.parse(code)
            except SyntaxError:
                continue  # a template, or a module broken on purpose
            found.append((f"{file.relative_to(REPO)}:{node.lineno}", code))
    return found


FIXTURES = _fixtures()


def test_the_fixtures_are_found() -> None:
    assert len(FIXTURES) >= 15
    assert any(where.startswith("tests/support/routes.py:") for where, _ in FIXTURES)


def test_the_sample_tasks_read_as_they_import() -> None:
    read: list[Problem] = []
    imported: list[Problem] = []
    declared = load_tasks(["tasks"], REPO, read, run_code=False)
    assert read == []
    assert _seen(declared) == _seen(load_tasks(["tasks"], REPO, imported))
    assert imported == []
    assert set(declared) == {
        "deploy-preview",
        "triage-issue",
        "record-payment",
        "sync-subscription",
        "flaky-demo",
    }


@pytest.mark.parametrize("code", [code for _, code in FIXTURES], ids=[where for where, _ in FIXTURES])
def test_each_task_module_of_the_tests_reads_as_it_imports(tmp_path: Path, code: str) -> None:
    name = f"fixture_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(code)
    imported: list[Problem] = []
    by_import = load_tasks([name], tmp_path, imported)
    read: list[Problem] = []
    by_reading = load_tasks([name], tmp_path, read, run_code=False)
    if not imported:
        assert (_seen(by_reading), read) == (_seen(by_import), [])
    elif all("ModuleNotFoundError" in p.message for p in imported):  # a dependency intake never imports
        assert (set(by_reading), read) == (ids_in_text(code), [])
    else:  # a bad @task(...): the decorator's own message either way
        assert (by_reading, read) == (by_import, imported)


def test_intake_loads_the_sample_routes_file_as_an_import_does() -> None:
    imported = config_mod.load(REPO / "routes.yaml", {})
    intake = config_mod.load(REPO / "routes.yaml", {}, run_tasks=False)
    assert intake.routes == imported.routes
    assert _seen(dict(intake.tasks)) == _seen(dict(imported.tasks))
    assert intake.sources.keys() == imported.sources.keys()
    assert (intake.queues, intake.warnings) == (imported.queues, imported.warnings)

"""The @task decorator and the task loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import task
from gateway.errors import Problem, TaskError
from gateway.execution.retry import RetryPolicy
from gateway.execution.tasks import FailedModule, Task, load_tasks


def test_defaults_follow_trigger_dev() -> None:
    @task(id="t")
    async def t(payload: object, ctx: object) -> None: ...

    assert isinstance(t, Task)
    assert t.retry == RetryPolicy(max_attempts=3, factor=2.0, min_timeout=1.0, max_timeout=60.0, jitter=True)
    assert t.timeout == 600.0
    assert t.queue == "t"
    assert t.is_async


def test_a_sync_function_is_a_task_and_stays_callable() -> None:
    @task(id="s", timeout=None, queue="q", concurrency=2, concurrency_key="payload.customer", priority=5)
    def s(payload: int, ctx: object) -> int:
        return payload + 1

    assert not s.is_async
    assert s(1, None) == 2
    assert s.options() == {
        "retry": RetryPolicy().as_dict(),
        "timeout": None,
        "queue": "q",
        "concurrency": 2,
        "priority": 5,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": ""}, "@task(id=''): id: expected a non-empty string, got ''"),
        (
            {"id": "x", "retry": {"max_attempts": 0}},
            "@task(id='x'): retry.max_attempts: expected a whole number >= 1, got 0",
        ),
        (
            {"id": "x", "retry": {"tries": 2}},
            "@task(id='x'): retry.tries: unknown key (expected one of: max_attempts, factor, min_timeout, "
            "max_timeout, jitter)",
        ),
        (
            {"id": "x", "retry": {"min_timeout": 10, "max_timeout": 1}},
            "@task(id='x'): retry: min_timeout (10.0) is larger than max_timeout (1.0)",
        ),
        ({"id": "x", "timeout": 0}, "@task(id='x'): timeout: expected seconds > 0 or None, got 0"),
        ({"id": "x", "concurrency": 0}, "@task(id='x'): concurrency: expected a whole number >= 1, got 0"),
        (
            {"id": "x", "concurrency_key": "customer"},
            "@task(id='x'): concurrency_key: expected a path like 'payload.customer_id', got 'customer'",
        ),
    ],
)
def test_bad_arguments_raise_a_task_error_naming_them(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TaskError) as info:
        task(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_the_loader_walks_packages_and_refuses_duplicate_ids(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg_walk_dupes"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    body = "from gateway import task\n@task(id='{id}')\nasync def f(p, c): ...\n"
    (pkg / "a.py").write_text(body.format(id="one"))
    (pkg / "sub" / "b.py").write_text(body.format(id="two"))
    (pkg / "sub" / "c.py").write_text(body.format(id="one"))
    problems: list[Problem] = []
    tasks = load_tasks(["pkg_walk_dupes"], tmp_path, problems)
    assert set(tasks) == {"one", "two"}
    assert [str(p) for p in problems] == [
        "tasks[0]: task id 'one' is defined twice (pkg_walk_dupes.a and pkg_walk_dupes.sub.c); "
        "task ids must be unique"
    ]


def test_a_missing_module_is_a_problem(tmp_path: Path) -> None:
    problems: list[Problem] = []
    assert load_tasks(["no_such_module_here"], tmp_path, problems) == {}
    assert len(problems) == 1
    assert problems[0].path == "tasks[0]"
    assert (
        "importing 'no_such_module_here' failed: ModuleNotFoundError: No module named" in problems[0].message
    )


GOOD = "from gateway import task\n@task(id='{id}')\nasync def f(p, c): ...\n"
BROKEN = {
    # (the module's text, where its error is, what the problem says)
    "syntax": (
        "from gateway import task\n@task(id='charge')\nasync def charge(p, c:\n    ...\n",
        ":3:17): async def charge(p, c:",
        "SyntaxError: '(' was never closed (",
    ),
    "import": (
        "from gateway import task\nimport no_such_dependency_here\n"
        "@task(id='charge')\nasync def charge(p, c): ...\n",
        ":2)",
        "ModuleNotFoundError: No module named 'no_such_dependency_here' (",
    ),
}


def _unique(prefix: str) -> str:
    import uuid

    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_module_loses_only_its_own_tasks(tmp_path: Path, kind: str) -> None:
    code, at, what = BROKEN[kind]
    good, broken = _unique("good"), _unique("broken")
    (tmp_path / f"{good}.py").write_text(GOOD.format(id="hello"))
    (tmp_path / f"{broken}.py").write_text(code)
    problems: list[Problem] = []
    failed: list[FailedModule] = []
    tasks = load_tasks([good, broken], tmp_path, problems, failed)
    assert set(tasks) == {"hello"}
    [problem] = problems
    assert problem.path == "tasks[1]"
    assert problem.message.startswith(f"importing {broken!r} failed: {what}")
    # the user's file and line, never a frame inside importlib or the gateway
    assert f"{tmp_path / broken}.py{at}" in problem.message
    assert "<frozen" not in problem.message
    assert failed == [FailedModule(broken, "tasks[1]", frozenset({"charge"}))]


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_submodule_of_a_package_loses_only_its_own_tasks(tmp_path: Path, kind: str) -> None:
    code, at, what = BROKEN[kind]
    name = _unique("pkg")
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "a_good.py").write_text(GOOD.format(id="hello"))
    (tmp_path / name / "billing.py").write_text(code)
    (tmp_path / name / "z_good.py").write_text(GOOD.format(id="bye"))
    problems: list[Problem] = []
    failed: list[FailedModule] = []
    tasks = load_tasks([name], tmp_path, problems, failed)
    assert set(tasks) == {"hello", "bye"}
    [problem] = problems
    assert problem.path == "tasks[0]"
    assert problem.message.startswith(f"importing '{name}.billing' failed: {what}")
    assert f"{tmp_path / name / 'billing.py'}{at}" in problem.message
    assert failed == [FailedModule(f"{name}.billing", "tasks[0]", frozenset({"charge"}))]


def test_a_module_that_does_not_exist_names_no_frame_of_the_importer(tmp_path: Path) -> None:
    problems: list[Problem] = []
    load_tasks(["no_such_module_either"], tmp_path, problems)
    assert [p.message for p in problems] == [
        "importing 'no_such_module_either' failed: ModuleNotFoundError: "
        "No module named 'no_such_module_either'"
    ]

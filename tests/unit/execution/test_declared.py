"""Reading @task declarations from a module's source, never running it (``load_tasks(run_code=False)``)."""

from __future__ import annotations

import ast
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import Problem, TaskError
from gateway.execution.declared import FIX, declarations_in
from gateway.execution.tasks import FailedModule, Task, load_tasks


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _module(tmp_path: Path, code: str, prefix: str = "declared") -> tuple[str, Path]:
    name = _unique(prefix)
    file = tmp_path / f"{name}.py"
    file.write_text(code)
    return name, file


def _read(tmp_path: Path, *modules: str) -> tuple[dict[str, Task], list[str], list[FailedModule]]:
    problems: list[Problem] = []
    failed: list[FailedModule] = []
    tasks = load_tasks(list(modules), tmp_path, problems, failed, run_code=False)
    return tasks, [str(p) for p in problems], failed


def _kwargs(code: str) -> dict[str, Any]:
    [declaration], problems = declarations_in(ast.parse(code), Path("m.py"))
    assert problems == []
    return dict(declaration.kwargs)


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("'single'", "single"),
        ('"double"', "double"),
        ('"""triple"""', "triple"),
        ('"implicit" "-concatenation"', "implicit-concatenation"),
        ("b'bytes'", b"bytes"),
        ("7", 7),
        ("-7", -7),
        ("+7", 7),
        ("2.5", 2.5),
        ("1e3", 1000.0),
        ("0x10", 16),
        ("1_000", 1000),
        ("None", None),
        ("True", True),
        (
            "{'max_attempts': 5, 'factor': 1.5, 'jitter': False}",
            {"max_attempts": 5, "factor": 1.5, "jitter": False},
        ),
        ("{'nested': {'list': [1, (2, -3)]}}", {"nested": {"list": [1, (2, -3)]}}),
        ("{1, 2}", {1, 2}),
        ("set()", set()),
        ("[\n    1,\n    2,\n]", [1, 2]),
    ],
)
def test_every_literal_form_is_read_as_its_value(written: str, value: object) -> None:
    code = f"from gateway import task\n@task(id='t', priority={written})\nasync def t(p, c): ...\n"
    assert _kwargs(code) == {"id": "t", "priority": value}


@pytest.mark.parametrize(
    ("bindings", "written", "value"),
    [
        ("ATTEMPTS = 5", "{'max_attempts': ATTEMPTS}", {"max_attempts": 5}),
        ("RETRY = {'max_attempts': 5}", "RETRY", {"max_attempts": 5}),
        ("RETRY: dict[str, int] = {'max_attempts': 5}", "RETRY", {"max_attempts": 5}),
        ("A = B = 2", "{'max_attempts': B, 'min_timeout': A}", {"max_attempts": 2, "min_timeout": 2}),
        ("KEY = 'max_attempts'\nN = 4", "{KEY: N}", {"max_attempts": 4}),
        ("N = 4\ndef helper():\n    N = 9\n    return N", "{'max_attempts': N}", {"max_attempts": 4}),
        ("N = 4\nsquares = [N for N in range(3)]", "{'max_attempts': N}", {"max_attempts": 4}),
    ],
)
def test_a_name_bound_once_to_a_literal_at_module_level_is_resolved(
    bindings: str, written: str, value: object
) -> None:
    code = f"from gateway import task\n{bindings}\n@task(id='t', retry={written})\ndef t(p, c): ...\n"
    assert _kwargs(code) == {"id": "t", "retry": value}


@pytest.mark.parametrize(
    "header",
    [
        "from gateway import task",
        "from gateway import task as declare\ntask = declare",
        "from gateway.execution.tasks import task",
    ],
)
def test_a_task_imported_from_the_gateway_is_recognised(header: str) -> None:
    decorator = "declare" if "as declare" in header else "task"
    assert _kwargs(f"{header}\n@{decorator}(id='t')\ndef t(p, c): ...\n") == {"id": "t"}


@pytest.mark.parametrize(
    ("header", "decorator"),
    [
        ("import gateway", "gateway.task"),
        ("import gateway as gw", "gw.task"),
        ("import gateway.execution.tasks", "gateway.execution.tasks.task"),
        ("from gateway.execution import tasks", "tasks.task"),
    ],
)
def test_an_attribute_ending_in_task_is_recognised_through_an_import_of_the_gateway(
    header: str, decorator: str
) -> None:
    assert _kwargs(f"{header}\n@{decorator}(id='t')\ndef t(p, c): ...\n") == {"id": "t"}


@pytest.mark.parametrize(
    "code",
    [
        "def task(**kw):\n    return lambda f: f\n@task(id='t')\ndef t(p, c): ...\n",
        "from celery import task\n@task(id='t')\ndef t(p, c): ...\n",
        "import app\n@app.task(id='t')\ndef t(p, c): ...\n",
        "import gateway\n@gateway.tasks(id='t')\ndef t(p, c): ...\n",
    ],
)
def test_a_decorator_named_task_that_is_not_the_gateways_is_ignored(code: str) -> None:
    assert declarations_in(ast.parse(code), Path("m.py")) == ([], [])


def _fix(arg: str) -> str:
    return FIX.format(arg=f"`{arg}=`")


# (what is written above the def, the @task arguments, the line of the problem, what it says)
REFUSED = {
    "call": ("", "timeout=compute()", 2, "`timeout=` is a call; " + _fix("timeout")),
    "f-string": ("", "queue=f'q-{1}'", 2, "`queue=` is an f-string; " + _fix("queue")),
    "expression": ("", "timeout=60 * 60", 2, "`timeout=` is an expression; " + _fix("timeout")),
    "attribute": (
        "import settings",
        "queue=settings.QUEUE",
        3,
        "`queue=` is an expression; " + _fix("queue"),
    ),
    "lambda": ("", "priority=lambda: 1", 2, "`priority=` is a lambda; " + _fix("priority")),
    "inner call": (
        "",
        "retry={\n    'max_attempts': 3,\n    'min_timeout': seconds(1),\n}",
        4,
        "`retry=` is a call; " + _fix("retry"),
    ),
    "dict unpacking": ("", "retry={**BASE}", 2, "`retry=` is a ** unpacking; " + _fix("retry")),
    "unbound name": (
        "",
        "timeout=TIMEOUT",
        2,
        "`timeout=` is the name TIMEOUT (not assigned at module level); " + _fix("timeout"),
    ),
    "name bound twice": (
        "TIMEOUT = 30\nTIMEOUT = 60",
        "timeout=TIMEOUT",
        4,
        "`timeout=` is the name TIMEOUT (assigned 2 times at module level: which value it holds depends on "
        "running it); " + _fix("timeout"),
    ),
    "name rebound by a function": (
        "TIMEOUT = 30\ndef tune():\n    global TIMEOUT\n    TIMEOUT = 5",
        "timeout=TIMEOUT",
        6,
        "`timeout=` is the name TIMEOUT (assigned 2 times at module level: which value it holds depends on "
        "running it); " + _fix("timeout"),
    ),
    "name bound to a non-literal": (
        "import os\nTIMEOUT = float(os.environ['T'])",
        "timeout=TIMEOUT",
        4,
        "`timeout=` is the name TIMEOUT (not assigned a literal at module level); " + _fix("timeout"),
    ),
    "name bound by a loop": (
        "for TIMEOUT in (1, 2): pass",
        "timeout=TIMEOUT",
        3,
        "`timeout=` is the name TIMEOUT (not assigned a literal at module level); " + _fix("timeout"),
    ),
    "name bound to another name": (
        "A = 3\nB = A",
        "priority=B",
        4,
        "`priority=` is the name B (not assigned a literal at module level); " + _fix("priority"),
    ),
    "name inside a literal": (
        "",
        "retry={'max_attempts': ATTEMPTS}",
        2,
        "`retry=` is the name ATTEMPTS (not assigned at module level); " + _fix("retry"),
    ),
    "keyword unpacking": (
        "OPTIONS = {'timeout': 5}",
        "**OPTIONS",
        3,
        "`**` arguments; write each option as name=literal (retry={...}): intake reads them from the source "
        "without running it",
    ),
    "positional": ("", "'t'", 2, "positional arguments; write each as name=literal (id='...')"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_an_argument_that_is_not_a_literal_is_refused_naming_file_line_and_the_fix(
    tmp_path: Path, kind: str
) -> None:
    above, arguments, line, says = REFUSED[kind]
    args = arguments if kind == "positional" else f"id='t', {arguments}"
    code = f"from gateway import task\n{above + chr(10) if above else ''}@task({args})\ndef t(p, c): ...\n"
    name, file = _module(tmp_path, code)
    tasks, problems, failed = _read(tmp_path, name)
    assert tasks == {}
    assert problems == [f"tasks[0]: {file}:{line}: @task over t(): {says}"]
    assert failed == [FailedModule(name, "tasks[0]", frozenset({"t"} if kind != "positional" else set()))]


def test_a_name_assigned_below_its_use_is_refused_as_an_import_would_fail(tmp_path: Path) -> None:
    name, file = _module(
        tmp_path, "from gateway import task\n@task(id='t', timeout=T)\ndef t(p, c): ...\nT = 5\n"
    )
    _, problems, _ = _read(tmp_path, name)
    assert problems == [
        f"tasks[0]: {file}:2: @task over t(): `timeout=` is the name T (assigned at line 4, below the @task "
        "that uses it); " + _fix("timeout")
    ]


@pytest.mark.parametrize(
    ("code", "line", "says"),
    [
        ("@task\ndef t(p, c): ...\n", 2, "@task over t() has no arguments; "),
        (
            "import functools\n@functools.cache\n@task(id='t')\ndef t(p, c): ...\n",
            4,
            "@task over t() is under ",
        ),
        ("def impl(p, c): ...\nt = task(id='t')(impl)\n", 3, "task(...) not over a top-level def; "),
        ("if True:\n    @task(id='t')\n    def t(p, c): ...\n", 3, "task(...) not over a top-level def; "),
    ],
)
def test_a_task_in_a_form_intake_cannot_read_is_a_problem_not_a_silent_gap(
    tmp_path: Path, code: str, line: int, says: str
) -> None:
    name, file = _module(tmp_path, "from gateway import task\n" + code)
    tasks, problems, _ = _read(tmp_path, name)
    assert tasks == {}
    [problem] = problems
    assert problem.startswith(f"tasks[0]: {file}:{line}: {says}")
    assert "or run intake with the embedded executor" in problem


def test_a_task_made_inside_a_function_is_not_a_module_task_either_way(tmp_path: Path) -> None:
    code = (
        "from gateway import task\n"
        "def factory():\n    @task(id='inner')\n    def inner(p, c): ...\n    return inner\n"
    )
    name, _ = _module(tmp_path, code)
    assert _read(tmp_path, name) == ({}, [], [])


def test_a_syntax_error_names_file_and_line_and_loses_only_that_module(tmp_path: Path) -> None:
    good, _ = _module(tmp_path, "from gateway import task\n@task(id='hello')\nasync def f(p, c): ...\n")
    broken, file = _module(
        tmp_path, "from gateway import task\n@task(id='charge')\nasync def charge(p, c:\n    ...\n"
    )
    tasks, problems, failed = _read(tmp_path, good, broken)
    assert set(tasks) == {"hello"}
    assert problems == [
        f"tasks[1]: reading {broken!r} failed: SyntaxError: '(' was never closed ({file}:3:17): "
        "async def charge(p, c:"
    ]
    assert failed == [FailedModule(broken, "tasks[1]", frozenset({"charge"}))]


def test_a_missing_module_is_a_problem_as_with_an_import(tmp_path: Path) -> None:
    tasks, problems, failed = _read(tmp_path, "no_such_module_to_read")
    assert tasks == {}
    assert problems == [
        "tasks[0]: reading 'no_such_module_to_read' failed: ModuleNotFoundError: "
        "No module named 'no_such_module_to_read'"
    ]
    assert failed == [FailedModule("no_such_module_to_read", "tasks[0]", frozenset())]


def test_a_dotted_name_under_a_plain_module_is_not_found(tmp_path: Path) -> None:
    name, _ = _module(tmp_path, "")
    _, problems, _ = _read(tmp_path, f"{name}.sub")
    assert problems == [
        f"tasks[0]: reading '{name}.sub' failed: ModuleNotFoundError: "
        f"No module named '{name}.sub'; '{name}' is not a package"
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("concurrency=0", "@task(id='x'): concurrency: expected a whole number >= 1, got 0"),
        ("timeout=0", "@task(id='x'): timeout: expected seconds > 0 or None, got 0"),
        (
            "retry={'max_attempts': 0}",
            "@task(id='x'): retry.max_attempts: expected a whole number >= 1, got 0",
        ),
        ("concurrency_key='customer'", "@task(id='x'): concurrency_key: expected a path like "),
    ],
)
def test_validation_is_the_decorators_with_the_same_message_either_way(
    tmp_path: Path, arguments: str, message: str
) -> None:
    code = f"from gateway import task\n@task(id='x', {arguments})\nasync def f(p, c): ...\n"
    name, _ = _module(tmp_path, code)
    by_reading, by_import = [], []
    for run_code, problems in ((False, by_reading), (True, by_import)):
        failed: list[FailedModule] = []
        assert load_tasks([name], tmp_path, problems, failed, run_code=run_code) == {}
        assert failed == [FailedModule(name, "tasks[0]", frozenset({"x"}))]
    assert by_reading == by_import
    [problem] = by_reading
    assert problem.message.startswith(f"{name}: {message}")


def test_an_unknown_argument_is_refused_as_the_call_to_task_refuses_it(tmp_path: Path) -> None:
    name, file = _module(
        tmp_path, "from gateway import task\n@task(id='x', retires=3)\nasync def f(p, c): ...\n"
    )
    _, problems, _ = _read(tmp_path, name)
    assert problems == [
        f"tasks[0]: reading {name!r} failed: TypeError: task() got an unexpected keyword argument 'retires' "
        f"({file}:2)"
    ]


def test_the_stub_keeps_sync_or_async_and_says_where_the_code_is_when_called(tmp_path: Path) -> None:
    code = (
        "from gateway import task\n\n@task(id='a')\nasync def a(p, c): ...\n\n"
        "@task(id='s')\ndef s(p, c): ...\n"
    )
    name, file = _module(tmp_path, code)
    tasks, problems, _ = _read(tmp_path, name)
    assert problems == []
    assert (tasks["a"].is_async, tasks["s"].is_async) == (True, False)
    assert (tasks["a"].fn.__name__, tasks["s"].fn.__name__) == ("a", "s")
    with pytest.raises(TaskError) as sync_call:
        tasks["s"]({}, None)
    assert str(sync_call.value) == (
        f"task 's' is declared in {file}:6 but its code is not imported in this process "
        "(gateway serve --executor off): a `gateway worker` runs it"
    )
    with pytest.raises(
        TaskError, match=rf"task 'a' is declared in .*{file.name}:3 but its code is not imported"
    ):
        tasks["a"]({}, None).send(None)  # the coroutine raises when first run; no event loop needed


def test_a_packages_submodules_are_read_and_duplicate_ids_refused_as_with_an_import(tmp_path: Path) -> None:
    pkg = _unique("pkg_declared")
    (tmp_path / pkg / "sub").mkdir(parents=True)
    body = "from gateway import task\n@task(id='{id}')\nasync def f(p, c): ...\n"
    (tmp_path / pkg / "__init__.py").write_text(body.format(id="zero"))
    (tmp_path / pkg / "sub" / "__init__.py").write_text("")
    (tmp_path / pkg / "a.py").write_text(body.format(id="one"))
    (tmp_path / pkg / "sub" / "b.py").write_text(body.format(id="two"))
    (tmp_path / pkg / "sub" / "c.py").write_text(body.format(id="one"))
    (tmp_path / pkg / "notes.txt").write_text("@task(id='not-python')")
    tasks, problems, failed = _read(tmp_path, pkg, f"{pkg}.sub.b")  # listing one again is no duplicate
    assert set(tasks) == {"zero", "one", "two"}
    assert problems == [
        f"tasks[0]: task id 'one' is defined twice ({pkg}.a and {pkg}.sub.c); task ids must be unique"
    ]
    assert failed == []
    assert pkg not in sys.modules


def test_no_module_is_ever_run_not_even_a_parent_package(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    pkg = _unique("pkg_never_run")
    (tmp_path / pkg / "inner").mkdir(parents=True)
    runs = f"from pathlib import Path\nPath({str(marker)!r}).write_text(__name__)\nraise SystemExit(3)\n"
    (tmp_path / pkg / "__init__.py").write_text(runs)
    (tmp_path / pkg / "inner" / "__init__.py").write_text(runs)
    (tmp_path / pkg / "inner" / "work.py").write_text(
        runs + "from gateway import task\n@task(id='work', queue='heavy')\ndef work(p, c): ...\n"
    )
    tasks, problems, failed = _read(tmp_path, f"{pkg}.inner.work")
    assert (set(tasks), problems, failed) == ({"work"}, [], [])
    assert tasks["work"].queue == "heavy"
    assert not marker.exists()
    assert not [m for m in sys.modules if m.startswith(pkg)]
    assert str(tmp_path) not in sys.path  # nothing to import: the path is left as it was

"""Tasks: the ``@task`` decorator and the loader that finds tasks in the modules routes.yaml names.

There is no global registry: ``@task`` turns a function into a :class:`Task` object, and :func:`load_tasks`
imports the listed modules (and every submodule of a listed package) and collects the Task objects it finds.
I/O: imports Python modules.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from gateway.errors import Problem, TaskError
from gateway.execution.retry import RetryPolicy, parse_retry

DEFAULT_TIMEOUT = 600.0  # ten minutes per attempt, like Trigger.dev's default maxDuration guidance
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Task:
    """A task function plus its execution options. Calling it calls the function (handy in unit tests)."""

    id: str
    fn: Callable[..., Any]
    retry: RetryPolicy
    timeout: float | None
    queue: str
    concurrency: int | None
    concurrency_key: str | None
    priority: int

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def options(self) -> dict[str, Any]:
        """The task's defaults as the plain mapping stored on each run (routes may override parts)."""
        return {
            "retry": self.retry.as_dict(),
            "timeout": self.timeout,
            "queue": self.queue,
            "concurrency": self.concurrency,
            "priority": self.priority,
        }


def task(
    *,
    id: str,
    retry: Mapping[str, Any] | None = None,
    timeout: float | None = _UNSET,
    queue: str | None = None,
    concurrency: int | None = None,
    concurrency_key: str | None = None,
    priority: int = 0,
) -> Callable[[Callable[..., Any]], Task]:
    """Declare a task, in the spirit of Trigger.dev's ``task()``.

    Example: ``@task(id="deploy-preview", retry={"max_attempts": 5}, timeout=3600)``
    over ``async def deploy_preview(payload, ctx)``.
    Raises :class:`TaskError` at import time for bad arguments, so ``gateway check`` reports them.
    """
    problems: list[Problem] = []
    if not isinstance(id, str) or not id.strip():
        problems.append(Problem("id", f"expected a non-empty string, got {id!r}"))
    policy = parse_retry(retry, "retry", problems)
    resolved_timeout = DEFAULT_TIMEOUT if timeout is _UNSET else timeout
    if resolved_timeout is not None and (
        isinstance(resolved_timeout, bool)
        or not isinstance(resolved_timeout, int | float)
        or resolved_timeout <= 0
    ):
        problems.append(Problem("timeout", f"expected seconds > 0 or None, got {resolved_timeout!r}"))
    if concurrency is not None and (
        not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1
    ):
        problems.append(Problem("concurrency", f"expected a whole number >= 1, got {concurrency!r}"))
    if not isinstance(priority, int) or isinstance(priority, bool):
        problems.append(Problem("priority", f"expected a whole number, got {priority!r}"))
    if concurrency_key is not None and not (
        isinstance(concurrency_key, str) and concurrency_key.startswith("payload.")
    ):
        problems.append(
            Problem("concurrency_key", f"expected a path like 'payload.customer_id', got {concurrency_key!r}")
        )
    if problems:
        raise TaskError(f"@task(id={id!r}): " + "; ".join(str(p) for p in problems))

    def decorate(fn: Callable[..., Any]) -> Task:
        if not callable(fn):
            raise TaskError(f"@task(id={id!r}) must decorate a function, got {type(fn).__name__}")
        return Task(
            id=id,
            fn=fn,
            retry=policy,
            timeout=None if resolved_timeout is None else float(resolved_timeout),
            queue=queue or id,
            concurrency=concurrency,
            concurrency_key=concurrency_key,
            priority=priority,
        )

    return decorate


@dataclass(frozen=True, slots=True)
class FailedModule:
    """A task module that failed to import: its name, where routes.yaml lists it (``tasks[1]``), and the
    task ids its source declares (read from the text, as it cannot run), so a route naming one is told why."""

    name: str
    where: str
    task_ids: frozenset[str]


# `@task(id="charge")` or `@gateway.task(..., id='charge')`: found in the text of a module that cannot run.
_DECLARED = re.compile(
    r"@\s*(?:\w+\s*\.\s*)*task\s*\((?:[^()]|\([^()]*\))*?\bid\s*=\s*(['\"])([^'\"\\\n]+)\1"
)


def _declared_ids(name: str, exc: BaseException) -> frozenset[str]:
    """The task ids the files of module ``name`` declare, read as text (a module that fails cannot be run)."""
    files = [Path(exc.filename)] if isinstance(exc, SyntaxError) and exc.filename else []
    parent = name.rpartition(".")[0]
    if not parent or parent in sys.modules:  # else finding the spec would run the failing parent again
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.has_location and spec.origin:
            files.append(Path(spec.origin))
        for folder in (spec.submodule_search_locations or []) if spec is not None else []:
            files += sorted(Path(folder).rglob("*.py"))
    ids: set[str] = set()
    for file in dict.fromkeys(files):
        try:
            ids.update(m.group(2) for m in _DECLARED.finditer(file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return frozenset(ids)


def _own(filename: str, base: str) -> bool:
    return filename.startswith(os.path.join(base, ""))


# The code that imports a task module: a frame in it is never where the module went wrong.
_IMPORTERS = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # the gateway package
    os.path.dirname(os.path.abspath(importlib.__file__)),
)


def _importer(filename: str) -> bool:
    return filename.startswith("<frozen importlib") or any(_own(filename, d) for d in _IMPORTERS)


def _location(exc: BaseException, base: str) -> str:
    """Where a failed import went wrong, in the user's files: a SyntaxError's own file, line, column and text
    (its traceback is importlib's); else the deepest frame under ``base``, else the deepest one outside
    importlib and the gateway (``os.environ['X']`` fails in <frozen os>); "" when there is none."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        column = f":{exc.offset}" if exc.offset else ""
        text = (exc.text or "").strip()
        return f" ({exc.filename}:{exc.lineno}{column})" + (f": {text}" if text else "")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _importer(f.filename)]
    own = [f for f in frames if _own(f.filename, base)]
    if not (own or frames):
        return ""
    frame = (own or frames)[-1]
    return f" ({frame.filename}:{frame.lineno})"


def _failure(name: str, exc: BaseException, base: str) -> str:
    if isinstance(exc, TaskError):  # a bad @task(...): its message says what is wrong
        return f"{name}: {exc}"
    message = exc.msg if isinstance(exc, SyntaxError) else str(exc)  # str() repeats the file and line
    return f"importing {name!r} failed: {type(exc).__name__}: {message}{_location(exc, base)}"


def _modules(
    name: str, where: str, base: str, problems: list[Problem], failed: list[FailedModule]
) -> list[ModuleType]:
    """Module ``name`` and, for a package, each of its submodules, every one imported on its own: one that
    fails is a problem and loses only its own tasks."""
    found: list[ModuleType] = []

    def one(module_name: str) -> ModuleType | None:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            problems.append(Problem(where, _failure(module_name, exc, base)))
            failed.append(FailedModule(module_name, where, _declared_ids(module_name, exc)))
            return None
        found.append(module)
        return module

    module = one(name)
    if module is not None and hasattr(module, "__path__"):  # a package: import its submodules too
        # walk_packages imports subpackages again to look inside; one that failed is reported already
        for info in pkgutil.walk_packages(module.__path__, prefix=name + ".", onerror=lambda _: None):
            one(info.name)
    return found


def load_tasks(
    modules: list[str],
    base_dir: Path,
    problems: list[Problem],
    failed: list[FailedModule] | None = None,
) -> dict[str, Task]:
    """Import ``modules`` (relative to ``base_dir``) and return their tasks by id.

    Import failures and duplicate ids become problems at ``tasks[i]``; each module that failed is added to
    ``failed``. A module that fails loses only its own tasks, never those of the others.
    """
    failed = [] if failed is None else failed
    base = str(base_dir.resolve())
    if base not in sys.path:
        sys.path.insert(0, base)
    tasks: dict[str, tuple[Task, str]] = {}
    for i, name in enumerate(modules):
        where = f"tasks[{i}]"
        for module in _modules(name, where, base, problems, failed):
            for value in vars(module).values():
                if not isinstance(value, Task):
                    continue
                seen = tasks.get(value.id)
                if seen and seen[0] is not value:
                    problems.append(
                        Problem(
                            where,
                            f"task id {value.id!r} is defined twice "
                            f"({seen[1]} and {module.__name__}); task ids must be unique",
                        )
                    )
                else:
                    tasks[value.id] = (value, module.__name__)
    return {k: v for k, (v, _) in tasks.items()}

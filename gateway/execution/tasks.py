"""Tasks: the ``@task`` decorator and the loader that finds tasks in the modules routes.yaml names.

There is no global registry: ``@task`` turns a function into a :class:`Task` object, and :func:`load_tasks`
imports the listed modules (and every submodule of a listed package) and collects the Task objects it finds,
or, for intake whose tasks run elsewhere, reads their ``@task(...)`` declarations without running them.
I/O: imports Python modules (or reads their files).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from gateway.errors import Problem, TaskError
from gateway.execution import declared
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
            ids.update(declared.ids_in_text(file.read_text(encoding="utf-8")))
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
        return declared.syntax_location(exc)
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


def _declared_modules(
    name: str,
    where: str,
    path: list[str],
    problems: list[Problem],
    failed: list[FailedModule],
    read: dict[str, list[Task]],
) -> list[tuple[str, list[Task]]]:
    """Module ``name`` and, for a package, each of its submodules, read from their source and never run, each
    with its tasks, built by :func:`task` itself so they are validated exactly as the decorator does. One that
    fails is a problem and loses only its own tasks; ``read`` keeps each module's, for one listed twice."""
    try:
        sources = declared.find(name, path)
    except ModuleNotFoundError as exc:
        problems.append(Problem(where, f"reading {name!r} failed: ModuleNotFoundError: {exc}"))
        failed.append(FailedModule(name, where, frozenset()))
        return []
    for source in sources:
        if source.name in read:
            continue
        module = declared.read(source)
        errors, tasks = list(module.problems), []
        for d in module.declarations:
            try:
                tasks.append(task(**d.kwargs)(declared.stub(source.file, d)))
            except TaskError as exc:  # the message an import of the module would give
                errors.append(f"{source.name}: {exc}")
            except Exception as exc:  # an unknown or missing argument: the TypeError an import would raise
                errors.append(
                    f"reading {source.name!r} failed: {type(exc).__name__}: {exc} ({source.file}:{d.line})"
                )
        problems += [Problem(where, e) for e in errors]
        if errors:
            failed.append(FailedModule(source.name, where, module.task_ids))
        read[source.name] = [] if errors else tasks
    return [(s.name, read[s.name]) for s in sources]


def load_tasks(
    modules: list[str],
    base_dir: Path,
    problems: list[Problem],
    failed: list[FailedModule] | None = None,
    *,
    run_code: bool = True,
) -> dict[str, Task]:
    """Import ``modules`` (relative to ``base_dir``) and return their tasks by id; with ``run_code`` False,
    read their ``@task(...)`` declarations from the source instead, importing and running none of them (each
    task's function is then a stub that says so if called).

    Import (or read) failures and duplicate ids become problems at ``tasks[i]``; each module that failed is
    added to ``failed``. A module that fails loses only its own tasks, never those of the others.
    """
    failed = [] if failed is None else failed
    base = str(base_dir.resolve())
    path = sys.path if base in sys.path else [base, *sys.path]  # where an import would look
    if run_code and base not in sys.path:
        sys.path.insert(0, base)
    tasks: dict[str, tuple[Task, str]] = {}
    read: dict[str, list[Task]] = {}
    for i, name in enumerate(modules):
        where = f"tasks[{i}]"
        if run_code:
            found = [
                (m.__name__, [v for v in vars(m).values() if isinstance(v, Task)])
                for m in _modules(name, where, base, problems, failed)
            ]
        else:
            found = _declared_modules(name, where, path, problems, failed, read)
        for module_name, module_tasks in found:
            for value in module_tasks:
                seen = tasks.get(value.id)
                if seen and seen[0] is not value:
                    problems.append(
                        Problem(
                            where,
                            f"task id {value.id!r} is defined twice "
                            f"({seen[1]} and {module_name}); task ids must be unique",
                        )
                    )
                else:
                    tasks[value.id] = (value, module_name)
    return {k: v for k, (v, _) in tasks.items()}

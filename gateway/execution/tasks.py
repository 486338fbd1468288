"""Tasks: the ``@task`` decorator and the loader that finds tasks in the modules routes.yaml names.

There is no global registry: ``@task`` turns a function into a :class:`Task` object, and :func:`load_tasks`
imports the listed modules (and every submodule of a listed package) and collects the Task objects it finds.
I/O: imports Python modules.
"""

from __future__ import annotations

import importlib
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


def _walk(module: ModuleType) -> list[ModuleType]:
    found = [module]
    if hasattr(module, "__path__"):  # a package: import its submodules too
        for info in pkgutil.walk_packages(module.__path__, prefix=module.__name__ + "."):
            found.append(importlib.import_module(info.name))
    return found


def _blame(exc: BaseException, base: str) -> traceback.FrameSummary:
    """The frame to name for a failed import: the deepest one in the user's own files (under ``base``), not
    inside the standard library or a package it called (``os.environ['X']`` fails in <frozen os>)."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if f.filename.startswith(os.path.join(base, ""))]
    return (own or frames)[-1]


def load_tasks(modules: list[str], base_dir: Path, problems: list[Problem]) -> dict[str, Task]:
    """Import ``modules`` (relative to ``base_dir``) and return their tasks by id.

    Import failures and duplicate ids become problems at ``tasks[i]``.
    """
    base = str(base_dir.resolve())
    if base not in sys.path:
        sys.path.insert(0, base)
    tasks: dict[str, tuple[Task, str]] = {}
    for i, name in enumerate(modules):
        where = f"tasks[{i}]"
        try:
            imported = _walk(importlib.import_module(name))
        except TaskError as exc:
            problems.append(Problem(where, f"{name}: {exc}"))
            continue
        except Exception as exc:
            frame = _blame(exc, base)
            problems.append(
                Problem(
                    where,
                    f"importing {name!r} failed: {type(exc).__name__}: {exc} "
                    f"({frame.filename}:{frame.lineno})",
                )
            )
            continue
        for module in imported:
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

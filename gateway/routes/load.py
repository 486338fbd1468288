"""Load and validate routes.yaml into frozen values; report every problem at once, each with its path.

I/O: reads one file and imports the task modules it names (with ``run_tasks`` False, only reads their files).
The environment is passed in, never read here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError, Problem, unknown_key
from gateway.execution.retry import parse_retry
from gateway.execution.tasks import FailedModule, Task, load_tasks
from gateway.routes.mapping import compile_input
from gateway.routes.match import Route, compile_events, compile_when
from gateway.routes.retention import Retention, parse_retention
from gateway.routes.sources import SECRET_KEYS, Source, parse_sources, secret_paths, source_warnings
from gateway.routes.strict_yaml import Positions, position_of, read_yaml

TOP_KEYS = ("tasks", "queues", "sources", "routes", "retention")
ROUTE_KEYS = (
    "id",
    "source",
    "event",
    "when",
    "task",
    "input",
    "retry",
    "timeout",
    "queue",
    "concurrency",
    "priority",
)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class Config:
    file: Path
    sources: Mapping[str, Source]
    routes: tuple[Route, ...]
    tasks: Mapping[str, Task]
    warnings: tuple[str, ...] = field(default=())
    queues: Mapping[str, int] = field(default_factory=dict)  # queue name → how many runs at once
    retention: Retention = field(default_factory=Retention)  # how long records are kept, per source
    # Sources whose secrets name an unset variable, each with those problems: the file loads without them,
    # and the commands that use a source's secrets call require_secrets.
    unset_secrets: Mapping[str, tuple[Problem, ...]] = field(default_factory=dict)
    warning_sources: tuple[str, ...] = ()  # the source each of ``warnings`` is about

    def require_secrets(self, sources: Collection[str] | None = None) -> None:
        """Raise :class:`ConfigError` naming each unset secret variable of ``sources`` (default: every
        source): serve and check need them all, sign those of the source it signs for, the others none."""
        names = self.unset_secrets if sources is None else [s for s in self.unset_secrets if s in sources]
        problems = [p for name in names for p in self.unset_secrets[name]]
        if problems:
            raise ConfigError(problems, self.file.name)

    def warnings_for(self, sources: Collection[str] | None = None) -> tuple[str, ...]:
        """The warnings about ``sources`` (default: every source), for a command that uses them to show."""
        if sources is None:
            return self.warnings
        return tuple(w for w, s in zip(self.warnings, self.warning_sources, strict=True) if s in sources)


class _Env:
    """${VAR} / ${VAR:-default} interpolation that remembers which variables fell back to a default, and which
    secrets (``secret_sources``: their paths, to their source) name an unset variable: those are deferred."""

    def __init__(
        self, environ: Mapping[str, str], problems: list[Problem], secret_sources: Mapping[str, str]
    ) -> None:
        self.environ = environ
        self.problems = problems
        self.secret_sources = secret_sources
        self.defaulted: list[tuple[str, str]] = []  # (path, variable)
        self.unset: dict[str, list[Problem]] = {}  # source → the problems of its secrets' unset variables

    def expand(self, value: object, where: str) -> object:
        if isinstance(value, str):
            return _VAR.sub(lambda m: self._one(m, where), value)
        if isinstance(value, list):
            return [self.expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.expand(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        return value

    def _one(self, m: re.Match[str], where: str) -> str:
        name, default = m.group(1), m.group(2)
        if self.environ.get(name):
            return self.environ[name]
        if default is not None:  # like the shell: an unset *or empty* variable takes the default
            self.defaulted.append((where, name))
            return default
        if name in self.environ:
            return ""  # set but empty, without a default: used as given (and refused where empty is wrong)
        problem = Problem(
            where, f"environment variable {name} is not set (set it, or write ${{{name}:-default}})"
        )
        self.problems.append(problem)
        if where in self.secret_sources:  # a source's secret: only the commands that use that source need it
            self.unset.setdefault(self.secret_sources[where], []).append(problem)
        return m.group(0)  # keep the reference so no follow-on problem is reported for an empty value


def _route_options(raw: Mapping[str, Any], where: str, problems: list[Problem]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if "retry" in raw:
        spec = raw["retry"]
        policy = parse_retry(spec, f"{where}.retry", problems, check_order=False)
        given = spec if isinstance(spec, dict) else {}
        options["retry"] = {k: v for k, v in policy.as_dict().items() if k in given}
    if "timeout" in raw:
        t = raw["timeout"]
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < math.inf):
            problems.append(Problem(f"{where}.timeout", f"expected seconds > 0 or null, got {t!r}"))
        options["timeout"] = t
    if "queue" in raw:
        if not isinstance(raw["queue"], str) or not raw["queue"]:
            problems.append(Problem(f"{where}.queue", f"expected a queue name, got {raw['queue']!r}"))
        options["queue"] = raw["queue"]
    for key, floor in (("concurrency", 1), ("priority", None)):
        if key in raw:
            v = raw[key]
            if not isinstance(v, int) or isinstance(v, bool) or (floor is not None and v < floor):
                need = "a whole number >= 1" if floor else "a whole number"
                problems.append(Problem(f"{where}.{key}", f"expected {need}, got {v!r}"))
            options[key] = v
    return options


def _route(
    i: int,
    raw: object,
    sources: Mapping[str, Any],
    tasks: Mapping[str, Task],
    failed: list[FailedModule],
    problems: list[Problem],
) -> Route | None:
    where = f"routes[{i}]"
    if not isinstance(raw, dict):
        problems.append(Problem(where, "expected a mapping with id, source and task"))
        return None
    for key in raw:
        if key not in ROUTE_KEYS:
            problems.append(unknown_key(key, ROUTE_KEYS, f"{where}.{key}"))
    for key in ("id", "source", "task"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            problems.append(
                Problem(
                    f"{where}.{key}",
                    "missing (every route needs id, source and task)"
                    if key not in raw
                    else f"expected a string, got {raw[key]!r}",
                )
            )
    source, task_id = raw.get("source"), raw.get("task")
    if isinstance(source, str) and source and source not in sources:
        problems.append(_unknown_name("source", source, list(sources), f"{where}.source"))
    if isinstance(task_id, str) and task_id and task_id not in tasks:
        problems.append(_unknown_task(task_id, tasks, failed, f"{where}.task"))
    events = compile_events(raw.get("event"), f"{where}.event", problems)
    when = compile_when(raw.get("when"), f"{where}.when", problems)
    mapping = compile_input(raw.get("input"), f"{where}.input", problems)
    options = _route_options(raw, where, problems)
    task = tasks.get(task_id) if isinstance(task_id, str) else None
    if task is not None and options.get("retry"):
        merged = {**task.retry.as_dict(), **options["retry"]}
        if merged["min_timeout"] > merged["max_timeout"]:
            problems.append(
                Problem(
                    f"{where}.retry",
                    f"merged with the policy of task {task.id!r}, min_timeout ({merged['min_timeout']}) "
                    f"would be larger than max_timeout ({merged['max_timeout']})",
                )
            )
    if not all(isinstance(raw.get(k), str) and raw[k] for k in ("id", "source", "task")):
        return None
    return Route(
        id=raw["id"],
        source=raw["source"],
        task=raw["task"],
        events=events,
        when=when,
        input=mapping,
        options=options,
        index=i,
    )


def _unknown_name(kind: str, name: str, known: list[Any], where: str) -> Problem:
    known = [k for k in known if isinstance(k, str)]  # a name of another type is reported where it is defined
    hint = difflib.get_close_matches(name, known, n=1)
    tail = f"did you mean {hint[0]!r}?" if hint else f"known: {', '.join(sorted(known)) or 'none'}"
    return Problem(where, f"unknown {kind} {name!r} ({tail})")


def _unknown_task(task_id: str, tasks: Mapping[str, Task], failed: list[FailedModule], where: str) -> Problem:
    """An unknown task; when task modules failed to import, why it may be unknown rather than a guess."""
    if not failed:
        return _unknown_name("task", task_id, list(tasks), where)
    for module in failed:
        if task_id in module.task_ids:
            return Problem(
                where,
                f"unknown task {task_id!r} (its module {module.name} failed to import, see {module.where})",
            )
    hint = difflib.get_close_matches(task_id, list(tasks), n=1)
    tail = f"did you mean {hint[0]!r}?" if hint else f"known: {', '.join(sorted(tasks)) or 'none'};"
    if len(failed) == 1:
        missing = f"not counting the tasks of {failed[0].name}, which failed to import, see {failed[0].where}"
    else:
        names = ", ".join(f"{m.name} ({m.where})" for m in failed)
        missing = f"not counting the tasks of {names}, which failed to import"
    return Problem(where, f"unknown task {task_id!r} ({tail} {missing})")


def _task_modules(doc: Mapping[str, Any], problems: list[Problem]) -> list[str]:
    modules = doc.get("tasks", [])
    if isinstance(modules, str):
        modules = [modules]
    if not isinstance(modules, list) or not all(isinstance(m, str) and m for m in modules):
        problems.append(Problem("tasks", "expected a list of module names, e.g. [tasks]"))
        return []
    return modules


def _queues(raw: object, problems: list[Problem]) -> dict[str, int]:
    """``queues: {emails: {concurrency: 5}}``: limits shared by every task and route naming that queue."""
    if not isinstance(raw, dict):
        problems.append(Problem("queues", "expected a mapping like {emails: {concurrency: 5}}"))
        return {}
    limits: dict[str, int] = {}
    for name, spec in raw.items():
        where = f"queues.{name}"
        if not isinstance(spec, dict):
            problems.append(Problem(where, "expected a mapping like {concurrency: 5}"))
            continue
        for key in spec:
            if key != "concurrency":
                problems.append(unknown_key(key, ("concurrency",), f"{where}.{key}"))
        value = spec.get("concurrency")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(Problem(f"{where}.concurrency", f"expected a whole number >= 1, got {value!r}"))
        else:
            limits[str(name)] = value
    return limits


def _routes(
    raw_routes: object,
    source_names: Mapping[str, Any],
    tasks: Mapping[str, Task],
    failed: list[FailedModule],
    problems: list[Problem],
) -> list[Route]:
    if not isinstance(raw_routes, list):
        problems.append(Problem("routes", "expected a list of routes"))
        return []
    routes: list[Route] = []
    ids: dict[str, int] = {}
    for i, raw in enumerate(raw_routes):
        route = _route(i, raw, source_names, tasks, failed, problems)
        if route is None:
            continue
        if route.id in ids:
            first = ids[route.id]
            problems.append(
                Problem(f"routes[{i}].id", f"duplicate route id {route.id!r} (first used at routes[{first}])")
            )
        ids.setdefault(route.id, i)
        routes.append(route)
    return routes


def _warnings(
    label: str,
    defaulted: list[tuple[str, str]],
    secret_sources: Mapping[str, str],
    sources: Mapping[str, Source],
) -> list[tuple[str, str]]:
    """Each warning with the source it is about: development-default secrets, then what check should say."""
    warnings = [
        (
            secret_sources[at],
            f"{label}: {at} (${{{name}}}): using the development default; "
            "set the variable before real traffic",
        )
        for at, name in defaulted
        if at in secret_sources
    ]
    warnings += [(s.name, f"{label}: {w}") for s in sources.values() for w in source_warnings(s)]
    for s in sources.values():
        if not s.scheme.verified:
            warnings.append((s.name, f"{label}: sources.{s.name}: verify: none, deliveries are NOT verified"))
        elif not s.scheme.binds_body:
            warnings.append(
                (
                    s.name,
                    f"{label}: sources.{s.name}: verify: {s.scheme.name} does not sign the body "
                    "(it proves who sent a delivery, not that its content is unchanged)",
                )
            )
    return warnings


def _located(problems: list[Problem], positions: Positions) -> list[Problem]:
    """Each problem with the line and column of its path (or of the nearest parent in the file) when known."""
    return [
        p if p.position else dataclasses.replace(p, position=position_of(p.path, positions)) for p in problems
    ]


def parse(text: str, *, file: Path, environ: Mapping[str, str], run_tasks: bool = True) -> Config:
    """Validate routes.yaml text; raise :class:`ConfigError` listing every problem. ``run_tasks`` False reads
    the task modules' ``@task`` declarations without importing them (intake whose tasks run in workers)."""
    problems: list[Problem] = []
    label = file.name
    raw, positions = read_yaml(text, label)
    problems += [unknown_key(key, TOP_KEYS, str(key)) for key in raw if key not in TOP_KEYS]
    env = _Env(environ, problems, secret_paths(raw.get("sources")))
    doc = env.expand(raw, "")
    assert isinstance(doc, dict)
    failed: list[FailedModule] = []
    tasks = load_tasks(_task_modules(doc, problems), file.parent, problems, failed, run_code=run_tasks)
    # An empty section (`routes:`) is null; any other value of the wrong type, `[]` or `0` too, is reported.
    queues = _queues({} if doc.get("queues") is None else doc["queues"], problems)
    default_retention = parse_retention(doc.get("retention"), "retention", problems)
    raw_sources = {} if doc.get("sources") is None else doc["sources"]
    unset = [p.path for deferred in env.unset.values() for p in deferred]
    sources = parse_sources(raw_sources, problems, file.parent, unset)
    routes = _routes(
        [] if doc.get("routes") is None else doc["routes"],
        raw_sources if isinstance(raw_sources, dict) else {},
        tasks,
        failed,
        problems,
    )
    deferred = {id(p) for ps in env.unset.values() for p in ps}
    if any(id(p) not in deferred for p in problems):  # every problem is listed, the deferred ones too
        raise ConfigError(_located(problems, positions), label)
    warnings = _warnings(label, env.defaulted, secret_paths(raw_sources, SECRET_KEYS), sources)
    retention = Retention(
        default_retention,
        {name: s.retention for name, s in sources.items() if s.retention_set},
        tuple(sources),
    )
    return Config(
        file,
        sources,
        tuple(routes),
        tasks,
        tuple(w for _, w in warnings),
        queues,
        retention,
        {name: tuple(_located(ps, positions)) for name, ps in env.unset.items()},
        tuple(s for s, _ in warnings),
    )


def load(path: str | Path, environ: Mapping[str, str], *, run_tasks: bool = True) -> Config:
    """Read and validate a routes file. Raises ConfigError (a missing file is one too)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [Problem("", f"cannot read the file: {exc.strerror} (set --routes or GATEWAY_ROUTES)")], str(file)
        ) from None
    return parse(text, file=file, environ=environ, run_tasks=run_tasks)

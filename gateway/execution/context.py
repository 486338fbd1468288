"""What a task receives beside its payload: the run's identity and a log stored with the attempt.

Pure: no I/O. The clock is passed in; log lines are kept in memory, written with the attempt's end and, while
it runs, saved now and then by the executor's heartbeat (so an attempt that crashes keeps what it logged).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from gateway.model import Headers

MAX_LOG_LINES = 1000  # per attempt, like Hatchet's per-task cap; later lines are counted, not kept
MAX_LINE_CHARS = 4000


class RunLog:
    """``ctx.log("message")`` or ``ctx.log.info / warning / error / debug``: stored with the attempt.

    Safe to call from sync tasks running in worker threads.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        max_lines: int = MAX_LOG_LINES,
        echo: Callable[[str, str], None] | None = None,
    ) -> None:
        """``echo(level, text)``, when given, hears every line too (``gateway serve --task-logs``)."""
        self._clock = clock
        self._max = max_lines
        self._echo = echo
        self._lines: list[dict[str, Any]] = []
        self._dropped = 0
        self._lock = threading.Lock()
        self.changes = 0  # how many lines were added or dropped: what was saved is stale when this moved

    def _add(self, level: str, message: object, args: tuple[object, ...]) -> None:
        text = str(message) % args if args else str(message)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f"… ({len(text) - MAX_LINE_CHARS} more characters)"
        with self._lock:
            if len(self._lines) < self._max:
                self._lines.append({"ts": self._clock(), "level": level, "message": text})
            else:
                self._dropped += 1
            self.changes += 1
        if self._echo is not None:
            self._echo(level, text)

    def __call__(self, message: object, *args: object) -> None:
        self._add("info", message, args)

    def debug(self, message: object, *args: object) -> None:
        self._add("debug", message, args)

    def info(self, message: object, *args: object) -> None:
        self._add("info", message, args)

    def warning(self, message: object, *args: object) -> None:
        self._add("warning", message, args)

    def error(self, message: object, *args: object) -> None:
        self._add("error", message, args)

    def lines(self) -> tuple[dict[str, Any], ...]:
        with self._lock:
            lines = list(self._lines)
            if self._dropped:
                lines.append(
                    {
                        "ts": self._clock(),
                        "level": "warning",
                        "message": f"{self._dropped} more log lines were dropped (limit {self._max})",
                    }
                )
        return tuple(lines)


SpanFactory = Callable[[str, Mapping[str, Any]], AbstractContextManager[Any]]


def no_span(name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[None]:
    """What ``ctx.span`` gives when tracing is off: a context manager that records nothing."""
    return nullcontext()


@dataclass(frozen=True, slots=True)
class Context:
    """The second argument of every task: ``async def my_task(payload, ctx)``.

    ``idempotency_key`` stays the same across the attempts and reruns of one run: pass it to the APIs you call
    (Stripe's ``Idempotency-Key``, …) so that a retried side effect happens once.
    """

    run_id: str
    event_id: str
    task_id: str
    source: str
    event_type: str | None
    attempt: int  # 1 for the first attempt
    idempotency_key: str
    headers: Headers
    log: RunLog
    trace_id: str | None = None  # the run's trace (32 hex digits), when it has one
    traceparent: str | None = None  # this attempt's span as a W3C traceparent: send it downstream
    span_factory: SpanFactory = no_span

    def span(self, name: str, **attributes: Any) -> AbstractContextManager[Any]:
        """A span of the task's own, a child of this attempt's span::

            with ctx.span("charge customer", customer=payload["id"]) as span:
                ...

        Spans started with OpenTelemetry's own API inside a task nest under the attempt the same way.
        Records nothing when tracing is off.
        """
        return self.span_factory(name, attributes)

"""Structured logs: one JSON (or plain, for a terminal) line per request and per attempt end, with secrets
redacted from every line. I/O: ``setup`` configures the process's root logger; the lines go to its stream.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable
from typing import Any, TextIO

from pythonjsonlogger.json import JsonEncoder, JsonFormatter

from gateway.model import COMPLETED, CRASHED, FAILED, QUEUED, RETRYING, TIMED_OUT
from gateway.report import AttemptReport, Delivery

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
FORMATS = ("json", "plain", "auto")
REDACTED = "[redacted]"
# Shorter secrets are not replaced inside text: "test" or "abc1" would shred ordinary words and ids, and
# hiding them would hide nothing an attacker could not guess anyway.
MIN_SECRET = 6
# Chatty at INFO/DEBUG and of no use to an operator; raised to WARNING (or the root level, if higher).
NOISY = ("hpack", "urllib3", "httpx", "httpcore", "aiosqlite")
# Loggers whose INFO lines matter (server start/stop, export failures): they follow the root level.
FOLLOW_ROOT = ("hypercorn.error", "opentelemetry")

# Every attribute a LogRecord has by itself; any other attribute came from ``extra=`` and is a field.
RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}

request_log = logging.getLogger("gateway.request")
run_log = logging.getLogger("gateway.run")
_traceback = logging.Formatter()  # only its formatException/formatStack are used


def setup(*, level: str = "info", fmt: str = "auto", stream: TextIO, secrets: Iterable[str] = ()) -> None:
    """Send every log line of the process to ``stream``, as JSON or plain text, with ``secrets`` redacted.

    Calling it again replaces the handler it installed before; other handlers (pytest's caplog) stay.
    """
    number = LEVELS.get(level.lower())
    if number is None:
        raise ValueError(f"unknown log level {level!r} (choose one of: {', '.join(LEVELS)})")
    if fmt.lower() not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (choose one of: {', '.join(FORMATS)})")
    fmt = fmt.lower()
    if fmt == "auto":
        fmt = "plain" if stream.isatty() else "json"
    handler = _Handler(stream)
    handler.setFormatter(PlainFormatter() if fmt == "plain" else JsonLineFormatter())
    handler.addFilter(Redact(secrets))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(number)
    for name in NOISY:
        logging.getLogger(name).setLevel(max(number, logging.WARNING))
    for name in FOLLOW_ROOT:
        logging.getLogger(name).setLevel(number)


def delivery(
    d: Delivery, *, method: str, path: str, seconds: float, trace_id: str | None, remote: str | None
) -> None:
    """Log one request on a hook path. Never its headers, body, signature or query string."""
    level = logging.WARNING if d.status >= 500 else logging.INFO
    if not request_log.isEnabledFor(level):
        return
    path = path.partition("?")[0]
    ms = round(seconds * 1000, 2)
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "status": d.status,
        "outcome": d.outcome,
        "source": d.source,
        "reason": d.reason,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "runs": d.runs,
        "ms": ms,
        "trace_id": trace_id,
        "remote": remote,
    }
    if d.budget:
        fields["budget_pct"] = round(ms / (d.budget * 10))  # ms / (budget s * 1000 ms) * 100 %
    message = f"{method} {path} {d.status} {d.outcome}" + (f" ({d.reason})" if d.reason else "")
    fields["_said"] = _REQUEST_SAID
    request_log.log(level, message, extra={k: v for k, v in fields.items() if v is not None})


_REQUEST_SAID = frozenset({"method", "path", "status", "outcome", "reason"})
_ATTEMPT_SAID = frozenset({"run_id", "attempt", "task", "outcome", "retry_in"})


def attempt(r: AttemptReport) -> None:
    """Log how one attempt ended and what that does to its run."""
    if r.status == COMPLETED:
        level = logging.INFO
    elif r.status in (FAILED, TIMED_OUT, CRASHED):
        level = logging.ERROR
    else:  # retrying, queued again after an interruption, canceled
        level = logging.WARNING
    if not run_log.isEnabledFor(level):
        return
    retry_in = round(r.retry_in, 1) if r.status == RETRYING and r.retry_in is not None else None
    head = f"run {r.run_id} attempt {r.attempt} of task {r.task_id} {r.outcome.replace('_', ' ')}"
    if r.status == COMPLETED and r.outcome == COMPLETED:
        message = head
    elif r.status == RETRYING:
        message = head + ("; retrying" if retry_in is None else f"; retrying in {retry_in:.1f} s")
    elif r.status == QUEUED:
        message = head + "; run queued again"
    else:
        message = head + f"; run {r.status.replace('_', ' ')}"
    fields: dict[str, Any] = {
        "run_id": r.run_id,
        "event_id": r.event_id,
        "task": r.task_id,
        "queue": r.queue,
        "attempt": r.attempt,
        "outcome": r.outcome,
        "status": r.status,
        "ms": round(r.seconds * 1000, 2),
        "trace_id": r.trace_id,
        "error_type": r.error_type,
        "retry_in": retry_in,
        "_said": _ATTEMPT_SAID,
    }
    run_log.log(level, message, extra={k: v for k, v in fields.items() if v is not None})


class Scrub:
    """``scrub(text)``: ``text`` with every configured secret of at least MIN_SECRET characters replaced by
    ``[redacted]``. The executor scrubs what it stores of a failure (message, traceback, ctx.log lines), so a
    task that puts a secret into an exception does not leak it to the database, the API or a span."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        kept = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)  # longest first
        self.pattern = re.compile("|".join(map(re.escape, kept))) if kept else None

    def __call__(self, text: str) -> str:
        return text if self.pattern is None else self.pattern.sub(REDACTED, text)


class Redact(logging.Filter):
    """Replace every configured secret of at least MIN_SECRET characters with ``[redacted]`` in a record's
    message, its string ``extra`` fields and its exception text. Never raises; never drops a line."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._pattern = Scrub(secrets).pattern

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._redact(record)
        except Exception:  # a filter that raises loses the line; a line half-redacted is still better
            record.msg, record.args = "(this line's text was left out: it could not be redacted)", ()
        return True

    def _redact(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep both, as text
            message = f"{record.msg!s} (log arguments that did not fit: {record.args!r})"
        if record.exc_info and not record.exc_text:
            record.exc_text = _traceback.formatException(record.exc_info)
        record.msg, record.args = message, ()
        if self._pattern is None:
            return
        fields = record.__dict__
        names = [k for k, v in fields.items() if isinstance(v, str) and (k not in RESERVED or k in _REDACTED)]
        # One scan of everything first: most lines hold no secret; one search costs less than one per field.
        if self._pattern.search("\0".join([fields[k] for k in names])) is None:
            return
        for key in names:
            fields[key] = self._pattern.sub(REDACTED, fields[key])


# What Redact rewrites besides the extra fields (``message``: a formatter that ran before set it).
_REDACTED = frozenset({"msg", "message", "exc_text", "stack_info"})


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: ts, level, logger, message, the fields, then ``exception`` if any."""

    def __init__(self) -> None:
        super().__init__(json_serializer=_serialize)
        self.stamp = Timestamp()

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["ts"] = self.stamp(record)
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message
        for key, value in message_dict.items():  # a dict logged as the message
            if key not in ("exc_info", "stack_info"):
                log_data[key] = value
        for key, value in record.__dict__.items():  # the extra fields, as merge_record_extra, but faster
            if key not in RESERVED and key[:1] != "_":
                log_data[key] = value
        # record.exc_text is what Redact left; the base class formatted exc_info afresh, unredacted.
        exception = record.exc_text or message_dict.get("exc_info")
        if exception:
            log_data["exception"] = exception
        if record.stack_info:
            log_data["stack"] = record.stack_info


class Timestamp:
    """``2026-11-24T10:00:00.123Z`` (ISO 8601, UTC, milliseconds) for a record; remembers the last second's
    text, which most lines share."""

    def __init__(self) -> None:
        self._last = (-1, "")

    def __call__(self, record: logging.LogRecord) -> str:
        second, text = self._last
        if int(record.created) != second:
            second = int(record.created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._last = (second, text)
        return f"{text}.{int(record.msecs):03d}Z"


# One encoder for every line (json.dumps would build one per call); it knows datetimes, dataclasses, bytes.
_encode = JsonEncoder(ensure_ascii=False).encode


def _serialize(log_data: dict[str, Any], **_: Any) -> str:
    return _encode(log_data)


class PlainFormatter(logging.Formatter):
    """``2026-11-24T10:00:00.123Z INFO gateway.request: POST /hooks/github 202 accepted runs=2 ms=1.84``: the
    message, then the fields it does not already say, as key=value; None fields are left out."""

    def __init__(self) -> None:
        super().__init__()
        self.stamp = Timestamp()

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        said = record.__dict__.get("_said", ())
        parts = [f"{self.stamp(record)} {record.levelname} {record.name}: {record.message}"]
        for key, value in record.__dict__.items():
            if key in RESERVED or key.startswith("_") or key in said or value is None:
                continue
            parts.append(f"{key}={_plain(value)}")
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


_QUOTE = re.compile(r'[\s"=]')


def _plain(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or _QUOTE.search(text):
        return json.dumps(text, ensure_ascii=False)
    return text


class _Handler(logging.StreamHandler[TextIO]):
    """The handler ``setup`` installs; its class tells it apart from handlers others installed."""

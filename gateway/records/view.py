"""Plain views of stored records for people and machines (CLI tables, ``--json``). Pure: no I/O."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.model import (
    ABORTED,
    EXECUTING,
    FAILED,
    JOB_RUNNING,
    TIMED_OUT,
    Attempt,
    Event,
    Job,
    Rejection,
    Run,
)
from gateway.routes.ingest import REDACTED
from gateway.telemetry.traceparent import trace_id_of

BODY_PREVIEW = 4096  # characters of a payload shown by `gateway show` (the stored body is complete)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_summary(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "received_at": iso(event.received_at),
        "source": event.source,
        "event_type": event.event_type,
        "status": event.status,
        "verification": event.verification,
        "dedupe_key": event.dedupe_key,
        "trace_id": trace_id_of(event.traceparent),
        "replay_of": event.replay_of,
    }


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "task": run.task_id,
        "route": run.route_id,
        "status": run.status,
        "attempts": run.attempts,
        "crashes": run.crashes,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration": round(run.duration, 3),
        "event_id": run.event_id,
        "trace_id": trace_id_of(run.traceparent),
    }


def attempt_summary(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "outcome": attempt.outcome,
        "started_at": iso(attempt.started_at),
        "finished_at": iso(attempt.finished_at),
        "duration": None if attempt.duration is None else round(attempt.duration, 3),
        "error_type": attempt.error_type,
        "error_message": attempt.error_message,
        "traceback": attempt.traceback,
        "logs": [{**line, "ts": iso(line.get("ts"))} for line in attempt.logs],
        "worker": attempt.worker_id,
    }


def run_detail(run: Run, attempts: Sequence[Attempt]) -> dict[str, Any]:
    """Everything about one run; the key ``_text`` holds the same for a terminal."""
    detail = {
        **run_summary(run),
        "queue": run.queue,
        "priority": run.priority,
        "concurrency_key": run.concurrency_key,
        "idempotency_key": run.idempotency_key or run.id,
        "input": run.input,
        "output": run.output,
        "error": run.error,
        "options": dict(run.options),
        "worker": run.worker_id,
        "attempt_history": [attempt_summary(a) for a in attempts],
    }
    lines = [
        f"run          {run.id}",
        f"task         {run.task_id} (route {run.route_id or '-'}, queue {run.queue})",
        f"event        {run.event_id}",
        f"status       {run.status}",
        f"attempts     {run.attempts} counted, {run.crashes} crash(es); {run.duration:.3f} s executing",
        f"created      {iso(run.created_at)}",
        f"started      {iso(run.started_at) or '-'}",
        f"finished     {iso(run.finished_at) or '-'}",
        f"trace        {trace_id_of(run.traceparent) or '-'}",
        "input",
        *["  " + line for line in _json_block(run.input).splitlines()],
    ]
    if run.output is not None:
        lines += ["output", *["  " + line for line in _json_block(run.output).splitlines()]]
    if run.error:
        lines.append(f"error        {run.error.get('type')}: {run.error.get('message')}")
    for a in attempts:
        took = "-" if a.duration is None else f"{a.duration:.3f} s"
        where = f" on {a.worker_id}" if a.worker_id else ""
        lines.append(f"attempt {a.number:<4} {a.outcome or EXECUTING} at {iso(a.started_at)} ({took}){where}")
        if a.error_type:
            lines.append(f"  error: {a.error_type}: {a.error_message}")
        lines += [f"  {iso(x.get('ts'))} {x.get('level', 'info'):<7} {x.get('message')}" for x in a.logs]
        if a.traceback and a.outcome in (FAILED, TIMED_OUT, ABORTED):
            lines += ["  " + t for t in a.traceback.rstrip().splitlines()[-12:]]
    detail["_text"] = "\n".join(lines)
    return detail


def _json_block(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if len(text) > BODY_PREVIEW:
        text = text[:BODY_PREVIEW] + f"\n… ({len(text) - BODY_PREVIEW} more characters)"
    return text


def rejection_summary(rejection: Rejection) -> dict[str, Any]:
    return {
        "id": rejection.id,
        "received_at": iso(rejection.received_at),
        "source": rejection.source,
        "reason": rejection.reason,
        "detail": rejection.detail,
        "remote_addr": rejection.remote_addr,
        "body_size": rejection.body_size,
        "body_prefix": rejection.body_prefix.decode("utf-8", errors="replace"),
        "replayable": rejection.kept > 0,  # its whole request is kept: `gateway replay --rejection ID`
        "kept_bytes": rejection.kept,
        "dropped": rejection.dropped,
        "dropped_at": iso(rejection.dropped_at),
        "recovered_as": rejection.recovered_as,
        "recovery": rejection.recovery,
        "recovered_at": iso(rejection.recovered_at),
    }


SIGNATURE_SHOWN = "[signature, not shown]"


def shown_headers(event: Event, hide: Collection[str] = frozenset()) -> list[tuple[str, str]]:
    """An event's headers as people are shown them: the values of those named in ``hide`` (lowercased:
    Service.signature_headers) replaced by SIGNATURE_SHOWN, but for those stored redacted already (a
    credential), which say so."""
    return [
        (k, SIGNATURE_SHOWN if k.lower() in hide and v != REDACTED else v) for k, v in event.headers.pairs
    ]


def event_detail(event: Event, runs: Sequence[Run], *, hide: Collection[str] = frozenset()) -> dict[str, Any]:
    """Everything about one event, its headers as :func:`shown_headers` shows them; the key ``_text``
    holds the same for a terminal."""
    pairs = shown_headers(event, hide)
    detail = {
        **event_summary(event),
        "method": event.method,
        "url": event.url,
        "remote_addr": event.remote_addr,
        "headers": [list(pair) for pair in pairs],
        "query": [list(pair) for pair in event.query],
        "payload_kind": event.payload.kind,
        "payload": event.payload.data,
        "body_size": len(event.body),
        "runs": [run_summary(r) for r in runs],
    }
    payload = _json_block(event.payload.data) if event.payload.kind != "raw" else str(event.payload.data)
    if len(payload) > BODY_PREVIEW:
        payload = payload[:BODY_PREVIEW] + f"\n… ({len(payload) - BODY_PREVIEW} more characters)"
    lines = [
        f"event        {event.id}",
        f"source       {event.source}",
        f"type         {event.event_type or '-'}",
        f"status       {event.status}",
        f"received     {iso(event.received_at)} from {event.remote_addr or '-'}",
        f"verification {event.verification}",
        f"dedupe key   {event.dedupe_key or '-'}",
        f"trace        {trace_id_of(event.traceparent) or '-'}",
        f"request      {event.method} {event.url} ({len(event.body)} bytes, {event.payload.kind})",
        "headers",
        *[f"  {k}: {v}" for k, v in pairs],
        "payload",
        *["  " + line for line in payload.splitlines()],
        "runs" if runs else "runs         none (no route matched; the event is kept)",
        *[f"  {r.id}  {r.task_id:<24} {r.status:<10} attempts={r.attempts}" for r in runs],
    ]
    detail["_text"] = "\n".join(lines)
    return detail


def job_json(job: Job) -> dict[str, Any]:
    """A bulk job for people and machines (the CLI's --json and the admin API); ``progress`` is done/total
    (1.0 for a job that selected nothing); ``worked_by`` the process holding a running job."""
    chosen = {k: getattr(job.filter, k) for k in job.filter.__slots__}
    shown = {k: (iso(v) if k in ("since", "until") else v) for k, v in chosen.items() if v is not None}
    plain = ("id", "kind", "status", "total", "done", "created", "error", "requested_by")
    return {
        **{name: getattr(job, name) for name in plain},
        "filter": shown,
        "progress": round(job.done / job.total, 4) if job.total else 1.0,
        **{name: iso(getattr(job, name)) for name in ("created_at", "updated_at", "finished_at")},
        "worked_by": job.owner if job.status == JOB_RUNNING else None,
    }


def render_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A fixed-width text table of ``columns``; '' when there are no rows."""
    if not rows:
        return ""
    cells = [[("-" if row.get(c) is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    head = "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join([head.rstrip(), *body])

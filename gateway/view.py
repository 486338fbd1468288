"""Plain views of stored records for people and machines (CLI tables, ``--json``). Pure: no I/O."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.model import Event, Rejection, Run

BODY_PREVIEW = 4096  # characters of a payload shown by `gateway show` (the stored body is complete)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_row(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "received_at": iso(event.received_at),
        "source": event.source,
        "event_type": event.event_type,
        "status": event.status,
        "verification": event.verification,
        "dedupe_key": event.dedupe_key,
    }


def run_row(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "task": run.task_id,
        "route": run.route_id,
        "status": run.status,
        "attempts": run.attempts,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }


def rejection_row(rejection: Rejection) -> dict[str, Any]:
    return {
        "id": rejection.id,
        "received_at": iso(rejection.received_at),
        "source": rejection.source,
        "reason": rejection.reason,
        "detail": rejection.detail,
        "remote_addr": rejection.remote_addr,
        "body_size": rejection.body_size,
        "body_prefix": rejection.body_prefix.decode("utf-8", errors="replace"),
    }


def event_detail(event: Event, runs: Sequence[Run]) -> dict[str, Any]:
    """Everything about one event; the key ``_text`` holds the same for a terminal."""
    detail = {
        **event_row(event),
        "method": event.method,
        "url": event.url,
        "remote_addr": event.remote_addr,
        "headers": [list(pair) for pair in event.headers.pairs],
        "query": [list(pair) for pair in event.query],
        "payload_kind": event.payload.kind,
        "payload": event.payload.data,
        "body_size": len(event.body),
        "replay_of": event.replay_of,
        "runs": [run_row(r) for r in runs],
    }
    payload = (
        json.dumps(event.payload.data, indent=2, ensure_ascii=False)
        if event.payload.kind != "raw"
        else str(event.payload.data)
    )
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
        f"request      {event.method} {event.url} ({len(event.body)} bytes, {event.payload.kind})",
        "headers",
        *[f"  {k}: {v}" for k, v in event.headers.pairs],
        "payload",
        *["  " + line for line in payload.splitlines()],
        "runs" if runs else "runs         none (no route matched; replay it after changing routes.yaml)",
        *[f"  {r.id}  {r.task_id:<24} {r.status:<10} attempts={r.attempts}" for r in runs],
    ]
    detail["_text"] = "\n".join(lines)
    return detail


def render_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A fixed-width text table of ``columns``; '' when there are no rows."""
    if not rows:
        return ""
    cells = [[("-" if row.get(c) is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    head = "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join([head.rstrip(), *body])

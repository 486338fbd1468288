"""The store's codec: domain dataclasses to and from flat database rows (JSON for nested values).

Pure: no I/O. ``*_to_row`` encodes a value for writing, ``*_from_row`` decodes a row read back. The SQLite
store uses it; a PostgreSQL store can reuse it as it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from gateway.model import (
    COMPLETED,
    EVENT_STATUSES,
    EXECUTING,
    FINAL_STATUSES,
    LIVE,
    LOST,
    REPLAY,
    RUN_STATUSES,
    STOPPED,
    UNFINISHED_STATUSES,
    Attempt,
    AttemptEnd,
    Claim,
    Event,
    EventFilter,
    Headers,
    Inbound,
    Job,
    Payload,
    Rejection,
    Run,
    RunFilter,
    TaskWorker,
)


class Row(Protocol):
    """A result row addressable by column name (``sqlite3.Row`` is one)."""

    def __getitem__(self, key: str, /) -> Any: ...


def event_to_row(e: Event) -> dict[str, Any]:
    """Raises ValueError for an unknown status, TypeError for a payload JSON cannot hold."""
    if e.status not in EVENT_STATUSES:
        raise ValueError(f"event status {e.status!r} is not one of {', '.join(map(repr, EVENT_STATUSES))}")
    return {
        "id": e.id,
        "source": e.source,
        "event_type": e.event_type,
        "dedupe_key": e.dedupe_key,
        "status": e.status,
        "received_at": e.received_at,
        "method": e.method,
        "url": e.url,
        "headers": _json(e.headers.pairs),
        "query": _json(e.query),
        "body": bytes(e.body),
        "payload_kind": e.payload.kind,
        # A payload that is the body parsed is stored once, as the body: event_from_row parses it again.
        "payload": "" if e.payload.parsed else _json(e.payload.data),
        "verification": e.verification,
        "remote_addr": e.remote_addr,
        "replay_of": e.replay_of,
        "traceparent": e.traceparent,
    }


def run_to_row(r: Run, event: Event | None = None) -> dict[str, Any]:
    """Raises ValueError for an unknown status, TypeError for input or output JSON cannot hold.

    With the run's ``event``: an input that is the event's whole payload, parsed from its body, is stored
    as the body's text, which is already its JSON (no second encoding).
    """
    if r.status not in RUN_STATUSES:
        raise ValueError(
            f"run {r.id} has unknown status {r.status!r}; expected one of {sorted(RUN_STATUSES)}"
        )
    return {
        "id": r.id,
        "event_id": r.event_id,
        "route_id": r.route_id,
        "task_id": r.task_id,
        "input": _input_text(r, event),
        "status": r.status,
        "queue": r.queue,
        "priority": r.priority,
        "concurrency_key": r.concurrency_key,
        "options": _json(dict(r.options)),
        "attempts": r.attempts,
        "crashes": r.crashes,
        "created_at": r.created_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "output": None if r.output is None else _json(r.output),
        "error": None if r.error is None else _json(dict(r.error)),
        "duration": r.duration,
        "idempotency_key": r.idempotency_key,
        "rerun_of": r.rerun_of,
        "traceparent": r.traceparent,
        "span_id": r.span_id,
    }


def _input_text(r: Run, event: Event | None) -> str:
    if event is not None and event.payload.parsed and r.input is event.payload.data:
        try:
            text = event.body.decode("utf-8")
        except UnicodeDecodeError:  # JSON in UTF-16 or UTF-32: encoded like any other input
            pass
        else:
            if not text.startswith("\ufeff"):  # json.loads takes a BOM in bytes, not in text
                return text
    return _json(r.input)


def key_of(row: dict[str, Any]) -> tuple[str, str] | None:
    """A run row's (task_id, concurrency_key) if per-key order applies to it: keyed and unfinished."""
    if row["concurrency_key"] is None or row["status"] not in UNFINISHED_STATUSES:
        return None
    return (row["task_id"], row["concurrency_key"])


def with_blocked(
    run_rows: Sequence[dict[str, Any]], busy: Collection[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The rows of one batch with ``blocked`` set, in order.

    A keyed, unfinished run is blocked (1) when its (task, key) is in ``busy`` (it has an unfinished run
    stored already) or an earlier row of the batch has it; every other run is not (0).
    """
    taken = set(busy)
    marked: list[dict[str, Any]] = []
    for row in run_rows:
        key = key_of(row)
        marked.append({**row, "blocked": int(key is not None and key in taken)})
        if key is not None:
            taken.add(key)
    return marked


def attempt_end_to_row(end: AttemptEnd) -> dict[str, Any]:
    """The parameters of ``end_attempt`` and ``end_run_attempt`` (``spent`` is added by the store).

    Raises ValueError for a next status that is unknown or ``executing``, TypeError for output or logs
    JSON cannot hold.
    """
    if end.run_status not in RUN_STATUSES or end.run_status == EXECUTING:
        raise ValueError(
            f"run {end.run_id} attempt {end.attempt}: cannot end with run status {end.run_status!r}; "
            f"expected one of {sorted(set(RUN_STATUSES) - {EXECUTING})}"
        )
    error = dict(end.error) if end.error is not None else {}
    completed = end.run_status == COMPLETED
    return {
        "run_id": end.run_id,
        "attempt": end.attempt,
        "finished_at": end.finished_at,
        "outcome": end.outcome,
        "error_type": error.get("type"),
        "error_message": error.get("message"),
        "traceback": error.get("traceback"),
        "logs": logs_to_json(end.logs),
        "status": end.run_status,
        "counts": 1 if end.counts else 0,
        "available_at": end.available_at,
        "output": _json(end.output) if completed and end.output is not None else None,
        "error": _json(error) if end.error is not None and not completed else None,
        "run_finished_at": end.finished_at if end.run_status in FINAL_STATUSES else None,
    }


def logs_to_json(lines: Sequence[Mapping[str, Any]]) -> str:
    """An attempt's log lines as stored. Raises TypeError for a value JSON cannot hold."""
    return _json([dict(line) for line in lines])


def rejection_to_row(r: Rejection) -> dict[str, Any]:
    """With its request, when one is kept: ``kept_bytes`` is what it takes (body, URL, headers, query)."""
    row = {
        "source": r.source,
        "reason": r.reason,
        "detail": r.detail,
        "received_at": r.received_at,
        "remote_addr": r.remote_addr,
        "body_prefix": bytes(r.body_prefix),
        "body_size": r.body_size,
        **NO_REQUEST,
        "dropped": r.dropped,
        "dropped_at": r.dropped_at,
    }
    request = r.request
    if request is not None:
        headers, query = _json(request.headers.pairs), _json(request.query)
        body = bytes(request.body)
        kept = len(body) + len(headers) + len(query) + len(request.url.encode())
        row |= {"method": request.method, "url": request.url, "headers": headers, "query": query}
        row |= {"body": body, "kept_bytes": kept}
    return row


# The columns of a rejection row that hold no request (none kept, or dropped).
NO_REQUEST: dict[str, Any] = {
    "method": None,
    "url": None,
    "headers": None,
    "query": None,
    "body": None,
    "kept_bytes": 0,
}


def event_from_row(row: Row) -> Event:
    return Event(
        id=row["id"],
        source=row["source"],
        event_type=row["event_type"],
        dedupe_key=row["dedupe_key"],
        status=row["status"],
        received_at=row["received_at"],
        method=row["method"],
        url=row["url"],
        headers=Headers(_pairs(row["headers"])),
        query=_pairs(row["query"]),
        body=bytes(row["body"]),
        payload=_payload(row["payload_kind"], row["payload"], row["body"]),
        verification=row["verification"],
        remote_addr=row["remote_addr"],
        replay_of=row["replay_of"],
        traceparent=row["traceparent"],
    )


def run_from_row(row: Row) -> Run:
    return Run(
        id=row["id"],
        event_id=row["event_id"],
        route_id=row["route_id"],
        task_id=row["task_id"],
        input=json.loads(row["input"]),
        status=row["status"],
        created_at=row["created_at"],
        queue=row["queue"],
        priority=row["priority"],
        concurrency_key=row["concurrency_key"],
        options=json.loads(row["options"]),
        attempts=row["attempts"],
        crashes=row["crashes"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        output=None if row["output"] is None else json.loads(row["output"]),
        error=None if row["error"] is None else json.loads(row["error"]),
        duration=row["duration"],
        idempotency_key=row["idempotency_key"],
        rerun_of=row["rerun_of"],
        traceparent=row["traceparent"],
        span_id=row["span_id"],
        worker_id=row["worker_id"],
    )


def claim_from_row(row: Row, *, now: float, run: Run | None = None) -> Claim:
    """A ``claim_candidates`` row as the run it becomes once claimed at ``now`` (``run``: the row's run,
    when the caller has decoded it already)."""
    run = run_from_row(row) if run is None else run
    started_at = now if run.started_at is None else run.started_at
    return Claim(
        run=replace(run, status=EXECUTING, started_at=started_at),
        attempt=row["next_attempt"],
        source=row["source"],
        event_type=row["event_type"],
        headers=Headers(_pairs(row["headers"])),
    )


def attempt_from_row(row: Row) -> Attempt:
    return Attempt(
        run_id=row["run_id"],
        number=row["number"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        outcome=row["outcome"],
        error_type=row["error_type"],
        error_message=row["error_message"],
        traceback=row["traceback"],
        logs=tuple(json.loads(row["logs"])),
        worker_id=row["worker_id"],
    )


def worker_from_row(row: Row, *, live_since: float) -> TaskWorker:
    """A ``workers`` row (with its ``running`` count), its status judged against ``live_since``: a worker
    whose last heartbeat is older is lost."""
    stopped_at = row["stopped_at"]
    live = row["heartbeat_at"] >= live_since
    status = STOPPED if stopped_at is not None else LIVE if live else LOST
    queues = row["queues"]
    return TaskWorker(
        id=row["id"],
        kind=row["kind"],
        host=row["host"],
        pid=row["pid"],
        process=row["process"],
        tasks=tuple(json.loads(row["tasks"])),
        queues=None if queues is None else tuple(json.loads(queues)),
        concurrency=row["concurrency"],
        version=row["version"],
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        stopped_at=stopped_at,
        running=row["running"],
        status=status,
    )


def worker_to_row(worker: TaskWorker) -> dict[str, Any]:
    return {
        "id": worker.id,
        "kind": worker.kind,
        "host": worker.host,
        "pid": worker.pid,
        "process": worker.process,
        "tasks": json.dumps(sorted(worker.tasks)),
        "queues": None if worker.queues is None else json.dumps(sorted(worker.queues)),
        "concurrency": worker.concurrency,
        "version": worker.version,
        "now": worker.started_at,
    }


def rejection_from_row(row: Row, *, with_request: bool = False) -> Rejection:
    """``with_request``: the row has the request's columns too (None when it keeps none)."""
    request = None
    if with_request and row["method"] is not None:
        request = Inbound(
            method=row["method"],
            url=row["url"],
            headers=Headers(_pairs(row["headers"])),
            body=bytes(row["body"]),
            query=_pairs(row["query"]),
            remote_addr=row["remote_addr"],
        )
    return Rejection(
        source=row["source"],
        reason=row["reason"],
        detail=row["detail"],
        received_at=row["received_at"],
        remote_addr=row["remote_addr"],
        body_prefix=bytes(row["body_prefix"]),
        body_size=row["body_size"],
        id=row["id"],
        request=request,
        kept=row["kept_bytes"],
        dropped=row["dropped"],
        dropped_at=row["dropped_at"],
        recovered_as=row["recovered_as"],
        recovery=row["recovery"],
        recovered_at=row["recovered_at"],
    )


# One encoder for every row (json.dumps with any argument builds a new one per call). ASCII-only output: a
# lone surrogate in a value becomes an escape instead of failing the write.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def _json(value: Any) -> str:
    return _encode(value)


def _payload(kind: str, text: str, body: bytes) -> Payload:
    if text == "":  # the body parsed (Payload.parsed); a payload stored in full is never "" (JSON text)
        return Payload(kind, json.loads(body), parsed=True)
    return Payload(kind, json.loads(text))


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(map(tuple, json.loads(text)))


def filter_params(f: EventFilter | RunFilter) -> dict[str, Any]:
    """A filter as query parameters: open ends become ±infinity so one statement serves every filter."""
    params = {k: getattr(f, k) for k in f.__slots__}
    params["since"] = -math.inf if f.since is None else f.since
    params["until"] = math.inf if f.until is None else f.until
    return params


def filter_to_json(f: EventFilter | RunFilter) -> str:
    return _json({k: v for k in f.__slots__ if (v := getattr(f, k)) is not None})


def job_from_row(row: Row) -> Job:
    kind = row["kind"]
    raw = json.loads(row["filter"])
    cursor = None if row["cursor_id"] is None else (row["cursor_time"], row["cursor_id"])
    return Job(
        id=row["id"],
        kind=kind,
        filter=EventFilter(**raw) if kind == REPLAY else RunFilter(**raw),
        status=row["status"],
        total=row["total"],
        done=row["done"],
        created=row["created"],
        upto=row["upto"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        cursor=cursor,
        finished_at=row["finished_at"],
        error=row["error"],
        requested_by=row["requested_by"],
        owner=row["owner"],
    )

"""The OpenAPI 3.1 description of the admin API and the hook paths, built from gateway/web/api.py's route
table and the configured sources: one source of truth for what is served. Pure: no I/O, it builds a dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.model import (
    DUPLICATE,
    EVENT_STATUSES,
    EVICTED,
    JOB_STATUSES,
    NO_ROOM,
    REPLAY,
    RERUN,
    RUN_STATUSES,
    STORED,
    UNVERIFIABLE,
)
from gateway.records.page import PAGE_MAX
from gateway.routes.sources import Source

Schema = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Operation:
    """One row of the admin API's route table: ``verb path`` needs ``scope`` and takes only ``query``;
    ``name`` is its handler's name and its operationId."""

    verb: str
    path: str
    scope: str
    query: tuple[str, ...]
    name: str


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: Mapping[str, Schema], optional: Mapping[str, Schema] | None = None) -> Schema:
    return {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
ANY: Schema = {}  # any JSON value
OPT_STR: Schema = {"type": ["string", "null"]}
RUN_REFS = {"type": "array", "items": _object({"id": STR, "task": STR})}
LINKS = {
    "type": "array",
    "items": _object({"id": STR, "status": STR}, {"received_at": STR, "created_at": STR}),
}

_EVENT_ROW: dict[str, Schema] = {
    "id": STR,
    "received_at": STR,
    "source": STR,
    "event_type": OPT_STR,
    "status": {"enum": list(EVENT_STATUSES)},
    "verification": STR,
    "dedupe_key": OPT_STR,
    "trace_id": OPT_STR,
    "replay_of": OPT_STR,
}
_RUN_ROW: dict[str, Schema] = {
    "id": STR,
    "task": STR,
    "route": OPT_STR,
    "status": {"enum": list(RUN_STATUSES)},
    "attempts": INT,
    "crashes": INT,
    "created_at": STR,
    "started_at": OPT_STR,
    "finished_at": OPT_STR,
    "duration": NUM,
    "event_id": STR,
    "trace_id": OPT_STR,
}
_PAIRS = {"type": "array", "items": {"type": "array", "items": STR, "minItems": 2, "maxItems": 2}}

SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": STR, "detail": STR}),
    "Ack": _object({"event_id": STR, "runs": RUN_REFS}, {"duplicate": {"const": True}}),
    "EventRow": _object(_EVENT_ROW),
    "EventDetail": _object(
        {
            **_EVENT_ROW,
            "method": STR,
            "url": STR,
            "remote_addr": OPT_STR,
            "headers": _PAIRS,
            "query": _PAIRS,
            "payload_kind": {"enum": ["json", "form", "raw"]},
            "payload": ANY,
            "body_size": INT,
            "runs": {"type": "array", "items": _ref("RunRow")},
            "replays": LINKS,
        }
    ),
    "RunRow": _object(_RUN_ROW),
    "RunDetail": _object(
        {
            **_RUN_ROW,
            "queue": STR,
            "priority": INT,
            "concurrency_key": OPT_STR,
            "idempotency_key": STR,
            "input": ANY,
            "output": ANY,
            "error": {"type": ["object", "null"]},
            "options": {"type": "object"},
            "worker": OPT_STR,
            "attempt_history": {"type": "array", "items": {"type": "object"}},
            "rerun_of": OPT_STR,
            "reruns": LINKS,
        }
    ),
    "Rejection": _object(
        {
            "id": INT,
            "received_at": STR,
            "source": STR,
            "reason": STR,
            "detail": STR,
            "remote_addr": OPT_STR,
            "body_size": INT,
            "body_prefix": STR,
            "replayable": {"type": "boolean"},
            "kept_bytes": INT,
            "dropped": {"enum": [EVICTED, NO_ROOM, UNVERIFIABLE, None]},
            "dropped_at": OPT_STR,
            "recovered_as": OPT_STR,
            "recovery": {"enum": [STORED, DUPLICATE, None]},
            "recovered_at": OPT_STR,
        }
    ),
    "Recovered": _object(
        {
            "rejection_id": INT,
            "source": STR,
            "outcome": {"enum": [STORED, DUPLICATE]},
            "event_id": STR,
            "runs": RUN_REFS,
            "reason": OPT_STR,
            "detail": STR,
        }
    ),
    "Job": _object(
        {
            "id": STR,
            "kind": {"enum": [REPLAY, RERUN]},
            "status": {"enum": list(JOB_STATUSES)},
            "total": INT,
            "done": INT,
            "created": INT,
            "error": OPT_STR,
            "requested_by": OPT_STR,
            "filter": {"type": "object"},
            "progress": NUM,
            "created_at": STR,
            "updated_at": STR,
            "finished_at": OPT_STR,
            "worked_by": OPT_STR,
        }
    ),
    "Replayed": _object({"event_id": STR, "replay_of": STR, "runs": RUN_REFS}),
    "Rerun": _object({"run_id": STR, "rerun_of": STR, "task": STR}),
    "Preview": _object(
        {"kind": {"enum": [REPLAY, RERUN]}, "count": INT, "sample": {"type": "array"}},
        {"replays_left_out": INT},  # a replay: the replays its filter leaves out
    ),
    "JobStarted": _object({"job": _ref("Job")}, {"replays_left_out": INT}),
    "Stats": {"type": "object"},
    "OpenAPI": _object({"openapi": STR, "info": {"type": "object"}, "paths": {"type": "object"}}),
    "PayloadBody": {
        "type": "object",
        "properties": {"payload": ANY},
        "additionalProperties": False,
        "description": "the task's input; without `payload` a rerun keeps the original input",
    },
    "BulkRequest": {
        "type": "object",
        "required": ["kind"],
        "properties": {
            "kind": {"enum": [REPLAY, RERUN]},
            "filter": {
                "type": "object",
                "description": "EventFilter fields (replay) or RunFilter (rerun); a replay takes original "
                "deliveries only unless include_replays is true",
            },
            "dry_run": {"type": "boolean", "default": False},
        },
        "additionalProperties": False,
    },
}


def _page(item: str) -> Schema:
    return _object({"data": {"type": "array", "items": _ref(item)}, "next_cursor": OPT_STR})


@dataclass(frozen=True, slots=True)
class _Shape:
    summary: str
    status: int  # the success status
    answer: Schema  # the success answer's JSON schema; {} with ``raw``
    body: str | None = None  # the request body's schema, by name
    refusals: tuple[int, ...] = ()  # statuses beyond 400, 401, 403, 503 this operation may answer
    raw: bool = False  # the success answer is not JSON (an event's stored body)


SHAPES: dict[str, _Shape] = {
    "list_events": _Shape("List stored events, newest first", 200, _page("EventRow")),
    "show_event": _Shape("An event with its runs and replays", 200, _ref("EventDetail"), None, (404,)),
    "event_body": _Shape("The exact bytes received", 200, ANY, None, (404,), raw=True),
    "replay_event": _Shape("Route an event again", 202, _ref("Replayed"), None, (404,)),
    "list_runs": _Shape("List runs, newest first", 200, _page("RunRow")),
    "show_run": _Shape("A run with every attempt", 200, _ref("RunDetail"), None, (404,)),
    "rerun": _Shape("Run a run's task again", 202, _ref("Rerun"), "PayloadBody", (404, 413)),
    "cancel_run": _Shape("Cancel a queued or retrying run", 200, _ref("RunRow"), None, (404, 409)),
    "list_rejections": _Shape("List refused deliveries", 200, _page("Rejection")),
    "replay_rejection": _Shape(
        "Verify a kept rejected delivery again with the current secrets; store it if it passes",
        202,
        _ref("Recovered"),
        None,
        (404, 409),
    ),
    "stats": _Shape("Counts by source, task, status and queue", 200, _ref("Stats")),
    "start_bulk": _Shape(
        "Preview or start a bulk replay or rerun", 202, _ref("JobStarted"), "BulkRequest", (413,)
    ),
    "list_jobs": _Shape("List bulk jobs", 200, _page("Job")),
    "show_job": _Shape("A bulk job's progress", 200, _ref("Job"), None, (404,)),
    "cancel_job": _Shape("Stop a running bulk job", 200, _ref("Job"), None, (404, 409)),
    "trigger": _Shape("Start a task without a webhook", 202, _ref("Ack"), "PayloadBody", (404, 413)),
    "openapi": _Shape("This description", 200, _ref("OpenAPI")),
}

# Query parameters: their schema, and where one name means different things, per operation.
LIMIT = {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 50}
TIME = {"type": "string", "description": "ISO-8601 (2026-11-24T10:00:00Z) or a duration ago (30m, 24h, 7d)"}
PARAMS: dict[str, Schema] = {"limit": LIMIT, "since": TIME, "until": TIME}
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("list_events", "status"): EVENT_STATUSES,
    ("list_events", "run_status"): RUN_STATUSES,
    ("list_runs", "status"): RUN_STATUSES,
    ("list_jobs", "status"): JOB_STATUSES,
}


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _errors(statuses: Iterable[int]) -> dict[str, Any]:
    return {str(s): {"description": "error", "content": _json(_ref("Error"))} for s in statuses}


def _operation(op: Operation) -> dict[str, Any]:
    shape = SHAPES[op.name]
    params: list[Schema] = (
        [{"name": "id", "in": "path", "required": True, "schema": STR}] if "{id}" in op.path else []
    )
    for name in op.query:
        schema = PARAMS.get(name, {"type": "string", "minLength": 1 if name != "cursor" else 0})
        if (op.name, name) in CHOICES:
            schema = {"enum": list(CHOICES[op.name, name])}
        params.append({"name": name, "in": "query", "required": False, "schema": schema})
    if op.name == "trigger":
        key = {"type": "string", "minLength": 1, "maxLength": 256}
        params.append({"name": "Idempotency-Key", "in": "header", "required": False, "schema": key})
    content = {"*/*": {"schema": ANY}} if shape.raw else _json(shape.answer)
    responses = {str(shape.status): {"description": shape.summary, "content": content}}
    if op.name == "start_bulk":  # dry_run answers the preview
        responses["200"] = {"description": "a dry run's preview", "content": _json(_ref("Preview"))}
    if op.name == "replay_rejection":  # its dedupe key names a stored event: nothing stored twice
        responses["200"] = {
            "description": "a duplicate of a stored event",
            "content": _json(_ref("Recovered")),
        }
    if op.name == "trigger":  # a repeated Idempotency-Key
        responses["200"] = {"description": "the original of a repeated key", "content": _json(_ref("Ack"))}
    doc: dict[str, Any] = {
        "operationId": op.name,
        "summary": shape.summary,
        "tags": ["admin"],
        "security": [{"bearer": [op.scope]}],  # OpenAPI 3.1: a non-OAuth scheme may list roles
        "x-scope": op.scope,
        "parameters": params,
        "responses": responses | _errors(sorted({400, 401, 403, 503, *shape.refusals})),
    }
    if shape.body is not None:
        doc["requestBody"] = {"required": False, "content": _json(_ref(shape.body))}
    return doc


def _hook(source: Source) -> dict[str, Any]:
    ack = {"description": "stored", "content": _json(_ref("Ack"))}
    scheme = source.scheme
    signed = dict.fromkeys((*scheme.signature_headers, *scheme.timestamp_headers, *scheme.id_headers))
    return {
        "operationId": f"deliver_{source.name}",
        "summary": f"A {scheme.name} delivery for source {source.name}",
        "tags": ["hooks"],
        "security": [],  # the provider's signature, checked by the gateway, not a bearer token
        "parameters": [{"name": h, "in": "header", "required": False, "schema": STR} for h in signed],
        "requestBody": {
            "required": False,
            "description": f"any bytes up to {source.max_body}; stored exactly as received",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        "responses": {
            "202": ack,
            "200": {
                "description": "a duplicate's ack, or a provider handshake's answer",
                "content": {"*/*": {}},
            },
            **_errors((401, 408, 413, 503)),
        },
    }


def document(
    operations: Sequence[Operation], sources: Iterable[Source] = (), *, prefix: str = "/api"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document: every operation of the table under ``prefix``, and ``POST <path>`` for
    every source. Raises KeyError for an operation without a shape here (a test checks there is none)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(prefix + op.path, {})[op.verb.lower()] = _operation(op)
    for source in sorted(sources, key=lambda s: s.path):
        paths.setdefault(source.path, {})["post"] = _hook(source)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "webhook-gateway",
            "version": "1",
            "description": "The admin API (bearer JWTs, scopes read, replay, trigger) and the hook paths.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }

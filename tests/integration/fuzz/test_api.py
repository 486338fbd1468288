"""schemathesis against the whole app in process (the admin API under a valid token, and every hook path),
driven by the OpenAPI description the app serves: no 5xx but 503, and every answer as documented."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.model import RunFilter, Secret
from gateway.records.service import Service
from gateway.store.sqlite.store import SQLiteStore
from gateway.web.api import ROUTES, create_api
from gateway.web.app import create_app
from gateway.web.auth import AdminKey
from tests.support.admin import SECRET, bearer, token
from tests.support.clock import NOW, Clock
from tests.support.deliveries import github_headers
from tests.support.records import push_event, queued_run

# Examples per operation and generation mode; FUZZ_EXAMPLES=500 for a longer run by hand.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
API_LABELS = [f"{op.verb} /api{op.path}" for op in ROUTES]
SENT: dict[str, int] = {}  # label -> requests sent, for the report


@dataclass
class Served:
    """The app (hooks and /api) on a real store, driven from a sync test through one event loop."""

    runner: asyncio.Runner
    client: httpx.AsyncClient
    known: dict[str, str]  # path prefix -> an id that exists there
    statuses: dict[int, int] = field(default_factory=dict)

    def send(
        self, case: Any, headers: dict[str, str] | None = None, sign: str | None = None
    ) -> httpx.Response:
        kwargs = case.as_transport_kwargs(base_url="http://gateway.test", headers=headers)
        content = kwargs.get("data")
        if "json" in kwargs:
            content = json.dumps(kwargs["json"]).encode()
        elif isinstance(content, str):
            content = content.encode()
        sent = dict(kwargs["headers"])
        if sign is not None:  # a valid GitHub signature over the generated body: past verification
            signed = github_headers(content or b"", sign, str(uuid.uuid4()))
            sent |= {k: v for k, v in signed.items() if k != "Content-Type"}
        request = self.client.build_request(
            kwargs["method"], kwargs["url"], params=kwargs.get("params"), headers=sent, content=content
        )
        response = self.runner.run(self.client.send(request))
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        return response


@pytest.fixture
def served(load_config: Callable[..., Any], tmp_path: Path) -> Iterator[Served]:
    config = load_config()
    with asyncio.Runner() as runner:
        store = runner.run(SQLiteStore.open(tmp_path / "fuzz.db"))
        clock = Clock()
        service = Service(store, config, clock=clock)
        event = push_event("seed", NOW - 3600, content_type="application/json")
        run = queued_run("seed", event)
        runner.run(store.record(event, [run]))
        job = runner.run(service.bulk.start_job("rerun", RunFilter(task="nope"), requested_by="fuzz"))
        api = create_api(service, AdminKey("HS256", Secret(SECRET)), clock=clock)
        app = create_app(config, store, clock=clock, api=api)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")
        known = {
            "/api/events": event.id,
            "/api/runs": run.id,
            "/api/jobs": job.id,
            "/api/tasks": "deploy-preview",
        }
        try:
            yield Served(runner, client, known)
        finally:
            runner.run(client.aclose())
            runner.run(store.close())


def served_schema(served: Served) -> Any:
    answer = served.runner.run(served.client.get("/api/openapi.json", headers=bearer(token(("read",)))))
    assert answer.status_code == 200, answer.text
    return schemathesis.openapi.from_dict(answer.json())


def cases(operation: Any, mode: GenerationMode, served: Served) -> Any:
    """Cases with a random id, and cases with an id that exists (so the handler behind a lookup runs)."""
    path = operation.path
    prefix = next((p for p in served.known if path.startswith(p + "/")), None)
    if prefix is None:
        return operation.as_strategy(mode)
    return st.one_of(
        operation.as_strategy(mode), operation.as_strategy(mode, path_parameters={"id": served.known[prefix]})
    )


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("label", API_LABELS)
def test_admin_api_answers_every_generated_request_as_documented_and_never_with_a_5xx(
    served: Served, label: str, mode: GenerationMode
) -> None:
    verb, path = label.split(" ", 1)
    operation = served_schema(served)[path][verb]
    auth = bearer(token())
    name = f"{label} {mode}"

    @FUZZ
    @given(case=cases(operation, mode, served))
    def fuzz(case: Any) -> None:
        response = served.send(case, headers=auth)
        SENT[name] = SENT.get(name, 0) + 1
        assert response.status_code < 500 or response.status_code == 503
        case.validate_response(response, checks=CHECKS)

    fuzz()
    assert SENT.get(name, 0) > 0
    print(f"{name}: {SENT[name]} requests, statuses {served.statuses}")  # shown with -s


HOOKS = [(f"/hooks/{name}", None) for name in ("acme", "billing", "github", "open", "stripe")]


@pytest.mark.parametrize(("path", "secret"), [*HOOKS, ("/hooks/github", "gh-secret")], ids=str)
def test_hook_paths_answer_arbitrary_bodies_and_headers_as_documented_and_never_with_a_5xx(
    served: Served, path: str, secret: str | None
) -> None:
    """Unsigned, only the `open` source (verify: none) stores; with a valid GitHub signature over the
    generated body, every delivery is stored whatever its content type and bytes."""
    operation = served_schema(served)[path]["POST"]
    name = f"POST {path}" + (" signed" if secret else "")

    @FUZZ
    @given(case=operation.as_strategy(GenerationMode.POSITIVE))
    def fuzz(case: Any) -> None:
        response = served.send(case, sign=secret)
        SENT[name] = SENT.get(name, 0) + 1
        assert response.status_code < 500 or response.status_code == 503
        case.validate_response(response, checks=CHECKS)

    fuzz()
    stored = served.statuses.get(202, 0)
    assert stored == (SENT[name] if secret or path == "/hooks/open" else 0), served.statuses
    print(f"{name}: {SENT[name]} requests, statuses {served.statuses}")  # shown with -s

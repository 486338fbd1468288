"""Shared factories: a routes file with its own task module, a real store, an in-process client."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from gateway.routes import load as config_mod
from gateway.store.sqlite.store import SQLiteStore
from gateway.web.app import create_app

TASKS_CODE = """
from gateway import task

@task(id="deploy-preview")
async def deploy_preview(payload, ctx):
    return payload

@task(id="record-payment")
async def record_payment(payload, ctx):
    return payload

@task(id="sync-subscription")
def sync_subscription(payload, ctx):
    return payload
"""

ROUTES = """
tasks: [{module}]
sources:
  github:
    verify: github
    secret: gh-secret
  stripe:
    verify: stripe
    secrets: [whsec_new_stripe_secret, whsec_old_stripe_secret]
  billing:
    verify: standard-webhooks
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  acme:
    verify: {scheme: hmac, header: X-Acme-Signature, algorithm: sha256, encoding: hex, prefix: "sha256="}
    secret: acme-secret
    dedupe: headers.X-Acme-Delivery
    max_body: 1KiB
  open:
    verify: none
routes:
  - id: deploy-on-push
    source: github
    event: push
    when: {body.ref: refs/heads/main}
    task: deploy-preview
    input: {repo: body.repository.full_name, sha: body.after}
  - id: audit-pushes
    source: github
    event: push
    task: record-payment
  - id: paid-invoices
    source: stripe
    event: invoice.*
    task: record-payment
  - id: billing
    source: billing
    task: sync-subscription
  - id: acme
    source: acme
    task: sync-subscription
"""


@pytest.fixture
def write_routes(tmp_path: Path) -> Callable[..., Path]:
    """Write routes.yaml (``{module}`` is replaced by a fresh task module's name) and return its path."""

    def write(routes: str = ROUTES, tasks_code: str = TASKS_CODE) -> Path:
        module = f"tasks_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(tasks_code))
        path = tmp_path / "routes.yaml"
        path.write_text(textwrap.dedent(routes).replace("{module}", module))
        return path

    return write


@pytest.fixture
def load_config(write_routes: Callable[..., Path]) -> Callable[..., config_mod.Config]:
    def load(
        routes: str = ROUTES, tasks_code: str = TASKS_CODE, environ: dict[str, str] | None = None
    ) -> Any:
        return config_mod.load(write_routes(routes, tasks_code), environ or {})

    return load


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Open real stores on files in tmp_path; every store opened is closed at the end."""
    opened: list[SQLiteStore] = []

    async def open_(
        name: str = "gateway.db", cls: type[SQLiteStore] = SQLiteStore, **kwargs: Any
    ) -> SQLiteStore:
        store = await cls.open(tmp_path / name, **kwargs)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def client_for(open_store: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    """Build an httpx client that calls the real app in process, on a real store."""
    clients: list[httpx.AsyncClient] = []

    async def make(
        config: config_mod.Config, store: SQLiteStore | None = None, **kwargs: Any
    ) -> httpx.AsyncClient:
        store = store or await open_store()
        app = create_app(config, store, **kwargs)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def env_clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("GATEWAY_ROUTES", "GATEWAY_DB", "GATEWAY_HOST", "GATEWAY_PORT"):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """Every request leaving the process, faked with respx; a request no route of the test answers fails."""
    with respx.mock(assert_all_called=False) as mock:
        yield mock

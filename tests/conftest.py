"""Shared factories: a routes file with its own task module, a real store, an in-process client, faked
outbound requests, and the throwaway keys that take a while to make (one per test module)."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.routes import load as config_mod
from gateway.store.sqlite.store import SQLiteStore
from gateway.web.app import create_app
from tests.support.keys import Pki, make_pki
from tests.support.routes import ROUTES, TASKS_CODE


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


@pytest.fixture(scope="module")
def pki() -> Pki:
    """A PayPal-like certificate chain and its leaf's key (tests/support/keys.py)."""
    return make_pki()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)

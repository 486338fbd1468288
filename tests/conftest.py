"""Shared factories: a routes file with its own task module, a real store, an in-process client, faked
outbound requests, the throwaway keys that take a while to make (one per test module), and a real PostgreSQL
server (tests/support/postgres.py) with a fresh database per test."""

from __future__ import annotations

import os
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
from tests.support import postgres
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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer | postgres.ExternalPostgres]:
    """The suite's real PostgreSQL, started once per session (or the running one GATEWAY_TEST_POSTGRES names).
    Missing binaries fail the tests that need it, naming `apt-get install postgresql`; they never skip."""
    try:
        with postgres.session_server(os.environ) as server:
            yield server
    except postgres.PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def postgres_dsn(postgres_server: postgres.PostgresServer | postgres.ExternalPostgres) -> Iterator[str]:
    """A fresh empty database of this test's own on the suite's server, dropped after:
    ``postgresql://postgres@127.0.0.1:PORT/gateway_test_<hex>``."""
    with postgres.fresh_database(postgres_server) as dsn:
        yield dsn


@pytest.fixture
def start_postgres() -> Iterator[Callable[..., postgres.PostgresServer]]:
    """Start PostgreSQL servers of this test's own (even with GATEWAY_TEST_POSTGRES), for tests that kill or
    restart one; ``start_postgres(settings={...})`` takes extra server settings. Each is stopped and removed
    at the end."""
    started: list[postgres.PostgresServer] = []

    def start(settings: dict[str, str] | None = None) -> postgres.PostgresServer:
        try:
            server = postgres.PostgresServer(settings=settings)
        except postgres.PostgresMissing as exc:
            pytest.fail(str(exc), pytrace=False)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()

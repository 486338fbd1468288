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
from gateway.store.ops.base import BatchedStore
from gateway.store.postgres.store import PostgresStore
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


STORES = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``both_stores`` (a module's pytestmark, or one test) runs once per store: ``open_store``
    then opens SQLite files or PostgreSQL databases. ``sqlite_only`` inside such a module keeps one test on
    SQLite (it reads the file itself, or injects SQLite's faults)."""
    if "store_kind" not in metafunc.fixturenames:
        return
    both = metafunc.definition.get_closest_marker("both_stores") is not None
    if both and metafunc.definition.get_closest_marker("sqlite_only") is None:
        metafunc.parametrize("store_kind", STORES, indirect=True)


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which store ``open_store`` opens: "sqlite" unless the test runs on both (see pytest_generate_tests)."""
    kind: str = getattr(request, "param", "sqlite")
    return kind


@pytest.fixture
def database(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path | str]:
    """A database for a command line's --db: a SQLite file in tmp_path, or (``store_kind`` postgres) a
    fresh PostgreSQL database's address, dropped after."""
    if store_kind == "sqlite":
        yield tmp_path / "gw.db"
        return
    with postgres.fresh_database(request.getfixturevalue("postgres_server")) as dsn:
        yield dsn


@pytest.fixture
async def open_store(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Any]]:
    """Open real stores, every one closed at the end: SQLite files in tmp_path, or (``store_kind`` postgres)
    PostgreSQL databases of this test's own on the suite's server, one per ``name``, dropped after. A name
    opened twice is the same database opened again."""
    opened: list[Any] = []
    databases: dict[str, str] = {}
    server = request.getfixturevalue("postgres_server") if store_kind == "postgres" else None

    def kind(cls: type[Any] | None, base: type[Any]) -> type[Any]:
        """``cls`` itself when it is a store; a mixin (a class overriding write, say) over ``base``."""
        if cls is None or issubclass(cls, BatchedStore):
            return cls or base
        return type(f"{cls.__name__}{base.__name__}", (cls, base), {})

    async def open_(name: str = "gateway.db", cls: type[Any] | None = None, **kwargs: Any) -> Any:
        if server is None:
            store = await kind(cls, SQLiteStore).open(tmp_path / name, **kwargs)
        else:
            if name not in databases:
                databases[name] = postgres.create_database(server, f"gateway_test_{uuid.uuid4().hex[:12]}")
            kwargs.pop("check", None)  # PRAGMA quick_check is SQLite's
            store = await kind(cls, PostgresStore).open(databases[name], **kwargs)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()
    for dsn in databases.values():
        assert server is not None
        postgres.drop_database(server, dsn.rsplit("/", 1)[1])


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

"""The real PostgreSQL the suite starts (tests/support/postgres.py): it runs durably, each test gets a
database of its own, a killed server refuses connections and comes back on restart. I/O: processes, a port,
files."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.support import postgres

SEEN: set[str] = set()  # the databases the parametrized test below was given, across its cases


def test_the_suite_server_answers_on_loopback(postgres_server: postgres.PostgresServer) -> None:
    with psycopg.connect(postgres_server.dsn(), connect_timeout=5) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    assert row is not None and row[0] >= 130000  # DROP DATABASE ... WITH (FORCE) needs 13


@pytest.mark.parametrize("case", ["first", "second"])
def test_each_test_gets_an_empty_database_of_its_own(postgres_dsn: str, case: str) -> None:
    with psycopg.connect(postgres_dsn, connect_timeout=5) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        conn.execute("CREATE TABLE marker (case_name text)")  # the other case must not see it
        conn.execute("INSERT INTO marker VALUES (%s)", (case,))
    assert name is not None and name[0].startswith("gateway_test_")
    assert postgres_dsn.endswith(f"/{name[0]}")
    assert tables == (0,)
    assert name[0] not in SEEN
    SEEN.add(name[0])


def test_a_fresh_database_is_dropped_after_its_block(postgres_server: postgres.PostgresServer) -> None:
    with (
        postgres.fresh_database(postgres_server) as first,
        postgres.fresh_database(postgres_server) as second,
    ):
        assert first != second
        with psycopg.connect(first, connect_timeout=5) as conn:
            conn.execute("CREATE TABLE t (x int)")
    with psycopg.connect(postgres_server.dsn(), connect_timeout=5) as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert first.rsplit("/", 1)[1] not in names
    assert second.rsplit("/", 1)[1] not in names


def test_a_database_left_in_use_is_still_dropped(postgres_server: postgres.PostgresServer) -> None:
    with postgres.fresh_database(postgres_server) as dsn:
        conn = psycopg.connect(dsn, connect_timeout=5)  # a test that forgot to close its connection
    try:
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()


def test_commits_are_durable_fsync_and_synchronous_commit_are_on(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, connect_timeout=5) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()
            for name in ("fsync", "synchronous_commit", "max_connections")
        }
    assert settings["fsync"] == ("on",)
    assert settings["synchronous_commit"] == ("on",)
    assert settings["max_connections"] is not None and int(settings["max_connections"][0]) >= 100


def test_a_killed_server_refuses_connections_and_restart_brings_it_back(
    start_postgres: Callable[..., postgres.PostgresServer],
) -> None:
    server = start_postgres()
    dsn = server.create_database("kept")
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")  # committed when the block ends
    held = psycopg.connect(dsn, connect_timeout=5)
    port = server.port

    server.kill()

    assert not server.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=5)
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")  # a connection open across the kill is gone too
    held.close()

    server.restart()

    assert server.running and server.port == port
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]  # crash recovery kept the commit


def test_restart_of_a_running_server_keeps_port_and_data(
    start_postgres: Callable[..., postgres.PostgresServer],
) -> None:
    server = start_postgres(settings={"shared_buffers": "16MB"})
    dsn = server.create_database("kept")
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE t (x int)")
    port, pid = server.port, server.pid

    server.restart()

    assert server.port == port and server.pid not in (None, pid)
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert conn.execute("SHOW shared_buffers").fetchone() == ("16MB",)


def test_the_server_runs_as_an_unprivileged_user_and_stop_removes_it(
    start_postgres: Callable[..., postgres.PostgresServer],
) -> None:
    server = start_postgres()
    directory, pid = server.dir, server.pid
    assert directory is not None and pid is not None
    owner = Path(f"/proc/{pid}").stat().st_uid
    # PostgreSQL refuses root: as root the postmaster belongs to `postgres` (or `nobody`), else to us.
    assert owner == (os.geteuid() if os.geteuid() != 0 else pwd.getpwnam(server.user).pw_uid)
    assert owner != 0

    server.stop()

    assert not directory.exists()
    assert not postgres._alive(pid)


def test_a_url_in_the_environment_is_used_instead_of_starting_a_server(
    postgres_server: postgres.PostgresServer,
) -> None:
    url = postgres_server.dsn().replace("postgres@", "postgres:secret@")  # trust auth ignores the password
    with postgres.session_server({postgres.ENV: url}) as external:
        assert isinstance(external, postgres.ExternalPostgres)
        assert "secret" not in repr(external)
        with postgres.fresh_database(external) as dsn:
            assert dsn.startswith(url.rsplit("/", 1)[0] + "/gateway_test_")
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(postgres.PostgresFailed, match="start_postgres"):
            external.kill()


def test_missing_binaries_fail_naming_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(postgres.PostgresMissing, match=r"apt-get install postgresql"):
        postgres.find_binaries(root=str(tmp_path / "none"))


def test_the_newest_installed_version_is_chosen(tmp_path: Path) -> None:
    for version in ("9.6", "15", "16"):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        for name in ("initdb", "pg_ctl", "postgres"):
            (bin_dir / name).write_text("#!/bin/sh\n")
            (bin_dir / name).chmod(0o755)
    found = postgres.find_binaries(root=str(tmp_path))
    assert (found.version, found.initdb) == ("16", tmp_path / "16" / "bin" / "initdb")


def test_a_password_is_masked_in_messages() -> None:
    assert postgres.masked("postgresql://u:hunter2@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert postgres.masked("postgresql://u@h/d") == "postgresql://u@h/d"

"""`gateway copy` as a user runs it: a subprocess copying a real SQLite file into a real PostgreSQL database,
its progress and last line, a SIGKILL mid-copy then the same command again, and each refusal in one line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from gateway.routes.load import Config
from gateway.store.sqlite.store import SQLiteStore
from tests.support.cli import run
from tests.support.clock import NOW
from tests.support.database import rows
from tests.support.process import free_port
from tests.support.records import deliver, plain_event

LoadConfig = Callable[..., Config]


def gateway(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``gateway ARGV...`` as a subprocess, with ``env`` over the inherited environment."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def make_db(path: Path, config: Config | None = None, *, events: int = 5) -> Path:
    """A SQLite file of ``events`` plain events and, given ``config``, three GitHub pushes with their runs."""

    async def fill() -> None:
        store = await SQLiteStore.open(path)
        try:
            await store.jobs.add([plain_event(i, at=NOW + i) for i in range(events)], [])
            for i in range(3 if config is not None else 0):
                await deliver(store, config, at=NOW + events + i)
        finally:
            await store.close()

    asyncio.run(fill())
    return path


def pg_count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0


def test_gateway_copy_says_how_far_it_is_and_what_it_verified(
    tmp_path: Path, postgres_dsn: str, load_config: LoadConfig
) -> None:
    db = make_db(tmp_path / "gateway.db", load_config())

    done = gateway("copy", "--from", str(db), env={"GATEWAY_DB": postgres_dsn})  # --to from GATEWAY_DB

    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[:7] == [
        f"copying {db} to {postgres_dsn}",
        "events: 8 of 8",
        "runs: 6 of 6",
        "attempts: 0 of 0",
        "rejections: 0 of 0",
        "jobs: 0 of 0",
        lines[6],
    ]
    assert lines[6].startswith(
        f"copied 8 events, 6 runs, 0 attempts, 0 rejections and 0 jobs from {db} to {postgres_dsn} in "
    )
    assert re.search(r" rows/s\); counts match, and so do the \d+ sampled records$", lines[6])
    assert len(lines) == 7
    assert pg_count(postgres_dsn, "events") == 8


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill -9", "Ctrl-C"])
def test_a_copy_killed_mid_way_is_finished_by_the_same_command(
    tmp_path: Path, postgres_dsn: str, sig: signal.Signals
) -> None:
    db = make_db(tmp_path / "gateway.db", events=5000)
    command = [
        sys.executable,
        "-m",
        "gateway",
        "copy",
        "--from",
        str(db),
        "--to",
        postgres_dsn,
        "--batch",
        "50",
    ]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("copying ")
        assert proc.stdout.readline() == "events: 50 of 5,000\n"  # the first page is committed
        proc.send_signal(sig)
    finally:
        _, err = proc.communicate(timeout=30)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert (proc.returncode, err) == (
            130,
            "gateway copy: interrupted; every page committed so far is kept: run the same command again to "
            "finish the copy (nothing is copied twice)\n",
        )
    assert 50 <= pg_count(postgres_dsn, "events") < 5000

    again = gateway("copy", "--from", str(db), "--to", postgres_dsn, "--batch", "50")

    assert again.returncode == 0, again.stderr
    assert "; the rest were there from an earlier run); counts match" in again.stdout
    assert pg_count(postgres_dsn, "events") == 5000
    with psycopg.connect(postgres_dsn) as conn:
        copied = [i for (i,) in conn.execute("SELECT id FROM events ORDER BY seq")]
    assert copied == [i for (i,) in rows(db, "SELECT id FROM events ORDER BY rowid")]


# -- one line each, never the password ------------------------------------------------------------------


def test_a_destination_that_cannot_be_reached_is_named_without_its_password(tmp_path: Path) -> None:
    db = make_db(tmp_path / "gateway.db")
    port = free_port()

    code, out, err = run(
        "copy", "--from", str(db), "--to", f"postgresql://copier:s3cret@127.0.0.1:{port}/hooks"
    )

    assert code == 1
    assert err.startswith(f"gateway copy: cannot connect to postgresql://copier@127.0.0.1:{port}/hooks: ")
    assert len(err.splitlines()) == 1 and "s3cret" not in out + err


def test_a_destination_with_other_data_is_refused(tmp_path: Path, postgres_dsn: str) -> None:
    assert run("copy", "--from", str(make_db(tmp_path / "a.db")), "--to", postgres_dsn)[0] == 0
    other = make_db(tmp_path / "b.db", events=2)

    code, _, err = run("copy", "--from", str(other), "--to", postgres_dsn)

    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith(f"gateway copy: {postgres_dsn} already holds 5 events and it is a copy of ")


def test_a_copy_that_differs_names_the_table_the_id_and_the_field(tmp_path: Path, postgres_dsn: str) -> None:
    db = make_db(tmp_path / "gateway.db")
    assert run("copy", "--from", str(db), "--to", postgres_dsn)[0] == 0
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("UPDATE events SET event_type = 'changed' WHERE id = 'evt_open_000000'")

    code, _, err = run("copy", "--from", str(db), "--to", postgres_dsn)

    assert code == 1
    assert err.splitlines()[0] == "gateway copy: mismatch: events evt_open_000000: field event_type differs"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--to", "./other.db"], 1, "gateway copy: --to ./other.db is not a PostgreSQL address: give "),
        ([], 2, "gateway copy: --to is required: the PostgreSQL database to copy into "),
        (["--to", "postgresql://h/d", "--batch", "0"], 2, "usage: gateway copy "),  # argparse's own
    ],
    ids=["not postgresql", "no --to", "batch 0"],
)
def test_bad_arguments_are_refused_with_their_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    db = make_db(tmp_path / "gateway.db")
    found, _, err = run("copy", "--from", str(db), *argv)
    assert found == code and (err or capsys.readouterr().err).startswith(message)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "gateway copy: no database at {p} (--from names the gateway's SQLite file)"),
        (lambda p: p.write_bytes(b"\x00" * 4096), "gateway copy: {p} is not a gateway database ("),
    ],
    ids=["missing", "not a database"],
)
def test_a_source_that_cannot_be_copied_is_said_in_one_line(
    tmp_path: Path, postgres_dsn: str, make: Callable[[Path], object], message: str
) -> None:
    path = tmp_path / "gateway.db"
    make(path)
    code, _, err = run("copy", "--from", str(path), "--to", postgres_dsn)
    assert code == 1 and len(err.splitlines()) == 1 and err.startswith(message.format(p=path))

"""`gateway backup PATH`, called as ``main(argv)`` on real database files: a checked copy the gateway starts
on, written under the gateway's lock and beside a live writer, and every refusal with nothing left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.store.sqlite.sql import MIGRATIONS
from gateway.store.sqlite.store import SQLiteStore
from tests.support.cli import run
from tests.support.database import rows
from tests.support.records import push_event, queued_run

WROTE = re.compile(
    r"^wrote (?P<path>\S+): (?P<size>[\d.]+ (?:bytes|KiB|MiB)(?: \(\d+ bytes\))?), "
    r"schema version (?P<v>\d+), "
    r"(?P<events>\d+) event\(s\), (?P<runs>\d+) run\(s\); quick_check ok\n$"
)


def populate(db: Path, n: int, name: str = "e") -> None:
    """``n`` pushes (evt_<name>0, …), each with one queued run, in a gateway database at ``db``."""

    async def go() -> None:
        store = await SQLiteStore.open(db)
        try:
            for i in range(n):
                event = push_event(f"{name}{i}", at=1_700_000_000 + i)
                await store.record(event, [queued_run(f"{name}{i}", event)])
        finally:
            await store.close()

    asyncio.run(go())


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.db"
    populate(path, 3)
    return path


@pytest.fixture
def target_dir(tmp_path: Path) -> Path:
    path = tmp_path / "backups"
    path.mkdir()
    return path


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[..., None]]:
    """``mount(target, *options)`` runs mount(8), unmounted at the end; skips where it is not permitted."""
    mounted: list[Path] = []

    def mount_(target: Path, *options: str) -> None:
        try:
            done = subprocess.run(
                ["mount", *options, str(target)], capture_output=True, text=True, timeout=30
            )
        except FileNotFoundError:
            pytest.skip("mount(8) is not installed")
        if done.returncode != 0:
            pytest.skip(f"mounting is not permitted here: {done.stderr.strip()}")
        if target not in mounted:
            mounted.append(target)

    yield mount_
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=True, timeout=30)


def backup(db: Path, *args: str | Path) -> tuple[int, str, str]:
    return run("backup", "--db", str(db), *map(str, args))


def left_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_backup_is_a_checked_copy_that_says_what_it_holds(db: Path, target_dir: Path) -> None:
    target = target_dir / "copy.db"
    code, out, err = backup(db, target)
    assert (code, err) == (0, "")
    said = WROTE.match(out)
    assert said is not None, out
    assert said["path"] == str(target)
    assert (said["v"], said["events"], said["runs"]) == (str(len(MIGRATIONS)), "3", "3")
    assert str(target.stat().st_size) in said["size"]
    assert rows(target, "SELECT id FROM events ORDER BY id") == rows(db, "SELECT id FROM events ORDER BY id")
    assert rows(target, "PRAGMA quick_check") == [("ok",)]
    # One self-contained file (no -wal to forget), readable by its owner only: it holds every payload.
    assert left_in(target_dir) == ["copy.db"]
    assert rows(target, "PRAGMA journal_mode") == [("delete",)]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_the_gateway_starts_on_a_backup_and_finds_every_record(db: Path, target_dir: Path) -> None:
    target = target_dir / "copy.db"
    assert backup(db, target)[0] == 0

    async def open_and_close() -> None:  # what `gateway serve --db copy.db` does first
        await (await SQLiteStore.open(target)).close()

    asyncio.run(open_and_close())
    code, out, _ = run("events", "--db", str(target))
    assert code == 0
    assert {"evt_e0", "evt_e1", "evt_e2"} <= set(out.split())
    assert rows(target, "PRAGMA journal_mode") == [("wal",)]  # the store switched the restored file to WAL


def test_a_backup_beside_a_writer_that_commits_all_along_finishes_with_a_consistent_copy(
    db: Path, target_dir: Path
) -> None:
    populate(db, 2000, "big")  # big enough that the copy spans many of the writer's commits
    stop = threading.Event()
    commits: list[float] = []  # how long each commit took

    def write() -> None:
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA synchronous = FULL")
            while not stop.is_set():
                began = time.monotonic()
                conn.execute("UPDATE runs SET attempts = attempts + 1 WHERE rowid = abs(random()) % 2003 + 1")
                commits.append(time.monotonic() - began)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(commits) < 20:
            time.sleep(0.01)
        before = len(commits)
        code, out, err = backup(db, target_dir / "copy.db")
        during = len(commits) - before
    finally:
        stop.set()
        writer.join()
    assert (code, err) == (0, "")
    assert "2003 event(s), 2003 run(s)" in out
    assert during > 0 and max(commits) < 1.0  # the writer went on committing, never waiting on the backup
    assert rows(target_dir / "copy.db", "PRAGMA integrity_check") == [("ok",)]


def test_an_existing_directory_gets_a_file_named_for_the_database_and_the_time(
    db: Path, target_dir: Path
) -> None:
    code, out, _ = backup(db, target_dir)
    assert code == 0
    [name] = left_in(target_dir)
    assert re.fullmatch(r"gateway-\d{8}T\d{6}Z\.db", name)
    assert out.startswith(f"wrote {target_dir / name}: ")


def test_no_database_is_refused_and_none_is_created(tmp_path: Path, target_dir: Path) -> None:
    missing = tmp_path / "missing.db"
    code, out, err = backup(missing, target_dir / "copy.db")
    assert (code, out) == (1, "")
    assert err == (
        f"gateway backup: no database at {missing} (set --db or GATEWAY_DB to the gateway's database file)\n"
    )
    assert not missing.exists()
    assert left_in(target_dir) == []


def test_an_existing_target_is_kept_unless_forced(db: Path, target_dir: Path) -> None:
    target = target_dir / "copy.db"
    target.write_text("yesterday's backup")
    code, _, err = backup(db, target)
    assert code == 1
    assert err == (
        f"gateway backup: {target} already exists: choose another PATH, or pass --force to replace it\n"
    )
    assert target.read_text() == "yesterday's backup"
    assert left_in(target_dir) == ["copy.db"]

    assert backup(db, target, "--force")[0] == 0
    assert rows(target, "SELECT count(*) FROM events") == [(3,)]
    assert left_in(target_dir) == ["copy.db"]


def test_a_missing_target_directory_is_refused(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "copy.db"
    code, _, err = backup(db, target)
    assert code == 1
    fix = "create the directory first, or choose another PATH"
    assert err == f"gateway backup: {target.parent} does not exist: {fix}\n"


def test_a_read_only_target_directory_is_refused_in_one_line(
    db: Path, target_dir: Path, mount: Callable[..., None]
) -> None:
    root = os.geteuid() == 0
    if root:  # root writes through permission bits: make the directory's filesystem read-only
        mount(target_dir, "--bind", str(target_dir))
        mount(target_dir, "-o", "remount,ro,bind")
    else:
        target_dir.chmod(0o555)
    try:
        code, _, err = backup(db, target_dir / "copy.db")
    finally:
        if not root:
            target_dir.chmod(0o755)
    assert code == 1
    reason = "Read-only file system" if root else "Permission denied"
    assert err == f"gateway backup: cannot write in {target_dir} ({reason}): choose another PATH\n"


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", ".lock"])
def test_the_live_database_and_its_files_are_never_a_target_even_forced(db: Path, suffix: str) -> None:
    target = Path(f"{db}{suffix}")
    Path(f"{db}.lock").write_text("4121\n")  # as a gateway before the workers table (0008) left it
    before = target.read_bytes() if target.exists() else None
    code, _, err = backup(db, target, "--force")
    assert code == 1
    what = "is the database to back up" if not suffix else f"is a file of the live database {db}"
    assert err == f"gateway backup: {target} {what}: choose another PATH\n"
    assert (target.read_bytes() if target.exists() else None) == before


def test_a_hard_link_to_the_live_database_is_refused(db: Path, target_dir: Path) -> None:
    link = target_dir / "alias.db"
    os.link(db, link)
    code, _, err = backup(db, link, "--force")
    assert (code, err) == (1, f"gateway backup: {link} is the database to back up: choose another PATH\n")
    assert rows(db, "SELECT count(*) FROM events") == [(3,)]


def test_a_file_that_is_no_gateway_database_leaves_nothing_behind(tmp_path: Path, target_dir: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, but long enough to have a header of sorts\n" * 10)
    code, _, err = backup(text, target_dir / "copy.db")
    assert code == 1
    assert err.startswith(f"gateway backup: cannot back up {text}: file is not a database")
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    code, _, err = backup(empty, target_dir / "copy.db")
    assert (code, err) == (
        1,
        f"gateway backup: {empty} is not a gateway database (it has no schema version)\n",
    )
    assert left_in(target_dir) == []


def test_a_full_disk_fails_the_backup_and_leaves_no_partial_file(
    db: Path, target_dir: Path, mount: Callable[..., None]
) -> None:
    populate(db, 300, "full")  # about 1 MiB of events, runs and indexes: more than the disk holds
    mount(target_dir, "-t", "tmpfs", "-o", "size=256k", "tmpfs")
    code, out, err = backup(db, target_dir / "copy.db")
    assert (code, out) == (1, "")
    assert err == (f"gateway backup: cannot back up {db}: database or disk is full ({target_dir} is full)\n")
    assert left_in(target_dir) == []


def test_a_stopped_gateways_database_in_a_read_only_directory_says_what_is_missing(
    db: Path, tmp_path: Path, target_dir: Path, mount: Callable[..., None]
) -> None:
    assert not Path(f"{db}-shm").exists()  # the store closed it: no -shm until a connection makes one
    view = tmp_path / "read-only"
    view.mkdir()
    mount(view, "--bind", str(db.parent))
    mount(view, "-o", "remount,ro,bind")
    code, _, err = backup(view / db.name, target_dir / "copy.db")
    assert code == 1
    assert err == (
        f"gateway backup: cannot back up {view / db.name}: unable to open database file (with the gateway "
        "stopped, reading the database needs its -shm file: run gateway backup as the gateway's user, who "
        "may write beside it)\n"
    )
    assert left_in(target_dir) == []

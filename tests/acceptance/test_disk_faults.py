"""`gateway serve` on disks that really fail: a full tmpfs (ENOSPC), a file-size limit (EFBIG, which SQLite
reports as a disk I/O error) and a read-only database. A delivery gets 2xx only once it is stored, 503 with
Retry-After otherwise, and the gateway recovers by itself when the disk does."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.store.sqlite.store import SQLiteStore
from tests.support.database import on_disk, stored
from tests.support.deliveries import github_headers, push
from tests.support.process import Gateway, free_port

pytestmark = pytest.mark.acceptance

PUSH = push("abc")

MAX_DELIVERIES = 400  # sent into a failing disk before giving up waiting for the first 503
UNSTORED = {"error": "store_unavailable", "detail": "the event could not be stored; retry later"}


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``mount(target, *options)`` runs mount(8) and unmounts at the end; skips where it is not permitted."""
    mounted: list[Path] = []

    def mount_(target: Path, *options: str) -> Path:
        try:
            done = subprocess.run(
                ["mount", *options, str(target)], capture_output=True, text=True, timeout=30
            )
        except FileNotFoundError:
            pytest.skip("mount(8) is not installed")
        if done.returncode != 0:
            pytest.skip(f"mounting is not permitted here: {done.stderr.strip()}")
        if target not in mounted:  # a remount adds no mount
            mounted.append(target)
        return target

    yield mount_
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=True, timeout=30)


@pytest.fixture
def serve(write_routes: Callable[..., Path], tmp_path: Path) -> Iterator[Callable[[Path], Gateway]]:
    """Start `gateway serve` on a database at a given path; its log stays in tmp_path. Killed at the end."""
    started: list[Gateway] = []

    def start(db: Path) -> Gateway:
        gw = Gateway(write_routes(), db, tmp_path / "gateway.log")
        started.append(gw)
        gw.start()
        return gw

    yield start
    for gw in started:
        gw.stop()


def deliver(gw: Gateway, delivery: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery=delivery), timeout=10
    )


def until_refused(gw: Gateway, accepted: list[str], prefix: str) -> str:
    """Send new deliveries until one gets 503; every one before it must have got 202. Which one got 503."""
    for n in range(MAX_DELIVERIES):
        delivery = f"{prefix}-{n}"
        answer = deliver(gw, delivery)
        if answer.status_code == 503:
            assert (answer.headers["retry-after"], answer.json()) == ("5", UNSTORED)
            return delivery
        assert answer.status_code == 202, answer.text
        accepted.append(delivery)
    raise AssertionError(f"no 503 after {MAX_DELIVERIES} deliveries into a failing disk")


def assert_unavailable(gw: Gateway, refused: str) -> None:
    """While the disk fails: still alive, and the sender's retry is refused again. (/readyz is not asked: its
    probe writes one small row, which can still fit where a delivery's event and runs do not.)"""
    assert httpx.get(f"{gw.url}/healthz", timeout=10).json() == {"status": "ok"}
    assert deliver(gw, refused).status_code == 503


def run_statuses(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())


def assert_stored_once(gw: Gateway, accepted: list[str]) -> None:
    """Every run ends, also those whose end was refused during the fault; then stop the gateway cleanly and
    read the file: each acknowledged delivery once, with both its runs."""
    deadline = time.monotonic() + 20
    while set(run_statuses(gw.db)) != {"completed"}:
        assert time.monotonic() < deadline, f"runs did not all complete: {run_statuses(gw.db)}"
        time.sleep(0.05)
    gw.signal(signal.SIGTERM)
    assert gw.wait(timeout=30) == 0, gw.log.read_text()
    assert on_disk(gw.db) == stored(*accepted)


def logged(gw: Gateway, logger: str) -> list[str]:
    """The messages ``logger`` wrote to the gateway's JSON log."""
    lines = [json.loads(line) for line in gw.log.read_text().splitlines() if line.startswith("{")]
    return [line["message"] for line in lines if line["logger"] == logger]


def assert_logged_the_fault(gw: Gateway, message: str) -> None:
    rolled_back = re.compile(rf"store: rolled back a batch of \d+ writes: {re.escape(message)}")
    assert any(rolled_back.fullmatch(line) for line in logged(gw, "gateway.store"))
    assert "store unavailable: answering 503 for a github delivery" in logged(gw, "gateway.app")


def fill(path: Path) -> int:
    """Write ``path`` until its filesystem is full; how many bytes that took."""
    written = 0
    with path.open("wb", buffering=0) as ballast:
        try:
            while True:
                written += ballast.write(bytes(64 * 1024)) or 0
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return written


def test_a_full_disk_answers_503_and_the_gateway_recovers_by_itself_when_space_returns(
    mount: Callable[..., Path], serve: Callable[[Path], Gateway], tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mount(disk, "-t", "tmpfs", "-o", "size=2m", "tmpfs")
    gw = serve(disk / "gateway.db")
    accepted: list[str] = []
    for n in range(3):
        assert deliver(gw, f"before-{n}").status_code == 202
        accepted.append(f"before-{n}")
    ballast = fill(disk / "ballast")
    refused = until_refused(gw, accepted, "full")
    squeezed = len(accepted) - 3
    assert_unavailable(gw, refused)

    (disk / "ballast").unlink()
    assert deliver(gw, refused).status_code == 202  # the sender's next retry: no restart, no wait
    accepted.append(refused)
    for n in range(3):
        assert deliver(gw, f"after-{n}").status_code == 202
        accepted.append(f"after-{n}")
    assert_logged_the_fault(gw, "database or disk is full")
    assert_stored_once(gw, accepted)
    print(f"\ndisk full: {squeezed} more stored after {ballast} bytes of ballast, then 503; recovered")


def test_a_file_size_limit_answers_503_and_the_gateway_recovers_by_itself_when_it_is_raised(
    serve: Callable[[Path], Gateway], tmp_path: Path
) -> None:
    gw = serve(tmp_path / "gateway.db")
    assert gw.proc is not None
    accepted = ["before-0"]
    assert deliver(gw, "before-0").status_code == 202
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG: SQLite says "disk I/O error".
    files = [gw.db, Path(f"{gw.db}-wal"), gw.log]
    limit = max(path.stat().st_size for path in files) + 64 * 1024
    soft, hard = resource.prlimit(gw.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    refused = until_refused(gw, accepted, "limited")
    squeezed = len(accepted) - 1
    assert_unavailable(gw, refused)

    resource.prlimit(gw.proc.pid, resource.RLIMIT_FSIZE, (soft, hard))
    assert deliver(gw, refused).status_code == 202
    accepted.append(refused)
    assert deliver(gw, "after-0").status_code == 202
    accepted.append("after-0")
    assert_logged_the_fault(gw, "disk I/O error")
    assert_stored_once(gw, accepted)
    print(f"\nfile size limit of {limit} bytes: {squeezed} more stored, then 503; recovered")


def test_a_read_only_database_stops_start_up_with_one_line_naming_the_file_and_the_fix(
    mount: Callable[..., Path], write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    original = tmp_path / "original.db"

    async def create() -> None:
        await (await SQLiteStore.open(original)).close()

    asyncio.run(create())
    db = tmp_path / "gateway.db"
    db.touch()
    mount(db, "--bind", str(original))
    mount(db, "-o", "remount,ro,bind")  # the database file alone is read-only; its directory is not
    argv = ["serve", "--routes", str(write_routes()), "--db", str(db), "--port", str(free_port())]
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *argv], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"gateway serve: {db} is read-only (attempt to write a readonly database): "
        "mount it read-write (or chattr -i), or choose another database file"
    )
    assert "Traceback" not in done.stderr


def test_a_gateway_killed_while_its_disk_is_full_restarts_on_it_and_loses_nothing(
    mount: Callable[..., Path], serve: Callable[[Path], Gateway], tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mount(disk, "-t", "tmpfs", "-o", "size=2m", "tmpfs")
    gw = serve(disk / "gateway.db")
    accepted = ["before-0"]
    assert deliver(gw, "before-0").status_code == 202
    fill(disk / "ballast")
    refused = until_refused(gw, accepted, "full")
    gw.stop()  # kill -9, with the frames of a failed write at the end of the -wal

    gw.start()  # on the still full disk: SQLite recovers the -wal, the gateway serves
    again = deliver(gw, refused)
    assert again.status_code in (202, 503)  # a checkpoint at start-up may have made room
    (disk / "ballast").unlink()
    assert deliver(gw, refused).status_code == (200 if again.status_code == 202 else 202)
    accepted.append(refused)
    assert_stored_once(gw, accepted)

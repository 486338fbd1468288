"""Wake-ups between processes on one database file: runs another store commits (what `gateway replay` and
`rerun` do from a terminal) start in the serving executor at once, not at its next poll. The executor here
polls once an hour, so only a wake-up can start them within the test's time."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import Context, task
from gateway.execution.executor import Executor, ExecutorOptions
from gateway.store.sqlite.wakeup import WakeUps, wake_dir
from tests.support.clock import Clock
from tests.support.records import enqueue


async def test_runs_committed_by_another_store_on_the_file_wake_the_executor_at_once(
    open_store: Callable[..., Any],
) -> None:
    started = asyncio.Event()

    @task(id="woken")
    async def woken(payload: Any, ctx: Context) -> None:
        started.set()

    serving = await open_store(listen=True)
    executor = Executor(serving.runs, {"woken": woken}, ExecutorOptions(poll=3600), clock=Clock())
    stop = asyncio.Event()
    runner = asyncio.create_task(executor.run(stop))
    try:
        await asyncio.sleep(0.1)  # the executor has made its first claim and waits for the hour-long poll
        terminal = await open_store()  # a second store on the same file, as `gateway rerun` opens one
        await enqueue(terminal, Clock(), woken)
        await asyncio.wait_for(started.wait(), timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(runner, timeout=10)


async def test_a_store_that_listens_removes_its_socket_when_it_closes(
    open_store: Callable[..., Any], tmp_path: Path
) -> None:
    store = await open_store(listen=True)
    directory = wake_dir(str(tmp_path / "gateway.db"))
    assert [n for n in os.listdir(directory) if n.startswith(f"{os.getpid()}-")]
    await store.close()
    assert not [n for n in os.listdir(directory) if n.startswith(f"{os.getpid()}-")]


def test_the_directory_is_the_same_for_every_name_of_the_file(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    db.touch()
    (tmp_path / "link.db").symlink_to(db)
    assert wake_dir(str(tmp_path / "link.db")) == wake_dir(str(db))
    assert len(str(wake_dir(str(db)) / "4194304-0123abcd.sock")) < 108  # what a Unix socket path may hold


async def test_a_listener_that_died_is_forgotten_and_notifying_never_raises(tmp_path: Path) -> None:
    db = str(tmp_path / "gateway.db")
    directory = wake_dir(db)
    directory.mkdir(mode=0o700, exist_ok=True)
    (directory / "999999-dead.sock").touch()  # a socket file nobody listens on any more
    wakeups = WakeUps(db)
    try:
        assert wakeups.notify() == 0
    finally:
        wakeups.close()
    assert not (directory / "999999-dead.sock").exists()


async def test_without_a_private_directory_it_does_not_listen_and_says_why(
    tmp_path: Path, caplog: Any
) -> None:
    db = str(tmp_path / "gateway.db")
    directory = wake_dir(db)
    directory.mkdir(mode=0o700, exist_ok=True)
    directory.chmod(0o777)  # writable by anyone: another user could plant sockets
    try:
        assert WakeUps(db).listen(asyncio.get_running_loop(), lambda: None) is False
        assert "wake-ups off" in caplog.text
    finally:
        directory.chmod(0o700)

"""The supervisor of `serve --workers` on real child processes (small Python scripts): each end is said in
words and restarted with a new worker id after a growing backoff; stop drains with SIGTERM, then SIGKILL."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from gateway.children import ChildExit, ChildSpec, Supervisor, how_it_ended

# Each child writes its pid and worker id, then does what its mode says.
CHILD = """
import os, signal, sys, time, ctypes
out, mode = sys.argv[1], sys.argv[2]
with open(out, "a") as f:
    f.write(f"{os.getpid()} {os.environ['GATEWAY_WORKER_ID']}\\n")
if mode == "term-marker":
    signal.signal(signal.SIGTERM, lambda *_: (open(out + ".term", "a").write("x"), sys.exit(0)))
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "exit":
    os._exit(1)
if mode == "segfault":
    ctypes.string_at(0)
time.sleep(60)
"""


def supervisor(
    tmp_path: Path, modes: list[str], exits: list[ChildExit], **settings: float
) -> tuple[Supervisor, Path]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out = tmp_path / "started.txt"

    def spec(slot: int, generation: int) -> ChildSpec:
        argv = (sys.executable, str(script), str(out), modes[slot])
        return ChildSpec(argv, {}, f"worker {slot}", f"wrk_{slot}.{generation}")

    async def on_exit(end: ChildExit) -> None:
        exits.append(end)

    defaults = {"first_backoff": 0.05, "max_backoff": 0.4, "drain_timeout": 5.0}
    return Supervisor(len(modes), spec, on_exit, **{**defaults, **settings}), out


def started(out: Path) -> list[tuple[int, str]]:
    if not out.exists():
        return []
    return [(int(pid), wid) for pid, wid in (line.split() for line in out.read_text().splitlines())]


async def until(condition: object, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[1].startswith("Z"))


async def test_children_run_with_their_own_worker_ids_and_stop_on_sigterm(tmp_path: Path) -> None:
    exits: list[ChildExit] = []
    sup, out = supervisor(tmp_path, ["term-marker", "term-marker"], exits)
    stop = asyncio.Event()
    running = asyncio.create_task(sup.run(stop))
    await until(lambda: len(started(out)) == 2 and len(sup.pids()) == 2)
    assert sorted(wid for _, wid in started(out)) == ["wrk_0.1", "wrk_1.1"]
    stop.set()
    await running
    assert Path(f"{out}.term").read_text() == "xx"  # both got SIGTERM and handled it
    assert sorted((e.worker_id, e.returncode, e.restarting_in) for e in exits) == [
        ("wrk_0.1", 0, None),
        ("wrk_1.1", 0, None),
    ]
    assert not any(alive(pid) for pid, _ in started(out))


@pytest.mark.parametrize(
    ("mode", "how", "sig"),
    [
        ("exit", "exited with status 1", None),
        ("segfault", "was killed by SIGSEGV (a crash in native code)", "SIGSEGV"),
    ],
)
async def test_a_child_that_dies_is_said_how_and_restarted_with_a_new_id(
    tmp_path: Path, mode: str, how: str, sig: str | None
) -> None:
    exits: list[ChildExit] = []
    sup, _ = supervisor(tmp_path, [mode], exits)
    stop = asyncio.Event()
    running = asyncio.create_task(sup.run(stop))
    await until(lambda: len(exits) >= 2)
    stop.set()
    await running
    assert (exits[0].how, exits[0].signal, exits[0].worker_id) == (how, sig, "wrk_0.1")
    assert exits[1].worker_id == "wrk_0.2" and exits[0].restarting_in == 0.05


async def test_a_child_killed_from_outside_is_restarted(tmp_path: Path) -> None:
    exits: list[ChildExit] = []
    sup, out = supervisor(tmp_path, ["sleep"], exits)
    stop = asyncio.Event()
    running = asyncio.create_task(sup.run(stop))
    await until(lambda: len(started(out)) == 1)
    first_pid = started(out)[0][0]
    os.kill(first_pid, 9)
    await until(lambda: len(started(out)) == 2)
    stop.set()
    await running
    assert exits[0].how == "was killed by SIGKILL (the OOM killer or kill -9; see dmesg)"
    assert exits[0].pid == first_pid and started(out)[1][1] == "wrk_0.2"


async def test_a_child_that_keeps_failing_waits_longer_each_time_up_to_the_cap(tmp_path: Path) -> None:
    exits: list[ChildExit] = []
    sup, _ = supervisor(tmp_path, ["exit"], exits)
    stop = asyncio.Event()
    running = asyncio.create_task(sup.run(stop))
    await until(lambda: len(exits) >= 5)
    stop.set()
    await running
    assert [e.restarting_in for e in exits[:5]] == [0.05, 0.1, 0.2, 0.4, 0.4]


async def test_a_child_ignoring_sigterm_is_killed_after_the_drain_timeout(tmp_path: Path) -> None:
    exits: list[ChildExit] = []
    sup, out = supervisor(tmp_path, ["ignore-term"], exits, drain_timeout=0.5)
    stop = asyncio.Event()
    running = asyncio.create_task(sup.run(stop))
    await until(lambda: len(started(out)) == 1)
    await asyncio.sleep(0.2)  # its handler is set
    stop.set()
    await running
    assert exits[0].signal == "SIGKILL" and not alive(started(out)[0][0])


async def test_a_cancelled_supervisor_leaves_no_child_alive(tmp_path: Path) -> None:
    exits: list[ChildExit] = []
    sup, out = supervisor(tmp_path, ["ignore-term", "sleep"], exits)
    running = asyncio.create_task(sup.run(asyncio.Event()))
    await until(lambda: len(started(out)) == 2)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert not any(alive(pid) for pid, _ in started(out))


async def test_a_child_that_cannot_be_started_is_retried_not_raised(tmp_path: Path) -> None:
    exits: list[ChildExit] = []

    def spec(slot: int, generation: int) -> ChildSpec:
        return ChildSpec((str(tmp_path / "missing"),), {}, "worker 0", f"wrk_0.{generation}")

    async def on_exit(end: ChildExit) -> None:
        exits.append(end)

    sup = Supervisor(1, spec, on_exit, first_backoff=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(sup.run(stop))
    await until(lambda: len(exits) >= 2)
    stop.set()
    await running
    assert (exits[0].pid, exits[0].returncode, exits[0].how) == (0, None, "could not be started")


def test_return_codes_in_words() -> None:
    assert how_it_ended(0) == ("exited with status 0", None)
    assert how_it_ended(-15) == ("was killed by SIGTERM", "SIGTERM")
    assert how_it_ended(-6)[0] == "was killed by SIGABRT (an abort, often in native code)"

"""gateway/supervisor.py with real child processes (small `python -c` scripts): each dies as a worker can die
(exit 1, os._exit, SIGSEGV, RLIMIT_AS, a real SIGKILL), and is restarted with backoff and drained at stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.supervisor import ChildExit, ChildSpec, Supervisor, worker_id

pytestmark = pytest.mark.timeout(20)

# A child: dies at its first start (generation 1) by ``DIE``; at any other start (or when ``DIE`` is empty)
# it writes OUT/<worker id>.started holding its pid, then sleeps until SIGTERM, which it marks in <id>.term.
CHILD = """
import os, pathlib, signal, sys, time
out, wid = pathlib.Path(os.environ["OUT"]), os.environ["GATEWAY_WORKER_ID"]
if os.environ["GEN"] == "1":
    {die}
def term(*_):
    (out / (wid + ".term")).write_text("")
    sys.exit(0)
signal.signal(signal.SIGTERM, {on_term})
(out / (wid + ".started")).write_text(str(os.getpid()))
while True:
    time.sleep(1)
"""

DIE = {
    "exit": "os._exit(1)",
    # no core file in the working directory
    "segv": "import ctypes, resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); ctypes.string_at(0)",
    "memory": (
        "import resource\n"
        "    hard = resource.getrlimit(resource.RLIMIT_AS)[1]\n"
        "    resource.setrlimit(resource.RLIMIT_AS, (256 * 2**20, hard))\n"
        "    try:\n"
        "        hog = bytearray(4 * 2**30)\n"
        "    except MemoryError:\n"
        "        (out / 'memory-error').write_text('')\n"
        "        raise"
    ),
    "sigkill": "pass",  # the test kills it
}


def script(die: str = "pass", on_term: str = "term") -> str:
    return CHILD.format(die=die, on_term=on_term)


@dataclass
class Supervised:
    """A Supervisor running in a task, with every ChildExit it reported (and when, by time.monotonic())."""

    supervisor: Supervisor
    stop: asyncio.Event
    task: asyncio.Task[None]
    out: Path
    exits: list[ChildExit] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    async def until(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 15
        while not check():
            if self.task.done():
                self.task.result()  # its exception, if any
                raise AssertionError(f"run() returned while waiting for {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"still waiting for {what}; exits so far: {self.exits}")
            await asyncio.sleep(0.01)

    def started(self, wid: str) -> int | None:
        path = self.out / f"{wid}.started"
        return int(path.read_text()) if path.exists() and path.read_text() else None

    async def wait_started(self, wid: str) -> int:
        await self.until(lambda: self.started(wid) is not None, f"{wid} to start")
        pid = self.started(wid)
        assert pid is not None
        return pid

    async def stopped(self) -> None:
        self.stop.set()
        await self.task


@pytest.fixture
async def supervise(tmp_path: Path) -> AsyncIterator[Callable[..., Supervised]]:
    """Start a Supervisor over children running ``code`` (or ``argv``), with small backoff settings; each one
    started is stopped at the end of the test."""
    made: list[Supervised] = []

    def start(
        code: str = "", *, count: int = 1, argv: tuple[str, ...] | None = None, **options: Any
    ) -> Supervised:
        def spec(slot: int, generation: int) -> ChildSpec:
            command = argv or (sys.executable, "-S", "-c", code)
            env = {"OUT": str(tmp_path), "GEN": str(generation)}
            return ChildSpec(command, env, f"worker {slot}", worker_id("t", slot, generation))

        async def on_exit(end: ChildExit) -> None:
            handle.exits.append(end)
            handle.times.append(time.monotonic())

        settings: dict[str, Any] = {"first_backoff": 0.05, "max_backoff": 0.4, "drain_timeout": 5.0}
        supervisor = Supervisor(count, spec, on_exit, **{**settings, **options})
        stop = asyncio.Event()
        task = asyncio.create_task(supervisor.run(stop))
        handle = Supervised(supervisor, stop, task, tmp_path)
        made.append(handle)
        return handle

    yield start
    for handle in made:
        handle.stop.set()
        with contextlib.suppress(BaseException):
            await handle.task


def gone(pid: int) -> bool:
    """The process is dead and reaped (a zombie still has its /proc entry)."""
    return not Path(f"/proc/{pid}").exists()


async def test_each_child_runs_with_its_own_worker_id_and_stop_drains_them_with_sigterm(
    supervise: Callable[..., Supervised],
) -> None:
    run = supervise(script(), count=2)
    pids = [await run.wait_started("t-1-1"), await run.wait_started("t-2-1")]
    assert [(c.slot, c.worker_id, c.pid, c.restarts) for c in run.supervisor.children()] == [
        (1, "t-1-1", pids[0], 0),
        (2, "t-2-1", pids[1], 0),
    ]

    await run.stopped()

    assert (run.out / "t-1-1.term").exists() and (run.out / "t-2-1.term").exists()
    assert sorted((e.worker_id, e.pid, e.how, e.restarting_in) for e in run.exits) == [
        ("t-1-1", pids[0], "exited with status 0", None),
        ("t-2-1", pids[1], "exited with status 0", None),
    ]
    assert all(gone(pid) for pid in pids)
    assert run.supervisor.children() == []


@pytest.mark.parametrize(
    ("death", "how", "sig"),
    [
        ("exit", "exited with status 1", None),
        ("segv", "was killed by SIGSEGV (a crash in native code)", "SIGSEGV"),
        ("sigkill", "was killed by SIGKILL (out of memory? see dmesg)", "SIGKILL"),
        ("memory", "exited with status 1", None),  # MemoryError under RLIMIT_AS: a traceback, then exit 1
    ],
)
async def test_a_child_that_dies_is_said_how_and_restarted_with_a_new_worker_id(
    supervise: Callable[..., Supervised],
    caplog: pytest.LogCaptureFixture,
    death: str,
    how: str,
    sig: str | None,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.supervisor")
    run = supervise(script(DIE[death]))
    if death == "sigkill":
        os.kill(await run.wait_started("t-1-1"), signal.SIGKILL)

    pid = await run.wait_started("t-1-2")

    [end] = run.exits
    assert (end.slot, end.generation, end.worker_id, end.how, end.signal) == (1, 1, "t-1-1", how, sig)
    assert end.restarting_in == 0.05
    [child] = run.supervisor.children()
    assert (child.worker_id, child.pid, child.restarts) == ("t-1-2", pid, 1)
    if death == "memory":
        assert (run.out / "memory-error").exists()
    [said] = [r for r in caplog.records if r.levelno == logging.ERROR]
    cause = "see its log above for why"
    if death == "segv":
        cause = "see its log above; PYTHONFAULTHANDLER=1 makes a crash print its Python stack"
    assert said.getMessage() == (
        f"worker 1 (pid {end.pid}, worker id t-1-1) {how} after {end.uptime:.1f} s ({cause}); "
        "restarting in 0.05 s"
    )
    await run.stopped()
    assert [e.worker_id for e in run.exits] == ["t-1-1", "t-1-2"]


async def test_a_child_that_keeps_failing_is_restarted_ever_later_up_to_the_cap(
    supervise: Callable[..., Supervised], caplog: pytest.LogCaptureFixture
) -> None:
    run = supervise("raise SystemExit(3)", first_backoff=0.1, max_backoff=0.8)

    await run.until(lambda: len(run.exits) >= 6, "six exits")
    await run.stopped()

    waits = [e.restarting_in for e in run.exits[:6]]
    assert waits == [0.1, 0.2, 0.4, 0.8, 0.8, 0.8]
    gaps = [b - a for a, b in zip(run.times, run.times[1:4], strict=False)]
    assert gaps[0] < gaps[1] < gaps[2]  # each wait longer than the one before
    assert all(gap >= wait * 0.9 for gap, wait in zip(gaps, waits, strict=False))
    assert [e.generation for e in run.exits[:6]] == [1, 2, 3, 4, 5, 6]
    assert "6 ends in a row, each within 60 s of its start: failing at start-up?" in caplog.text
    assert "see its log above for why" in caplog.text


async def test_a_child_that_stayed_up_long_enough_restarts_after_the_first_backoff_again(
    supervise: Callable[..., Supervised],
) -> None:
    # generation 1 exits at once; 2 runs 0.5 s (past healthy_after) and exits; 3 sleeps
    code = "import os, time; time.sleep(0.5 if os.environ['GEN'] == '2' else 0); raise SystemExit(1)"
    run = supervise(code, healthy_after=0.3)

    await run.until(lambda: len(run.exits) >= 3, "three exits")

    assert [e.restarting_in for e in run.exits[:3]] == [0.05, 0.05, 0.1]
    assert run.exits[1].uptime >= 0.3


async def test_a_child_that_ignores_sigterm_is_killed_after_the_drain_timeout(
    supervise: Callable[..., Supervised],
) -> None:
    run = supervise(script(on_term="signal.SIG_IGN"), drain_timeout=0.3)
    pid = await run.wait_started("t-1-1")

    await run.stopped()

    [end] = run.exits
    assert end.how == "was killed by SIGKILL (it did not stop within 0.3 s of SIGTERM)"
    assert (end.signal, end.restarting_in) == ("SIGKILL", None)
    assert gone(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no longer a child of this process


async def test_cancelling_run_leaves_no_child_alive(supervise: Callable[..., Supervised]) -> None:
    run = supervise(script(on_term="signal.SIG_IGN"), count=2)
    pids = [await run.wait_started("t-1-1"), await run.wait_started("t-2-1")]

    run.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run.task

    assert all(gone(pid) for pid in pids)
    assert run.exits == []  # a cancelled run() does not call on_exit
    assert run.supervisor.children() == []


@pytest.mark.parametrize("problem", ["missing", "not executable"])
async def test_a_child_that_cannot_be_started_is_said_and_tried_again(
    supervise: Callable[..., Supervised], caplog: pytest.LogCaptureFixture, tmp_path: Path, problem: str
) -> None:
    program = tmp_path / "worker"
    if problem == "not executable":
        program.write_text("#!/bin/sh\n")
        program.chmod(0o644)
    reason = "No such file or directory" if problem == "missing" else "Permission denied"
    run = supervise(argv=(str(program),))

    await run.until(lambda: len(run.exits) >= 3, "three attempts")
    await run.stopped()

    assert {(e.pid, e.returncode, e.how) for e in run.exits} == {
        (0, None, f"could not be started: {reason} ({program})")
    }
    assert [e.restarting_in for e in run.exits[:3]] == [0.05, 0.1, 0.2]
    assert f"worker 1 could not be started: {reason} ({program}) (check its command line)" in caplog.text


async def test_stop_during_the_backoff_ends_run_at_once_without_a_restart(
    supervise: Callable[..., Supervised],
) -> None:
    run = supervise("raise SystemExit(1)", first_backoff=3600, max_backoff=3600)
    await run.until(lambda: len(run.exits) == 1, "the first exit")

    await run.stopped()  # the per-test timeout fails this if the hour's wait is not cut short

    assert [e.generation for e in run.exits] == [1]


async def test_an_on_exit_that_raises_is_logged_and_the_child_still_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[ChildExit] = []

    async def on_exit(end: ChildExit) -> None:
        calls.append(end)
        raise RuntimeError("the store is down")

    def spec(slot: int, generation: int) -> ChildSpec:
        return ChildSpec((sys.executable, "-S", "-c", "pass"), {}, "worker 1", f"w-{generation}")

    stop = asyncio.Event()
    task = asyncio.create_task(Supervisor(1, spec, on_exit, first_backoff=0.01).run(stop))
    while len(calls) < 2:
        await asyncio.sleep(0.01)
    stop.set()
    await task

    assert "on_exit failed for worker 1 (worker id w-1); going on" in caplog.text
    assert "RuntimeError: the store is down" in caplog.text


async def test_a_spec_that_repeats_a_worker_id_is_refused_and_no_child_is_left(tmp_path: Path) -> None:
    def spec(slot: int, generation: int) -> ChildSpec:
        return ChildSpec((sys.executable, "-S", "-c", "pass"), {}, "worker 1", "always-the-same")

    async def on_exit(end: ChildExit) -> None:
        pass

    with pytest.raises(ValueError, match="repeated worker id 'always-the-same'"):
        await Supervisor(1, spec, on_exit, first_backoff=0.01).run(asyncio.Event())


# `python -c` parent: supervises two children of CHILD_OF_CTRL_C, stops on SIGINT as `gateway serve` does,
# prints one line per ChildExit.
PARENT = """
import asyncio, signal, sys
from gateway.supervisor import ChildSpec, Supervisor, worker_id
code, out = sys.argv[1], sys.argv[2]
async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    def spec(slot, gen):
        argv = (sys.executable, "-S", "-c", code)
        return ChildSpec(argv, {"OUT": out}, f"worker {slot}", worker_id("t", slot, gen))
    async def on_exit(end):
        print(end.worker_id, end.how, flush=True)
    await Supervisor(2, spec, on_exit, drain_timeout=5).run(stop)
asyncio.run(main())
"""

# Child 1 stops on SIGINT or SIGTERM like `gateway worker` (noting each signal), taking 0.3 s to drain;
# child 2 keeps Python's default SIGINT (KeyboardInterrupt), so Ctrl-C kills it.
CHILD_OF_CTRL_C = """
import os, pathlib, signal, time
out, wid = pathlib.Path(os.environ["OUT"]), os.environ["GATEWAY_WORKER_ID"]
got = []
def note(sig, _):
    got.append(signal.Signals(sig).name)
    (out / (wid + ".signals")).write_text(" ".join(got))
if wid.startswith("t-1-"):
    signal.signal(signal.SIGINT, note)
    signal.signal(signal.SIGTERM, note)
(out / (wid + ".started")).write_text(str(os.getpid()))
while not got:
    time.sleep(0.01)
time.sleep(0.3)
"""


def test_ctrl_c_in_a_terminal_stops_parent_and_children_once_without_a_restart(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD_OF_CTRL_C, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a shell gives a foreground job: Ctrl-C reaches all of it
    )
    try:
        deadline = time.monotonic() + 15
        while not all((tmp_path / f"t-{slot}-1.started").exists() for slot in (1, 2)):
            assert parent.poll() is None and time.monotonic() < deadline, "the children did not start"
            time.sleep(0.01)

        os.killpg(parent.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        out, _ = parent.communicate(timeout=15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()

    assert parent.returncode == 0
    first, second = sorted(out.splitlines())
    assert first == "t-1-1 exited with status 0"
    # child 2 dies of the SIGINT, or of the drain's SIGTERM while its KeyboardInterrupt unwinds
    assert second in ("t-2-1 was killed by SIGINT (Ctrl-C?)", "t-2-1 was killed by SIGTERM")
    assert (tmp_path / "t-1-1.signals").read_text() == "SIGINT SIGTERM"  # one SIGTERM from the drain, no more
    assert not list(tmp_path.glob("t-*-2.started"))  # nothing restarted

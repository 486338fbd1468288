"""Keeps N child processes (`gateway worker`) running beside intake: each is restarted with backoff however it
ends, with how it died said in words, and drained (SIGTERM, then SIGKILL past a deadline) when stopped.
Stdlib only. I/O: child processes and signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from gateway.aio import wait_first

log = logging.getLogger("gateway.supervisor")

# Process groups: children stay in the parent's group, so whatever ends the group (a terminal's Ctrl-C or
# hang-up, `kill -- -PGID`, a service manager) reaches them too and none is left behind. A Ctrl-C therefore
# reaches the parent and every child at once. That is one stop, not two: the parent sets its stop event once
# and sends each live child one SIGTERM (never a second signal or an early SIGKILL), and a `gateway worker`
# treats SIGINT and SIGTERM alike (both set its one stop event). A child that dies of the SIGINT a moment
# before the parent's handler has set ``stop`` is not restarted: its restart waits in backoff (1 s by
# default), and ``stop`` ends that wait at once. (Starting children with SIGINT ignored would need
# preexec_fn, unsafe in a process with threads, and a worker's own SIGINT handler would undo it anyway.)

_CRASH = "a crash in native code"
_WHY = {
    signal.SIGSEGV: _CRASH,
    signal.SIGBUS: _CRASH,
    signal.SIGILL: _CRASH,
    signal.SIGFPE: _CRASH,
    signal.SIGABRT: "an abort, often a failed check in native code",
    signal.SIGKILL: "out of memory? see dmesg",
    signal.SIGINT: "Ctrl-C?",
}


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start one child: its full command line, variables over this process's environment, a name for
    the log ("worker 1"), and its worker id, given to it as GATEWAY_WORKER_ID (a new one at every start)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    name: str
    worker_id: str


@dataclass(frozen=True, slots=True)
class ChildExit:
    """How one start of a child ended. ``pid`` is 0 and ``returncode`` None when it could not be started."""

    slot: int
    generation: int
    worker_id: str
    pid: int
    returncode: int | None
    signal: str | None  # "SIGSEGV", "SIGKILL", ... when a signal ended it
    how: str  # in words: "exited with status 1", "was killed by SIGSEGV (a crash in native code)"
    uptime: float  # seconds
    restarting_in: float | None  # seconds; None: not restarted (the supervisor is stopping)


@dataclass(frozen=True, slots=True)
class Child:
    """A child running now, for logs and metrics. ``started`` is a time.monotonic() value."""

    slot: int
    name: str
    worker_id: str
    pid: int
    started: float
    restarts: int  # how many times this slot was started again


def worker_id(prefix: str, slot: int, generation: int) -> str:
    """The worker id of one start: ``wrk-3f2a-1-4``. ``prefix`` should be new for each supervising process
    (generations start again at 1), so an id is never reused across restarts of intake either."""
    return f"{prefix}-{slot}-{generation}"


def describe(returncode: int) -> tuple[str, str | None]:
    """(how it ended in words, signal name or None) for a return code as asyncio reports it (-N: signal N)."""
    if returncode >= 0:
        return f"exited with status {returncode}", None
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"was killed by signal {-returncode}", f"SIG{-returncode}"
    why = _WHY.get(sig)
    return f"was killed by {sig.name}" + (f" ({why})" if why else ""), sig.name


class Supervisor:
    """Keeps ``count`` children (slots 1..count) running until :meth:`run`'s ``stop`` is set.

    ``spec(slot, generation)`` says how to start each one (generation 1, 2, ... per slot); ``on_exit`` hears
    of every end, before that slot is started again (at shutdown, before run returns); what it raises is
    logged. A restart waits ``first_backoff`` seconds, doubling up to ``max_backoff`` while the child keeps
    dying, back to the first once a child has stayed up ``healthy_after`` seconds. At ``stop`` each child gets
    SIGTERM, and SIGKILL if it is still there ``drain_timeout`` seconds later.
    """

    def __init__(
        self,
        count: int,
        spec: Callable[[int, int], ChildSpec],
        on_exit: Callable[[ChildExit], Awaitable[None]],
        *,
        drain_timeout: float = 35.0,
        first_backoff: float = 1.0,
        max_backoff: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        if not 0 < first_backoff <= max_backoff:
            raise ValueError(f"need 0 < first_backoff <= max_backoff, not {first_backoff}, {max_backoff}")
        self.count, self._spec, self._on_exit = count, spec, on_exit
        self.drain_timeout, self.healthy_after = drain_timeout, healthy_after
        self.first_backoff, self.max_backoff = first_backoff, max_backoff
        self._live: dict[int, tuple[asyncio.subprocess.Process, Child]] = {}
        self._ids: set[str] = set()

    def children(self) -> list[Child]:
        """The children running now (a slot waiting for its restart has none), by slot."""
        return [child for _, (_, child) in sorted(self._live.items())]

    async def run(self, stop: asyncio.Event) -> None:
        """Start every child and keep them running until ``stop``; then drain them and return.

        Cancelled, it SIGKILLs every child at once and reaps it (on_exit is not called). A ``spec`` that
        raises or repeats a worker id is a bug of the caller: run() kills every child and raises it. No child
        outlives run(), however it ends."""
        slots = [asyncio.create_task(self._keep(slot, stop), name=f"child {slot}") for slot in self._slots()]
        try:
            await asyncio.gather(*slots)
        finally:
            for task in slots:
                task.cancel()
            for proc, _ in self._live.values():  # synchronously: even a second cancel cannot skip it
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            for proc, child in list(self._live.values()):
                log.warning(
                    "%s (pid %d, worker id %s) killed with SIGKILL: its supervisor was cancelled or failed",
                    *(child.name, child.pid, child.worker_id),
                )
                with contextlib.suppress(Exception):
                    await proc.wait()
            await asyncio.gather(*slots, return_exceptions=True)
            self._live.clear()

    def _slots(self) -> range:
        return range(1, self.count + 1)

    async def _keep(self, slot: int, stop: asyncio.Event) -> None:
        """One slot: start, wait for the end, tell on_exit, back off, start again, until ``stop``."""
        generation, backoff, fast = 0, self.first_backoff, 0
        while not stop.is_set():
            generation += 1
            spec = self._spec(slot, generation)
            if spec.worker_id in self._ids:
                raise ValueError(f"spec({slot}, {generation}) repeated worker id {spec.worker_id!r}")
            self._ids.add(spec.worker_id)
            started = time.monotonic()
            pid, returncode, how, sig = await self._one(slot, generation, spec, stop)
            uptime = time.monotonic() - started
            if uptime >= self.healthy_after:
                backoff, fast = self.first_backoff, 0
            else:
                fast += 1
            stopping = stop.is_set()
            wait = None if stopping else backoff
            end = ChildExit(slot, generation, spec.worker_id, pid, returncode, sig, how, uptime, wait)
            _log_exit(spec, end, fast, self.healthy_after)
            try:
                await self._on_exit(end)
            except Exception:
                log.exception("on_exit failed for %s (worker id %s); going on", spec.name, spec.worker_id)
            if stopping:
                return
            await wait_first(stop.wait(), timeout=backoff)  # stop ends the wait at once: no restart
            backoff = min(backoff * 2, self.max_backoff)

    async def _one(
        self, slot: int, generation: int, spec: ChildSpec, stop: asyncio.Event
    ) -> tuple[int, int | None, str, str | None]:
        """Start one child and wait for its end; at ``stop``, SIGTERM it (once), SIGKILL it past the deadline.
        Returns (pid, return code, how it ended in words, signal name); pid 0 when it could not start."""
        env = {**os.environ, **spec.env, "GATEWAY_WORKER_ID": spec.worker_id}
        try:
            proc = await asyncio.create_subprocess_exec(*spec.argv, env=env, stdin=asyncio.subprocess.DEVNULL)
        except (OSError, ValueError) as exc:  # ENOENT, EACCES, ENOEXEC, a NUL in argv: an exit like another
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            program = spec.argv[0] if spec.argv else "an empty argv"
            return 0, None, f"could not be started: {reason} ({program})", None
        child = Child(slot, spec.name, spec.worker_id, proc.pid, time.monotonic(), generation - 1)
        self._live[slot] = (proc, child)
        log.info("%s started (pid %d, worker id %s)", spec.name, proc.pid, spec.worker_id)
        ended = asyncio.ensure_future(proc.wait())
        killed = False
        try:
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait([ended, stopping], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            if not ended.done():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.shield(ended), self.drain_timeout)
                except TimeoutError:
                    log.warning(
                        "%s (pid %d) still running %.3g s after SIGTERM: sending SIGKILL",
                        *(spec.name, proc.pid, self.drain_timeout),
                    )
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    killed = True
            returncode = await ended
        finally:
            if not ended.done():  # cancelled: run() kills and reaps it
                ended.cancel()
            else:
                del self._live[slot]
        how, sig = describe(returncode)
        if killed and returncode == -signal.SIGKILL:
            how = f"was killed by SIGKILL (it did not stop within {self.drain_timeout:.3g} s of SIGTERM)"
        return proc.pid, returncode, how, sig


def _log_exit(spec: ChildSpec, end: ChildExit, fast: int, healthy_after: float) -> None:
    """One line per end, naming the child, its pid, how it died, and when it starts again."""
    who = f"{spec.name} (pid {end.pid}, worker id {end.worker_id})" if end.pid else spec.name
    if end.restarting_in is None:  # stopping: exiting now is what was asked
        expected = end.returncode == 0 or end.signal in ("SIGTERM", "SIGINT")
        log.log(logging.INFO if expected else logging.WARNING, "%s stopped: it %s", who, end.how)
        return
    if end.pid == 0:
        cause = "check its command line"
    elif end.returncode == 0:
        cause = "nothing asked it to stop; see its log above"
    elif _CRASH in end.how:  # a crash prints nothing by itself
        cause = "see its log above; PYTHONFAULTHANDLER=1 makes a crash print its Python stack"
    else:
        cause = "see its log above for why"
    if fast > 1:
        within = f"{healthy_after:.3g} s"
        cause += f"; {fast} ends in a row, each within {within} of its start: failing at start-up?"
    ran = f" after {end.uptime:.1f} s" if end.pid else ""
    log.log(
        logging.WARNING if end.returncode == 0 else logging.ERROR,
        "%s %s%s (%s); restarting in %.3g s",
        *(who, end.how, ran, cause, end.restarting_in),
    )

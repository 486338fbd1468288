"""The children of `gateway serve --workers N`: N `gateway worker` processes on this host, each restarted with
backoff whenever it ends, however it ends, with the way it died said in words; drained with SIGTERM (then
SIGKILL past a deadline) when intake stops. Stdlib only. I/O: child processes and signals.
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


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start one child: its command line, variables over this process's environment, a name for the
    log, and its worker id (given to it as GATEWAY_WORKER_ID: new at every start)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    name: str
    worker_id: str


@dataclass(frozen=True, slots=True)
class ChildExit:
    """How one start of a child ended."""

    slot: int
    generation: int
    worker_id: str
    pid: int  # 0: it could not be started at all
    returncode: int | None
    signal: str | None  # SIGSEGV, SIGKILL, … when a signal ended it
    how: str  # in words: "was killed by SIGSEGV (a crash in native code)"
    uptime: float
    restarting_in: float | None  # None: not restarted (intake is stopping)


_WHY = {
    signal.SIGSEGV: "a crash in native code",
    signal.SIGBUS: "a crash in native code",
    signal.SIGABRT: "an abort, often in native code",
    signal.SIGKILL: "the OOM killer or kill -9; see dmesg",
}


def how_it_ended(returncode: int) -> tuple[str, str | None]:
    """(words, signal name) for a child's return code as asyncio reports it (-N: signal N)."""
    if returncode >= 0:
        return f"exited with status {returncode}", None
    sig = signal.Signals(-returncode)
    why = _WHY.get(sig)
    return f"was killed by {sig.name}" + (f" ({why})" if why else ""), sig.name


class Supervisor:
    """Keeps ``count`` children running until :meth:`run`'s ``stop`` is set. ``on_exit`` hears of every
    end before the child is started again (or, at shutdown, before run returns); what it raises is logged.
    A child's restart waits ``first_backoff`` seconds, doubling up to ``max_backoff`` for children that keep
    failing, back to the first once a child stayed up ``healthy_after`` seconds."""

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
        self.count, self.spec, self.on_exit = count, spec, on_exit
        self.drain_timeout = drain_timeout
        self.first_backoff, self.max_backoff, self.healthy_after = first_backoff, max_backoff, healthy_after
        self._procs: dict[int, asyncio.subprocess.Process] = {}

    def pids(self) -> dict[int, int]:
        """Slot -> pid of the children running now."""
        return {slot: p.pid for slot, p in self._procs.items() if p.returncode is None}

    async def run(self, stop: asyncio.Event) -> None:
        slots = [
            asyncio.create_task(self._keep(slot, stop), name=f"worker-{slot}") for slot in range(self.count)
        ]
        try:
            await asyncio.gather(*slots)
        finally:  # cancelled, or a bug: no child may outlive this
            for task in slots:
                task.cancel()
            await asyncio.gather(*slots, return_exceptions=True)
            for proc in self._procs.values():
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    with contextlib.suppress(Exception):
                        await proc.wait()

    async def _keep(self, slot: int, stop: asyncio.Event) -> None:
        generation, backoff = 0, self.first_backoff
        while not stop.is_set():
            generation += 1
            spec = self.spec(slot, generation)
            started = time.monotonic()
            returncode, pid = await self._one(slot, spec, stop)
            uptime = time.monotonic() - started
            if uptime >= self.healthy_after:
                backoff = self.first_backoff
            stopping = stop.is_set()
            if returncode is None:
                how, sig = "could not be started", None
            else:
                how, sig = how_it_ended(returncode)
            wait = None if stopping else backoff
            end = ChildExit(slot, generation, spec.worker_id, pid, returncode, sig, how, uptime, wait)
            if stopping:
                log.info("%s (pid %d) %s", spec.name, pid, how)
            else:
                log.error(
                    "%s (pid %d, worker %s) %s after %.1f s; its log is above; restarting in %.0f s",
                    *(spec.name, pid, spec.worker_id, how, uptime, backoff),
                )
            try:
                await self.on_exit(end)
            except Exception:
                log.exception("recovering after %s failed", spec.name)
            if stopping:
                return
            await wait_first(stop.wait(), timeout=backoff)  # stop ends the wait at once
            backoff = min(backoff * 2, self.max_backoff)

    async def _one(self, slot: int, spec: ChildSpec, stop: asyncio.Event) -> tuple[int | None, int]:
        """Start the child and wait for its end; at ``stop``, SIGTERM it, and SIGKILL past the deadline.
        (return code, pid); None when it could not be started."""
        env = {**os.environ, **spec.env, "GATEWAY_WORKER_ID": spec.worker_id}
        try:
            proc = await asyncio.create_subprocess_exec(*spec.argv, env=env)
        except OSError as exc:
            log.error("%s could not be started (%s): %s", spec.name, exc.strerror, " ".join(spec.argv))
            return None, 0
        self._procs[slot] = proc
        ended = asyncio.ensure_future(proc.wait())
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
                    "%s (pid %d) did not stop within %.0f s: SIGKILL", spec.name, proc.pid, self.drain_timeout
                )
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        return await ended, proc.pid

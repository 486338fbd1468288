"""Who this process is, for the workers table, and whether a worker registered on this host is still alive:
its pid running *and* being the same process (boot id and start time), so a pid reused after a crash, or a
container restarted as pid 1 again, is not taken for the worker that died. I/O: /proc and signals.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from gateway.model import STOPPED, TaskWorker

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def host() -> str:
    return socket.gethostname()


def process_identity(pid: int) -> str | None:
    """``<boot id>:<start time in clock ticks>`` of process ``pid``, or None where /proc cannot tell (not
    Linux, or the process is gone)."""
    try:
        with open(_BOOT_ID, encoding="ascii") as f:
            boot = f.read().strip()
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold anything: count fields after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None


def running(pid: int, process: str | None) -> bool:
    """Whether the process that registered as ``pid`` (and ``process``: see process_identity) runs now."""
    if process is not None:
        return process_identity(pid) == process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, but surely not ours any more
        return True
    return True


def gone(workers: Iterable[TaskWorker], here: str, *, besides: str) -> list[str]:
    """The ids of the workers registered on host ``here``, not stopped cleanly and not ``besides`` (the
    caller itself), whose process no longer runs: their runs can be recovered at once, not after their
    lease. Workers on other hosts are judged by their leases alone."""
    return [
        w.id
        for w in workers
        if w.host == here and w.status != STOPPED and w.id != besides and not running(w.pid, w.process)
    ]


def this_worker(
    worker_id: str,
    kind: str,
    tasks: Iterable[str],
    queues: Iterable[str] | None,
    concurrency: int,
    version: str,
    now: float,
) -> TaskWorker:
    """This process as the workers table holds it, starting ``now``."""
    pid = os.getpid()
    return TaskWorker(
        id=worker_id,
        kind=kind,
        host=host(),
        pid=pid,
        process=process_identity(pid),
        tasks=tuple(sorted(tasks)),
        queues=None if queues is None else tuple(sorted(queues)),
        concurrency=concurrency,
        version=version,
        started_at=now,
        heartbeat_at=now,
    )

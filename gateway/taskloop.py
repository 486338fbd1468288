"""The tasks' own event loop, on its own thread: async task code that blocks (a sync call inside an
``async def`` task) stalls the other async tasks, never ingest, the store or the executor. A watchdog
thread says which run blocks it. I/O: two threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("gateway.executor")
STALL = 1.0  # seconds without a turn of the tasks' loop before the watchdog names the run holding it
BLOCKING_ADVICE = (
    "sync code inside an async task holds every async task's turn (ingest is not affected); "
    "declare the task with `def` to run it on the worker threads, or call the blocking code with "
    "`await asyncio.to_thread(...)`"
)


class TaskLoop:
    """Runs coroutines on a private event loop thread; :meth:`call` awaits one from the caller's loop.

    Cancelling the caller (an attempt's timeout, shutdown) cancels the task at its next ``await``: a task
    stuck in sync code is abandoned, not stopped, like a thread (Python cannot kill either).
    """

    def __init__(self, *, stall: float = STALL, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall, self.clock = stall, clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._stopping = threading.Event()
        self._turn = clock()  # when the loop last ran the watchdog's beat
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the loop's thread and its watchdog (idempotent)."""
        if self._thread is not None:
            return
        ready = threading.Event()
        self._turn = self.clock()
        self._thread = threading.Thread(target=self._main, args=(ready,), name="gateway-tasks", daemon=True)
        self._thread.start()
        ready.wait()
        self._watchdog = threading.Thread(target=self._watch, name="gateway-tasks-watchdog", daemon=True)
        self._watchdog.start()

    async def call(self, coro: Coroutine[Any, Any, Any], label: str) -> Any:
        """Run ``coro`` on the tasks' loop as an asyncio task named ``label``; its result or exception.

        The caller's contextvars (the attempt's span) go with it: the callback that creates the task runs in
        a copy of the caller's context, and the task inherits that."""
        self.start()
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(_named(coro, label), self._loop)
        return await asyncio.wrap_future(future)  # cancelling this cancels the task on the tasks' loop

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what still runs, stop the loop and join its thread (a loop stuck in sync code is left
        behind: its thread is a daemon and dies with the process)."""
        self._stopping.set()
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already stopped
            loop.call_soon_threadsafe(_cancel_all, loop)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the tasks' event loop did not stop within %.0f s: %s", timeout, BLOCKING_ADVICE)
        if self._watchdog is not None:
            self._watchdog.join(timeout)

    def _main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
            left = asyncio.all_tasks(loop)  # cancelled by close(): let them unwind, briefly
            if left:
                loop.run_until_complete(asyncio.wait(left, timeout=1.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def _beat(self) -> None:
        with self._lock:
            self._turn = self.clock()

    def _watch(self) -> None:
        """Every half stall, ask the loop for a turn; when none came for ``stall`` seconds, name the run
        holding it (once per stall)."""
        assert self._loop is not None
        warned = False
        while not self._stopping.wait(self.stall / 2):
            with self._lock:
                held = self.clock() - self._turn
            if held < self.stall:
                warned = False
            elif not warned:
                warned = True
                current = asyncio.current_task(self._loop)
                who = current.get_name() if current is not None else "task code"
                log.warning("%s has blocked the tasks' event loop for %.1f s: %s", who, held, BLOCKING_ADVICE)
            with contextlib.suppress(RuntimeError):  # closed under us
                self._loop.call_soon_threadsafe(self._beat)


async def _named(coro: Coroutine[Any, Any, Any], label: str) -> Any:
    task = asyncio.current_task()
    if task is not None:
        task.set_name(label)
    return await coro


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.call_soon(loop.stop)

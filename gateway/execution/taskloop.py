"""The tasks' own event loop, on its own thread: async task code that blocks (a sync call inside an
``async def`` task) stalls the other async tasks, never ingest, the store or the executor. A watchdog
thread says which run blocks it. I/O: two threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
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
        self._caller: asyncio.AbstractEventLoop | None = None  # the loop awaiting the results
        self._inbox: list[_Call] = []  # calls made in this turn of the caller's loop (its thread only)
        self._outbox: list[_Call] = []  # calls finished in this turn of the tasks' loop (its thread only)

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

        It runs in a copy of the caller's contextvars (the attempt's span). The calls made in one turn of
        the caller's loop cross in one hop, and the results finished in one turn of the tasks' loop come
        back in one: a claim of many runs costs two thread wake-ups, not two per run."""
        self.start()
        caller = asyncio.get_running_loop()
        self._caller = caller
        call = _Call(coro, label, contextvars.copy_context(), caller.create_future())
        if not self._inbox:
            caller.call_soon(self._send)
        self._inbox.append(call)
        try:
            return await call.waiter
        except asyncio.CancelledError:
            call.cancelled = True  # read by _start_all; or, once started, cancel the task there
            if call.task is not None:
                self._threadsafe(self._loop, call.task.cancel)
            raise

    # -- the two hops: the caller's loop -> the tasks' loop -> the caller's loop -------------------------

    def _send(self) -> None:
        batch, self._inbox = self._inbox, []
        assert self._loop is not None
        if not self._threadsafe(self._loop, self._start_all, batch):
            for call in batch:
                call.coro.close()
                _settle(call, None, RuntimeError("the tasks' event loop is closed"))

    def _start_all(self, batch: list[_Call]) -> None:
        assert self._loop is not None
        for call in batch:
            if call.cancelled:
                call.coro.close()
                continue
            call.task = self._loop.create_task(call.coro, name=call.label, context=call.context)
            call.task.add_done_callback(partial(self._finished, call))
            if call.cancelled:  # cancelled while the task was being created
                call.task.cancel()

    def _finished(self, call: _Call, task: asyncio.Task[Any]) -> None:
        assert self._loop is not None
        if not self._outbox:
            self._loop.call_soon(self._reply)
        self._outbox.append(call)

    def _reply(self) -> None:
        batch, self._outbox = self._outbox, []
        if self._caller is not None:
            self._threadsafe(self._caller, _settle_all, batch)

    @staticmethod
    def _threadsafe(loop: asyncio.AbstractEventLoop | None, fn: Callable[..., Any], *args: Any) -> bool:
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # that loop is closed
            return False
        return True

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


@dataclass(slots=True)
class _Call:
    """One call crossing to the tasks' loop. ``waiter`` belongs to the caller's loop, ``task`` to the tasks'
    loop; ``cancelled`` and ``task`` are each written by one thread and read by the other."""

    coro: Coroutine[Any, Any, Any]
    label: str
    context: contextvars.Context
    waiter: asyncio.Future[Any]
    task: asyncio.Task[Any] | None = None
    cancelled: bool = False


def _settle_all(batch: list[_Call]) -> None:
    for call in batch:
        task = call.task
        assert task is not None
        if task.cancelled():
            if not call.waiter.done():
                call.waiter.cancel()
        else:
            _settle(call, task.result() if task.exception() is None else None, task.exception())


def _settle(call: _Call, result: Any, exc: BaseException | None) -> None:
    if call.waiter.done():  # the caller gave up (its timeout): nobody waits for this
        return
    if exc is not None:
        call.waiter.set_exception(exc)
    else:
        call.waiter.set_result(result)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.call_soon(loop.stop)

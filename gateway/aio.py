"""asyncio helpers shared by the long-running loops (executor, bulk-job worker). Does no I/O of its own."""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_first(*waits: Any, timeout: float) -> None:
    """Wait until the first of ``waits`` is done, or ``timeout`` seconds; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()

"""Work in the background of `gateway serve`: bulk replay/rerun jobs, and the periodic retention prune.

Does I/O through the service. A job is worked in chunks under a lease: whoever holds it (this gateway, or
a `gateway replay` in a terminal) renews the lease with each chunk; a job whose holder died is taken over
when its lease lapses, from the last committed chunk.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from gateway.aio import wait_first
from gateway.errors import GatewayError, Invalid, StoreError
from gateway.model import FAILED, JOB_RUNNING, Job
from gateway.records.bulk import Bulk
from gateway.records.service import Service

log = logging.getLogger("gateway.jobs")

CHUNK = 100  # items per transaction
LEASE = 30.0  # seconds a job stays with its holder without a chunk committed


def owner_name(kind: str) -> str:
    """Who holds a job, for `gateway jobs`: ``serve:1234@host`` or ``cli:1234@host``."""
    return f"{kind}:{os.getpid()}@{os.uname().nodename}"


def holder_gone(owner: str | None) -> bool:
    """Whether ``owner`` names a process on this machine that no longer runs (its job can be taken at once,
    without waiting for its lease to lapse). False when it cannot tell: another host, or not our format."""
    if owner is None:
        return False
    _, _, rest = owner.partition(":")
    pid, _, host = rest.partition("@")
    if not pid.isdigit() or host != os.uname().nodename:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


async def work(
    bulk: Bulk,
    job: Job,
    owner: str,
    *,
    chunk: int = CHUNK,
    lease: float = LEASE,
    on_progress: Callable[[Job], None] | None = None,
    stop: asyncio.Event | None = None,
) -> Job:
    """Work ``job`` (held by ``owner``) chunk by chunk until it is done, canceled, taken over, or ``stop``
    is set (the job is then released for anyone to resume). Returns the job as it is at the end."""
    while job.status == JOB_RUNNING:
        if stop is not None and stop.is_set():
            await bulk.store.jobs.release_job(job.id, owner=owner, now=bulk.clock())
            return await bulk.job(job.id)
        try:
            job = await bulk.work_chunk(job, owner, size=chunk, lease=lease)
        except Invalid:  # canceled meanwhile, or the lease lapsed and someone else holds it now
            return await bulk.job(job.id)
        except StoreError:
            raise
        except GatewayError as exc:  # e.g. the config lost a source mid-job: fail it with the reason
            failed, now = str(exc), bulk.clock()
            await bulk.store.jobs.end_job(job.id, status=FAILED, now=now, error=failed, owner=owner)
            return await bulk.job(job.id)
        if on_progress is not None:
            on_progress(job)
        await asyncio.sleep(0)  # let requests in between chunks
    return job


class Worker:
    """In `gateway serve`: takes running jobs nobody holds (new from the API, or orphaned by a crash) and
    works them; prunes by retention every ``prune_every`` seconds when routes.yaml sets any."""

    def __init__(self, service: Service, *, poll: float = 5.0, prune_every: float = 600.0) -> None:
        self.service = service
        self.poll = poll
        self.prune_every = prune_every
        self.owner = owner_name("serve")
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """A job was created: look now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(self._jobs(stop), self._prunes(stop))

    async def _jobs(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()  # before looking, so a notify() that comes during the look is not lost
            try:
                job = await self.service.store.jobs.take_job(
                    owner=self.owner, now=self.service.clock(), lease=LEASE
                )
                if job is not None:
                    log.info(
                        "job %s: %s of %d item(s) started by %s", job.id, job.kind, job.total, self.owner
                    )
                    job = await work(self.service.bulk, job, self.owner, stop=stop)
                    log.info(
                        "job %s: %s, %d/%d item(s), %d run(s)",
                        job.id,
                        job.status,
                        job.done,
                        job.total,
                        job.created,
                    )
                    continue
            except StoreError as exc:
                log.warning("jobs: the store failed (%s); trying again in %.0f s", exc, self.poll)
            await wait_first(self._wake.wait(), stop.wait(), timeout=self.poll)

    async def _prunes(self, stop: asyncio.Event) -> None:
        if not self.service.config.retention.prunes:
            return
        while not stop.is_set():
            await wait_first(stop.wait(), timeout=self.prune_every)
            if stop.is_set():
                return
            try:
                pruned = await self.service.prune()
            except StoreError as exc:
                log.warning("prune: the store failed (%s); trying again in %.0f s", exc, self.prune_every)
                continue
            if pruned.events or pruned.rejections:
                log.info(
                    "prune: removed %d event(s), %d run(s), %d attempt(s), %d rejection(s), %d job(s)",
                    pruned.events,
                    pruned.runs,
                    pruned.attempts,
                    pruned.rejections,
                    pruned.jobs,
                )

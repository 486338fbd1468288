"""Fakes with real behaviour shared by the tests: a claimant standing in for the executor on a real store."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from gateway.model import Claim, Run
from gateway.store.interface import ClaimRequest, RunQueue


def take_all(run: Run) -> bool:
    return True


class Claims:
    """interface.Claimant for tests: accepts what ``accept`` says, and records what the store told it."""

    def __init__(self, accept: Callable[[Run], bool] = take_all) -> None:
        self.decide = accept
        self.asked: list[str] = []  # run ids, in the order the store asked about them
        self.riding: ClaimRequest | None = None  # what ride() hands the next batch that creates runs
        self.rode_with: list[list[Claim]] = []
        self.failed_rides = 0
        self.committed_runs: list[list[Run]] = []

    def accept(self, run: Run) -> bool:
        self.asked.append(run.id)
        return self.decide(run)

    def ride(self) -> ClaimRequest | None:
        request, self.riding = self.riding, None  # one ride per request, like the executor's
        return request

    def rode(self, claims: Sequence[Claim]) -> None:
        self.rode_with.append(list(claims))

    def ride_failed(self) -> None:
        self.failed_rides += 1

    def committed(self, runs: Sequence[Run]) -> None:
        self.committed_runs.append(list(runs))


async def claim_runs(
    runs: RunQueue,
    *,
    now: float,
    limit: int,
    lease: float,
    accept: Callable[[Run], bool] = take_all,
    skip_queues: Collection[str] = (),
    skip_tasks: Collection[str] = (),
) -> list[Claim]:
    """One claim on a real store with a fresh Claims(accept) attached, as the executor's own claims are."""
    runs.attach(Claims(accept))
    return await runs.claim(ClaimRequest(now, limit, lease, frozenset(skip_queues), frozenset(skip_tasks)))

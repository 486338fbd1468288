"""The bound on webhook bodies held in memory at once, across every request: a body is read whole before its
signature can be judged (and a refused one is kept whole as a rejection), so without a bound N concurrent
forged bodies at a source's ``max_body`` cost N times that. Pure accounting: no I/O, one event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_BODY_BUDGET = 64 * 1024 * 1024  # bytes: six bodies at the default max_body, thousands of typical ones
# Bytes of each request taken whatever the budget holds: typical deliveries (1-50 KiB) are never refused
# because large bodies fill it. What they hold still counts, so large bodies wait for them.
ALWAYS_TAKEN = 64 * 1024


@dataclass(slots=True)
class BodyBudget:
    """Bytes of request bodies held at once. A request counts each chunk as it arrives (:meth:`take`) and
    gives its bytes back once it is answered (:meth:`give`); one that would pass ``limit`` (past its first
    ALWAYS_TAKEN bytes) is refused: the gateway answers 503 + Retry-After instead of holding more."""

    limit: int = DEFAULT_BODY_BUDGET
    held: int = field(default=0, init=False)  # bytes held now, by every request
    peak: int = field(default=0, init=False)  # the most ever held at once

    def take(self, already: int, more: int) -> bool:
        """Count ``more`` bytes for a request that holds ``already``; False, counting nothing, when they do
        not fit."""
        if already + more > ALWAYS_TAKEN and self.held + more > self.limit:
            return False
        self.held += more
        self.peak = max(self.peak, self.held)
        return True

    def give(self, size: int) -> None:
        """Give back ``size`` bytes a request took."""
        self.held -= size

"""The one fake clock of the tests: a callable returning the time, which moves only when told. No I/O."""

from __future__ import annotations

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z: the clock's default start
HOUR = 3600.0


class Clock:
    """A fake clock for everything that takes ``clock=``: ``clock()`` is ``clock.now``, which moves by
    ``advance(seconds)`` (or by setting ``now``). With ``tick``, every reading first moves it by that much,
    for code that must see time pass between two readings."""

    def __init__(self, now: float = NOW, *, tick: float = 0.0) -> None:
        self.now = now
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

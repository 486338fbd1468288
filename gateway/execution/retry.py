"""Retry policy values, their validation, and the backoff arithmetic. Pure: no I/O, no clock, no randomness
of its own (``now`` and a uniform ``rand`` in [0, 1) come in).

Defaults follow Trigger.dev's: 3 attempts in all (counting the first), factor 2, 1 s minimum and 60 s maximum
wait, jitter on. The wait after failed attempt n is ``min(max_timeout, min_timeout * factor**(n-1) * r)`` with
``r = 1 + rand`` (in [1, 2)) when jitter is on, else 1 — jitter only lengthens a wait, never past max_timeout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import Problem

RETRY_KEYS = ("max_attempts", "factor", "min_timeout", "max_timeout", "jitter")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    factor: float = 2.0
    min_timeout: float = 1.0
    max_timeout: float = 60.0
    jitter: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RETRY_KEYS}  # dataclasses.asdict deep-copies: slow


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_retry(
    spec: object,
    path: str,
    problems: list[Problem],
    base: RetryPolicy | None = None,
    *,
    check_order: bool = True,
) -> RetryPolicy:
    """Build a policy from a ``retry:`` mapping, on top of ``base`` (defaults when None).

    Every problem is appended to ``problems``; the returned policy then holds the valid parts only.
    ``check_order=False`` skips the min_timeout <= max_timeout check (a route's partial override is checked
    against its task's policy instead).
    """
    policy = base or RetryPolicy()
    if spec is None:
        return policy
    if not isinstance(spec, Mapping):
        problems.append(Problem(path, f"expected a mapping with keys {', '.join(RETRY_KEYS)}"))
        return policy
    values = policy.as_dict()
    for key, value in spec.items():
        where = f"{path}.{key}"
        if key not in RETRY_KEYS:
            problems.append(Problem(where, f"unknown key (expected one of: {', '.join(RETRY_KEYS)})"))
        elif key == "jitter":
            if not isinstance(value, bool):
                problems.append(Problem(where, f"expected true or false, got {value!r}"))
            else:
                values[key] = value
        elif key == "max_attempts":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(Problem(where, f"expected a whole number >= 1, got {value!r}"))
            else:
                values[key] = value
        elif not _is_number(value) or not 0 <= value < math.inf or (key == "factor" and value < 1):  # NaN too
            floor = 1 if key == "factor" else 0
            problems.append(Problem(where, f"expected a number >= {floor}, got {value!r}"))
        else:
            values[key] = float(value)
    if check_order and values["min_timeout"] > values["max_timeout"]:
        problems.append(
            Problem(
                path,
                f"min_timeout ({values['min_timeout']}) is larger than max_timeout ({values['max_timeout']})",
            )
        )
    return RetryPolicy(**values)


def backoff(policy: RetryPolicy, failed_attempt: int, rand: float) -> float:
    """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
    spread = 1.0 + rand if policy.jitter else 1.0
    try:
        raw = policy.min_timeout * policy.factor ** (failed_attempt - 1) * spread
    except OverflowError:
        return policy.max_timeout
    return min(policy.max_timeout, raw)


def next_attempt_at(
    policy: RetryPolicy, *, attempts_used: int, now: float, rand: float, retry_at: float | None = None
) -> float | None:
    """When the next attempt may start after a failure, or None when ``max_attempts`` is used up.

    ``attempts_used`` counts the attempts that count (crashes and interruptions do not), this one included.
    ``retry_at`` (from RetryAfter) replaces the backoff but not the attempt budget.
    """
    if attempts_used >= policy.max_attempts:
        return None
    if retry_at is not None:
        return max(now, retry_at)
    return now + backoff(policy, attempts_used, rand)


def policy_from(options: Mapping[str, Any]) -> RetryPolicy:
    """The policy stored in a run's options (already validated when routes.yaml loaded)."""
    known = {k: v for k, v in (options.get("retry") or {}).items() if k in RETRY_KEYS}
    return RetryPolicy(**known)

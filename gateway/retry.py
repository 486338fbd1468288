"""Retry policy values and their validation. Pure: no I/O, no clock.

Defaults follow Trigger.dev's: 3 attempts in all (counting the first), factor 2, 1 s minimum and 60 s maximum
wait, jitter on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
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
        return asdict(self)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_retry(
    spec: object, path: str, problems: list[Problem], base: RetryPolicy | None = None
) -> RetryPolicy:
    """Build a policy from a ``retry:`` mapping, on top of ``base`` (defaults when None).

    Every problem is appended to ``problems``; the returned policy then holds the valid parts only.
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
        elif not _is_number(value) or value < 0 or (key == "factor" and value < 1):
            floor = 1 if key == "factor" else 0
            problems.append(Problem(where, f"expected a number >= {floor}, got {value!r}"))
        else:
            values[key] = float(value)
    if values["min_timeout"] > values["max_timeout"]:
        problems.append(
            Problem(
                path,
                f"min_timeout ({values['min_timeout']}) is larger than max_timeout ({values['max_timeout']})",
            )
        )
    return RetryPolicy(**values)

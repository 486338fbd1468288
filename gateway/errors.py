"""The gateway's one exception tree. Pure: no I/O.

    GatewayError
    ├── ConfigError            routes.yaml or a task module is wrong; carries every Problem found
    ├── SignatureError         a delivery failed verification (reason + detail, never a secret)
    ├── NotFound               an id or a source that does not exist
    ├── Invalid                a request the gateway understood but cannot do (bad filter, gone task)
    │   ├── Conflict           the item exists but is not in a state the operation applies to
    │   └── TooLarge           a request body over its limit
    ├── AccessDenied           an admin API call without a valid token (401) or scope (403)
    ├── StoreError             the database could not do what was asked
    │   └── StoreUnavailable   a write could not be committed: the caller must not acknowledge
    └── TaskError              a task was registered or called wrongly

    TaskSignal                 raised BY task code to steer its run (not an error of the gateway)
    ├── AbortRun               fail the run now, no retry
    └── RetryAfter             retry exactly then (a provider's Retry-After), within max_attempts

HTTP status codes for these live in one place, ``gateway/web/responses.py``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration, with where it is.

    ``path`` is the location inside the file, e.g. ``routes[2].when.body.ref``; ``position`` its line and
    column in the file (1-based, as editors show them), when known.
    """

    path: str
    message: str
    position: tuple[int, int] | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def unknown_key(key: object, allowed: tuple[str, ...], where: str) -> Problem:
    """``where: unknown key 'x' (did you mean 'y'?)``, or the allowed keys when nothing is close."""
    hint = difflib.get_close_matches(str(key), allowed, n=1)
    suffix = f" (did you mean {hint[0]!r}?)" if hint else f" (allowed: {', '.join(allowed)})"
    return Problem(where, f"unknown key {key!r}{suffix}")


class ConfigError(GatewayError):
    """The configuration has one or more problems; ``str()`` lists them all, one per line, each as
    ``routes.yaml:42:5: routes[6].task: ...`` (``routes.yaml: ...`` where its position is not known)."""

    def __init__(self, problems: list[Problem], file: str = "routes.yaml") -> None:
        self.problems = list(problems)
        self.file = file
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(
            f"{self.file}:{p.position[0]}:{p.position[1]}: {p}" if p.position else f"{self.file}: {p}"
            for p in self.problems
        )


class SignatureError(GatewayError):
    """A delivery failed verification.

    ``reason`` is a short machine-readable code (``missing_signature``, ``malformed_signature``,
    ``stale_timestamp``, ``bad_signature``, ``missing_timestamp``, ``malformed_timestamp``, ``no_secret``);
    ``detail`` is a sentence for people. Neither ever contains a secret.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class NotFound(GatewayError):
    """An event, run or source that does not exist."""


class Invalid(GatewayError):
    """A request that names something wrong: a bad filter value, a task or source that is gone, a bad body.

    The message says what was wrong and what to do; it is shown to the caller as it is.
    """


class Conflict(Invalid):
    """The item exists but is not in a state the operation applies to: a finished run canceled, an ended job
    canceled."""


class TooLarge(Invalid):
    """A request body over the limit of what it is sent to."""


class AccessDenied(GatewayError):
    """An admin API request without a valid token (``status`` 401) or without the scope it needs (403).

    ``reason`` is a short code (``missing_token``, ``bad_token``, ``expired_token``, ``missing_scope``);
    ``detail`` a sentence for people. Neither ever contains the token or a key.
    """

    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status = status
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class StoreError(GatewayError):
    """The database failed."""


class StoreUnavailable(StoreError):
    """A write could not be committed to disk; nothing of it was kept."""


class TaskError(GatewayError):
    """A task was defined or invoked wrongly (bad decorator arguments, unknown id, …)."""


class TaskSignal(Exception):
    """Base of the exceptions task code raises on purpose to steer its run."""


class AbortRun(TaskSignal):
    """Fail the run at once, without using its remaining retries: ``raise AbortRun("customer deleted")``."""


class RetryAfter(TaskSignal):
    """Retry at a given time instead of after the backoff: ``raise RetryAfter(30)`` or ``RetryAfter(at=dt)``.

    It still counts as a failed attempt: when ``max_attempts`` is used up the run fails.
    """

    def __init__(
        self, seconds: float | None = None, *, at: datetime | None = None, message: str = ""
    ) -> None:
        if (seconds is None) == (at is None):
            raise TypeError("RetryAfter takes seconds or at=datetime, exactly one of them")
        if at is not None and at.tzinfo is None:
            raise TypeError("RetryAfter(at=...) needs a timezone-aware datetime")
        if seconds is not None and (isinstance(seconds, bool) or seconds < 0):
            raise TypeError(f"RetryAfter seconds must be >= 0, got {seconds!r}")
        self.seconds = seconds
        self.at = at
        super().__init__(message or (f"retry in {seconds} s" if seconds is not None else f"retry at {at}"))

    def when(self, now: float) -> float:
        """The unix time of the next attempt (never before ``now``)."""
        target = now + self.seconds if self.seconds is not None else self.at.timestamp()  # type: ignore[union-attr]
        return max(now, target)

"""The gateway's one exception tree. Pure: no I/O.

    GatewayError
    ├── ConfigError            routes.yaml or a task module is wrong; carries every Problem found
    ├── SignatureError         a delivery failed verification (reason + detail, never a secret)
    ├── NotFound               an id or a source that does not exist
    ├── StoreError             the database could not do what was asked
    │   └── StoreUnavailable   a write could not be committed: the caller must not acknowledge
    └── TaskError              a task was registered or called wrongly

HTTP status codes for these live in one place, ``gateway/app.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration, with where it is.

    ``path`` is the location inside the file, e.g. ``routes[2].when.body.ref``.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(GatewayError):
    """The configuration has one or more problems; ``str()`` lists them all, one per line."""

    def __init__(self, problems: list[Problem], file: str = "routes.yaml") -> None:
        self.problems = list(problems)
        self.file = file
        super().__init__("\n".join(f"{file}: {p}" for p in self.problems))


class SignatureError(GatewayError):
    """A delivery failed verification.

    ``reason`` is a short machine-readable code (``missing_signature``, ``malformed_signature``,
    ``stale_timestamp``, ``bad_signature``, ``missing_timestamp``, ``malformed_timestamp``);
    ``detail`` is a sentence for people. Neither ever contains a secret.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class NotFound(GatewayError):
    """An event, run or source that does not exist."""


class StoreError(GatewayError):
    """The database failed."""


class StoreUnavailable(StoreError):
    """A write could not be committed to disk; nothing of it was kept."""


class TaskError(GatewayError):
    """A task was defined or invoked wrongly (bad decorator arguments, unknown id, …)."""

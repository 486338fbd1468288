"""Every HTTP status the gateway answers with, chosen here: the table of error codes, the exception tree
(gateway/errors.py) mapped onto it, and the JSON answers both the hooks and the admin API send. Builds
Starlette responses; no other I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.types import Receive

from gateway.errors import AccessDenied, Conflict, GatewayError, Invalid, NotFound, StoreError, TooLarge

RETRY_AFTER = "5"  # seconds a sender or client should wait when the store cannot commit or answer
DRAIN_TIMEOUT = 30.0  # seconds the rest of a refused body is read and dropped, at most

# The status of each answer, by the code the JSON answer carries ({"error": code, ...}) or the outcome of an
# accepted delivery. A hook refusal whose code is not here failed its signature check (SignatureError's
# reasons: bad_signature, stale_timestamp, …, and replayed_token): 401.
STATUS: Mapping[str, int] = {
    "accepted": 202,  # stored with its runs, fsynced
    "duplicate": 200,  # its dedupe key was known: the original's id, nothing new stored
    "invalid": 400,  # a request the gateway understood but cannot do (a bad filter, a gone task)
    "client_disconnected": 400,  # the client left mid-body: counted and kept, the answer goes nowhere
    "not_found": 404,
    "unknown_source": 404,  # no webhook source at that path
    "method_not_allowed": 405,
    "slow_body": 408,  # the body did not arrive in time (web/hooks.py BODY_TIMEOUT)
    "conflict": 409,  # the item exists but is not in a state the operation applies to
    "too_large": 413,
    "head_too_large": 431,  # request line and headers past web/listen.py's HEAD_LIMIT
    "key_unavailable": 503,  # the provider's key could not be fetched: our outage, the sender retries
    "overloaded": 503,  # the bodies held at once reached the body budget (web/budget.py): retry later
    "store_unavailable": 503,  # the database could not commit (or answer): never a 2xx
}
SIGNATURE_REFUSED = 401
# The exception tree's codes, most specific first (AccessDenied carries its own status and reason).
ERROR_CODES: tuple[tuple[type[GatewayError], str], ...] = (
    (Conflict, "conflict"),
    (TooLarge, "too_large"),
    (NotFound, "not_found"),
    (Invalid, "invalid"),
    (StoreError, "store_unavailable"),
)


def status_of(code: str) -> int:
    """The status of an answer with this error code (or delivery outcome)."""
    return STATUS.get(code, SIGNATURE_REFUSED)


def retry_after(status: int) -> Mapping[str, str] | None:
    """A 503 tells the sender when to come back."""
    return {"Retry-After": RETRY_AFTER} if status == 503 else None


def code_of(exc: GatewayError) -> str | None:
    """The error code of an exception of the tree; None for one no request should meet (ConfigError, …)."""
    if isinstance(exc, AccessDenied):
        return exc.reason
    return next((code for kind, code in ERROR_CODES if isinstance(exc, kind)), None)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class Answer(JSONResponse):
    """A JSON answer that stored data cannot turn into a 500: NaN and Infinity (a task's output may hold
    them) become null, as JavaScript's JSON.stringify does, and a lone surrogate is escaped."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # allow_nan=False refused a number, or UTF-8 a lone surrogate (UnicodeEncodeError)
            return json.dumps(_finite(content), allow_nan=False, separators=(",", ":")).encode()


def error(
    code: str, detail: str, headers: Mapping[str, str] | None = None, status: int | None = None
) -> Answer:
    """``{"error": code, "detail": detail}`` with the code's status (a 503 with Retry-After)."""
    status = status_of(code) if status is None else status
    headers = headers or retry_after(status)
    return Answer({"error": code, "detail": detail}, status_code=status, headers=headers)


async def http_error(request: HTTPRequest, exc: Exception) -> Response:
    """Routing's own 404/405 in the gateway's JSON shape: a path no route matches (one with a newline, say),
    a wrong method on an admin endpoint."""
    if not isinstance(exc, HTTPException):
        raise exc
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(code, exc.detail, exc.headers, status=exc.status_code)


R = TypeVar("R", bound=Response)


async def _discard(receive: Receive, timeout: float) -> None:
    """Read and drop what is left of a refused body, for at most ``timeout`` seconds."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return


def refused(response: R, request: HTTPRequest, timeout: float = DRAIN_TIMEOUT) -> R:
    """``response`` to a request refused before its whole body was read (413, 408), with the rest of the
    body read and dropped meanwhile, for up to ``timeout`` seconds. Hypercorn queues at most 10 body chunks
    for an app and, once the answer is sent, blocks on that full queue: without a reader the connection, its
    task and its chunks would be held for ever. The drain starts now, before the answer is sent."""
    drain = asyncio.ensure_future(_discard(request.receive, timeout))
    response.background = BackgroundTask(asyncio.wait_for, drain, None)  # awaited after the answer
    return response

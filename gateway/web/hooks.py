"""The ingest endpoint: ``POST <source path>`` → read the raw body once → verify → admit → group-committed
write. Each request comes to an Outcome; ``answer`` turns it into the HTTP answer (its status from
web/responses.py's table) and what telemetry hears.

I/O: HTTP in, the store out, remote key fetches through the keyring.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from opentelemetry.trace import Span
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from gateway.errors import SignatureError, StoreError
from gateway.keys.keyring import Keyring
from gateway.model import Headers, Inbound, Payload, Recorded, Rejection, Verdict
from gateway.records.recovery import kept_request
from gateway.report import Delivery
from gateway.routes.ingest import admit
from gateway.routes.load import Config
from gateway.routes.payload import parse_payload
from gateway.routes.sources import Source
from gateway.signatures.handshake import Reply, respond
from gateway.signatures.verify import verify
from gateway.store.interface import Store
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.traceparent import stamp
from gateway.web.budget import BodyBudget
from gateway.web.responses import STATUS, error, refused

log = logging.getLogger("gateway.app")
REJECTION_BODY_PREFIX = 1024  # bytes of a refused body kept for debugging
MAX_RECORDED_SIZE = 2**63 - 1  # a declared Content-Length past this is recorded as this
# Seconds a hook body may take to arrive after its head: senders post at once (their own delivery timeouts
# are 10-30 s), so only a stalled or malicious client takes longer.
BODY_TIMEOUT = 30.0
PARSE_ON_LOOP = 256 * 1024  # bytes of body parsed on the event loop (~2 ms of JSON); larger: on a thread


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one request to a hook path ended, decided before it is answered. ``kind`` is one of
    report.DELIVERY_OUTCOMES; a refusal's ``reason`` (bad_signature, slow_body, …) is also the error code the
    sender gets (when there is none, the kind is), and web/responses.py's table gives its status."""

    kind: str
    reason: str | None = None
    detail: str = ""
    source: Source | None = None
    recorded: Recorded | None = None  # accepted, duplicate
    reply: Reply | None = None  # handshake: the provider's challenge answered
    event_type: str | None = None
    verification: str | None = None  # Verdict.label, once verified
    unread: bool = False  # refused before its whole body arrived: the rest is read and dropped


def answer(outcome: Outcome, request: HTTPRequest, body_timeout: float) -> tuple[Response, Delivery]:
    """The HTTP answer to ``outcome`` and what telemetry hears of it."""
    recorded = outcome.recorded if outcome.kind in ("accepted", "duplicate") else None
    if outcome.reply is not None:
        reply = outcome.reply
        response = Response(reply.body, status_code=reply.status, media_type=reply.content_type)
    elif recorded is not None:
        response = _acknowledge(recorded)
    else:
        code = outcome.reason or outcome.kind
        response = error(code, outcome.detail, {"Allow": "POST"} if code == "method_not_allowed" else None)
        if outcome.unread:
            response = refused(response, request, body_timeout)
    source = outcome.source
    delivery = Delivery(
        response.status_code,
        outcome.kind,
        source=None if source is None else source.name,
        reason=outcome.reason,
        event_id=None if recorded is None else recorded.event_id,
        event_type=outcome.event_type,
        runs=0 if recorded is None else len(recorded.runs),
        verification=outcome.verification,
        budget=None if source is None else source.sender_timeout,
    )
    return response, delivery


class _TooLarge(Exception):
    def __init__(self, size: int, prefix: bytes = b"") -> None:
        self.size = size
        self.prefix = prefix


class _TooSlow(_TooLarge):
    """The body did not arrive within the body timeout."""


class _Gone(_TooLarge):
    """The client went away before its whole body arrived."""


class _Overloaded(_TooLarge):
    """The bodies held across all requests would pass the body budget with this one's next chunk."""


async def _read_body(request: HTTPRequest, cap: int, timeout: float, budget: BodyBudget) -> bytes:
    """Read the raw body once, refusing it as soon as it passes ``cap`` (also when sent chunked), when it
    has not all arrived ``timeout`` seconds after the head (a sender trickling bytes must not hold a
    connection for ever; the servers bound the head: listen.py), or when ``budget`` cannot hold its next
    chunk. What it returns is counted in ``budget``: the caller gives it back."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > cap:
        # Kept as the rejection's size: a number a sender chose, bounded to what a database integer holds.
        raise _TooLarge(min(int(declared), MAX_RECORDED_SIZE))
    body = bytearray()
    try:
        await _fill(body, request, cap, timeout, budget)
    except BaseException:  # refused, or cancelled: what it held is given back
        budget.give(len(body))
        raise
    return bytes(body)


async def _fill(body: bytearray, request: HTTPRequest, cap: int, timeout: float, budget: BodyBudget) -> None:
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                if not budget.take(len(body), len(chunk)):
                    raise _Overloaded(len(body) + len(chunk), bytes(body[:REJECTION_BODY_PREFIX]))
                body += chunk
                if len(body) > cap:
                    raise _TooLarge(len(body), bytes(body[:REJECTION_BODY_PREFIX]))
    except TimeoutError:
        raise _TooSlow(len(body), bytes(body[:REJECTION_BODY_PREFIX])) from None
    except ClientDisconnect:  # an ordinary event on the internet, not a gateway error: no traceback
        raise _Gone(len(body), bytes(body[:REJECTION_BODY_PREFIX])) from None


def _called_url(source: Source, request: HTTPRequest, raw_query: str) -> str:
    """The URL the sender called: the source's ``public_url`` (what a proxy hides) with the received query."""
    if source.public_url is None:
        return str(request.url)
    return f"{source.public_url}?{raw_query}" if raw_query else source.public_url


async def _verify(
    source: Source, inbound: Inbound, keyring: Keyring | None, clock: Callable[[], float]
) -> tuple[Verdict, float]:
    """Verify ``inbound``, fetching a remote key first when the source's scheme needs one; and the time."""
    material: Any = None
    if source.scheme.remote_keys and keyring is not None:  # without one, verify() says key_unavailable
        material = await keyring.material(source, inbound)
    now = clock()  # read after any key fetch, which may take a while
    verdict = verify(
        source.scheme,
        source.secrets,
        inbound,
        now=now,
        tolerance=source.tolerance,
        material=material,
        remote=source.remote,
    )
    return verdict, now


_encode_ack = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _acknowledge(recorded: Recorded) -> Response:
    """202 with the event and its runs, once they are on disk; 200 with the original id for a duplicate."""
    runs = [{"id": run.id, "task": run.task_id} for run in recorded.runs]
    content: dict[str, Any] = {"event_id": recorded.event_id, "runs": runs}
    if recorded.duplicate:
        content["duplicate"] = True
    # JSONResponse would build a JSON encoder per answer; this one is built once.
    body = _encode_ack(content).encode()
    status = STATUS["duplicate" if recorded.duplicate else "accepted"]
    return Response(body, status_code=status, media_type="application/json")


class Hooks:
    """The endpoint of every source path: read, verify, admit, record; answer; and report how it went."""

    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Callable[[], float],
        keyring: Keyring | None,
        telemetry: Telemetry,
        body_timeout: float | None = None,
        budget: BodyBudget | None = None,
    ) -> None:
        self.config, self.store, self.clock, self.keyring = config, store, clock, keyring
        self.telemetry, self.body_timeout = telemetry, body_timeout or BODY_TIMEOUT
        self.budget = budget or BodyBudget()
        self.by_path = {source.path: source for source in config.sources.values()}

    async def endpoint(self, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        remote = request.client.host if request.client else None
        path, method = request.scope["path"], request.method
        with self.telemetry.tracing.request(method, path, request.headers.get("traceparent"), remote) as span:
            response, delivery = answer(await self.deliver(request, remote, span), request, self.body_timeout)
            seconds = time.perf_counter() - started
            self.telemetry.delivered(span, delivery, method=method, path=path, seconds=seconds, remote=remote)
        return response

    async def deliver(self, request: HTTPRequest, remote: str | None, span: Span) -> Outcome:
        path = request.scope["path"]
        source = self.by_path.get(path)
        if source is None:
            return Outcome("unknown_source", detail=f"no webhook source is served at {path}")
        if request.method != "POST":
            return Outcome("method_not_allowed", detail="webhooks are delivered with POST", source=source)
        body = await self._body(request, source, remote)
        if isinstance(body, Outcome):
            return body
        try:
            return await self._judge(request, source, body, remote, span)
        finally:  # the body is no longer needed: the budget may hold another
            self.budget.give(len(body))

    async def _judge(
        self, request: HTTPRequest, source: Source, body: bytes, remote: str | None, span: Span
    ) -> Outcome:
        inbound = _inbound(request, source, body, remote)
        try:
            verdict, now = await _verify(source, inbound, self.keyring, self.clock)
        except SignatureError as exc:
            return await self._refuse(source, exc, inbound)
        content_type = inbound.headers.get("content-type")
        if len(body) > PARSE_ON_LOOP:  # a big body is parsed on a thread: the loop keeps answering others
            payload = await asyncio.to_thread(parse_payload, content_type, body)
        else:
            payload = parse_payload(content_type, body)
        reply = respond(source.scheme, source.secrets, inbound, payload, key_index=verdict.key_index or 0)
        if reply is not None:  # a provider handshake (Slack url_verification, Zoom validation): not an event
            return Outcome("handshake", source=source, reply=reply, verification=verdict.label)
        return await self._record(source, inbound, verdict, now, payload, span)

    async def _body(self, request: HTTPRequest, source: Source, remote: str | None) -> bytes | Outcome:
        """The raw body, or the refusal of one too large or too slow (kept as a rejection)."""
        try:
            return await _read_body(request, source.max_body, self.body_timeout, self.budget)
        except _TooLarge as exc:  # _TooSlow, _Gone and _Overloaded are ones too
            if isinstance(exc, _Overloaded):  # kept, so nothing is lost; the sender retries the 503
                kind = reason = "overloaded"
                detail = (
                    f"the gateway holds its limit of {self.budget.limit} bytes of request bodies "
                    "(--body-budget); retry later"
                )
            elif isinstance(exc, _TooSlow):
                kind, reason = "rejected", "slow_body"
                detail = f"the body did not arrive within {self.body_timeout:g} s; send it at once"
            elif isinstance(exc, _Gone):  # counted and kept like any refusal; nobody reads the answer
                kind, reason = "rejected", "client_disconnected"
                detail = f"the client went away after {exc.size} bytes of its body"
            else:
                kind, reason = "too_large", "too_large"
                detail = f"the body is larger than this source's limit of {source.max_body} bytes"
            await self._reject(source, reason, detail, exc.prefix, exc.size, remote)
            return Outcome(kind, reason, detail, source, unread=True)

    async def _refuse(self, source: Source, exc: SignatureError, inbound: Inbound) -> Outcome:
        """A delivery that failed verification, kept as a rejection; but when the provider's key could not
        be fetched, our outage, not the sender's fault: it is answered 503 so it retries."""
        if exc.reason == "key_unavailable":
            log.warning("answering 503 for a %s delivery: %s", source.name, exc.detail)
            return Outcome("key_unavailable", exc.reason, exc.detail, source)
        body = inbound.body
        await self._reject(source, exc.reason, exc.detail, body, len(body), inbound.remote_addr, inbound)
        return Outcome("rejected", exc.reason, exc.detail, source)

    async def _record(
        self, source: Source, inbound: Inbound, verdict: Verdict, now: float, payload: Payload, span: Span
    ) -> Outcome:
        """Admit the delivery and store its event and runs; answered only once they are on disk."""
        admission = admit(self.config, source, inbound, verdict, now, payload)
        event, runs = stamp(admission.event, admission.runs, span.get_span_context())

        def said(
            kind: str, reason: str | None = None, detail: str = "", recorded: Recorded | None = None
        ) -> Outcome:
            return Outcome(kind, reason, detail, source, recorded, None, event.event_type, verdict.label)

        try:
            recorded = await self.store.record(event, runs, dedupe_window=source.dedupe_window)
        except StoreError:
            log.error("store unavailable: answering 503 for a %s delivery", source.name)
            detail = "the event could not be stored; retry later"
            return said("store_unavailable", "store_unavailable", detail)
        if recorded.duplicate and source.scheme.refuse_replays:
            detail = f"this {source.scheme.name} token was already used by event {recorded.event_id}"
            body = inbound.body
            await self._reject(source, "replayed_token", detail, body, len(body), inbound.remote_addr)
            return said("rejected", "replayed_token", detail)
        return said("duplicate" if recorded.duplicate else "accepted", recorded=recorded)

    async def _reject(
        self,
        source: Source,
        reason: str,
        detail: str,
        body: bytes,
        size: int,
        remote: str | None,
        request: Inbound | None = None,
    ) -> None:
        """Record a refusal. A ``request`` that failed verification is kept whole (credentials redacted, up to
        the source's ``rejections: {keep:}``), so it can be verified again once a secret is fixed."""
        kept, dropped = kept_request(source, request) if request is not None else (None, None)
        rejection = Rejection(
            source.name,
            reason,
            detail,
            self.clock(),
            remote,
            body[:REJECTION_BODY_PREFIX],
            size,
            request=kept,
            dropped=dropped,
        )
        try:
            await self.store.record_rejection(rejection, source.rejections)
        except StoreError:
            log.warning(
                "could not record a rejection for source %s (%s): store unavailable", source.name, reason
            )


def _inbound(request: HTTPRequest, source: Source, body: bytes, remote: str | None) -> Inbound:
    raw_query = request.scope.get("query_string", b"").decode("latin-1")
    return Inbound(
        method="POST",
        url=_called_url(source, request, raw_query),
        headers=Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]),
        body=body,
        query=tuple(parse_qsl(raw_query, keep_blank_values=True)),
        remote_addr=remote,
    )

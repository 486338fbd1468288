"""Rejected deliveries given a second chance: a kept request is verified again with the current secrets (a
rotated or mistyped secret fixed since) and, if it now passes, stored and routed as a new event, once.

``kept_request`` (pure) is what a rejection keeps of a request; ``Recoverer`` (I/O through the store, and the
caller's key fetch for remote-key schemes) tries kept requests again. Freshness is judged at the time the
request was received: a replayed rejection is old by now, but it was not when it came.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import NotFound, SignatureError
from gateway.model import EVICTED, NO_ROOM, UNVERIFIABLE, Inbound, Rejection, Run
from gateway.records.replays import Replayer
from gateway.records.view import iso
from gateway.routes.ingest import admit, redact, redact_query
from gateway.routes.payload import parse_payload
from gateway.routes.sources import Source
from gateway.signatures.handshake import respond
from gateway.signatures.verify import verify
from gateway.store.interface import Store
from gateway.telemetry.traceparent import stamp

# What a try of one rejection came to: stored as a new event, found a duplicate of a stored one (the
# provider's retry got through meanwhile), would pass (a dry run), still rejected, or nothing to try.
STORED, DUPLICATE, PASSES, REJECTED, UNAVAILABLE = "stored", "duplicate", "passes", "rejected", "unavailable"
# Fetches the key a remote-key delivery is checked with (gateway.keys.keyring.Keyring.material).
KeyFetch = Callable[[Source, Inbound], Awaitable[Any]]
# Refused before the whole body arrived: nothing to verify again.
_INCOMPLETE = ("too_large", "slow_body", "client_disconnected", "overloaded")


def kept_request(source: Source, request: Inbound) -> tuple[Inbound | None, str | None]:
    """What a rejection keeps of ``request``: the whole of it with credentials redacted as an event's are.
    None (and ``UNVERIFIABLE``) when a header or parameter the scheme checks was redacted: the request could
    never be verified again, so keeping it would only take room."""
    scheme = source.scheme
    headers = redact(request.headers, scheme.secret_headers)
    url, query = redact_query(request.url, request.query, scheme.secret_query)
    checked = {name.lower() for name in (*scheme.signature_headers, *scheme.secret_headers)}
    withheld = any(
        a != b for a, b in zip(request.headers.pairs, headers.pairs, strict=True) if a[0] in checked
    )
    if withheld or query != request.query:
        return None, UNVERIFIABLE
    return replace(request, headers=headers, url=url, query=query), None


def as_called(source: Source, request: Inbound) -> Inbound:
    """The kept request with the URL the sender called under the current ``public_url`` (it may have been
    the fix): what schemes that sign the URL (Twilio, Square) check."""
    if source.public_url is None:
        return request
    try:
        query = urlsplit(request.url).query
    except ValueError:
        return request
    return replace(request, url=f"{source.public_url}?{query}" if query else source.public_url)


@dataclass(frozen=True, slots=True)
class Recovery:
    """What became of one rejection tried again: ``outcome`` is STORED, DUPLICATE, PASSES (a dry run),
    REJECTED (``reason``/``detail``: why it still fails) or UNAVAILABLE (why there is nothing to try)."""

    rejection: Rejection
    outcome: str
    event_id: str | None = None  # the event it became, or the stored one it duplicates
    runs: tuple[Run, ...] = ()
    reason: str | None = None
    detail: str = ""


def recovery_summary(tried: Recovery) -> dict[str, Any]:
    """One rejection tried again, for machines (the CLI's --json and the admin API)."""
    return {
        "rejection_id": tried.rejection.id,
        "source": tried.rejection.source,
        "outcome": tried.outcome,
        "event_id": tried.event_id,
        "runs": [{"id": r.id, "task": r.task_id} for r in tried.runs],
        "reason": tried.reason,
        "detail": tried.detail,
    }


class Recoverer:
    """Kept rejected requests, verified again under the current routes.yaml and stored if they pass."""

    def __init__(self, store: Store, replayer: Replayer, clock: Callable[[], float]) -> None:
        self.store, self.clock, self._replayer = store, clock, replayer

    async def one(self, rejection_id: int, keys: KeyFetch | None, *, dry_run: bool = False) -> Recovery:
        """Try rejection ``rejection_id`` again; NotFound if there is none."""
        rejection = await self.store.reads.get_rejection(rejection_id)
        if rejection is None:
            raise NotFound(f"no rejection with id {rejection_id}")
        return await self._try(rejection, keys, dry_run)

    async def kept(
        self,
        keys: KeyFetch | None,
        *,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        dry_run: bool = False,
        page: int = 100,
    ) -> AsyncIterator[Recovery]:
        """Try, oldest first, every rejection that still holds its request and was received in the window
        (and before this call: a flood arriving meanwhile does not keep it going)."""
        self._replayer.config  # noqa: B018  # Invalid now, without routes.yaml, not after the first read
        until = self.clock() if until is None else min(until, self.clock())
        after: int | None = None
        while batch := await self.store.reads.kept_rejections(
            source=source, since=since, until=until, after=after, limit=page
        ):
            for rejection in batch:
                yield await self._try(rejection, keys, dry_run)
            after = batch[-1].id

    async def _try(self, rejection: Rejection, keys: KeyFetch | None, dry_run: bool) -> Recovery:
        config = self._replayer.config
        if rejection.recovered_as is not None:
            detail = f"recovered already, at {iso(rejection.recovered_at)}, as {rejection.recovered_as}"
            return Recovery(rejection, UNAVAILABLE, rejection.recovered_as, reason="recovered", detail=detail)
        source = config.sources.get(rejection.source)
        if rejection.request is None or source is None:
            reason = "unknown_source" if source is None else rejection.dropped or "not_kept"
            return Recovery(rejection, UNAVAILABLE, reason=reason, detail=_unavailable(rejection, source))
        unset = config.unset_secrets.get(source.name)
        if unset:  # a command on stored records loads routes.yaml without requiring every secret
            detail = "; ".join(str(problem) for problem in unset)
            return Recovery(rejection, UNAVAILABLE, reason="secret_unset", detail=detail)
        request = as_called(source, rejection.request)
        try:
            material = await keys(source, request) if source.scheme.remote_keys and keys else None
            # Freshness as it was when the request came, not now: it is old because it was refused.
            verdict = verify(
                source.scheme,
                source.secrets,
                request,
                now=rejection.received_at,
                tolerance=source.tolerance,
                material=material,
                remote=source.remote,
            )
        except SignatureError as exc:
            return Recovery(rejection, REJECTED, reason=exc.reason, detail=exc.detail)
        payload = parse_payload(request.headers.get("content-type"), request.body)
        key_index = verdict.key_index or 0
        if respond(source.scheme, source.secrets, request, payload, key_index=key_index) is not None:
            detail = f"a {source.scheme.name} handshake: it needed an answer when it came; there is no event"
            return Recovery(rejection, UNAVAILABLE, reason="handshake", detail=detail)
        if dry_run:
            return Recovery(rejection, PASSES, detail=verdict.label)
        now = self.clock()
        admission = admit(config, source, request, verdict, now, payload)
        attributes = {"gateway.rejection.id": rejection.id or 0, "gateway.source": source.name}
        with self._replayer.telemetry.tracing.linked("recover rejection", None, attributes) as span:
            event, runs = stamp(admission.event, admission.runs, span.get_span_context())
            window = source.dedupe_window
            recorded = await self.store.record(event, runs, dedupe_window=window, recovers=rejection.id)
        if recorded.duplicate:
            return Recovery(rejection, DUPLICATE, recorded.event_id)
        return Recovery(rejection, STORED, event.id, runs, detail=verdict.label)


def _unavailable(rejection: Rejection, source: Source | None) -> str:
    """Why a rejection holds no request to try, and what to do."""
    keep = f"sources.{rejection.source}.rejections.keep"
    if source is None:
        return f"its source {rejection.source!r} is not in routes.yaml any more"
    if rejection.dropped == EVICTED:
        at = iso(rejection.dropped_at)
        return f"its request was dropped at {at}: newer rejections took its room in {keep}"
    if rejection.dropped == NO_ROOM:
        return (
            f"its request was not kept: {keep} was full and this hour's turnover spent (or it is larger than "
            "keep); raise keep, or have the provider redeliver it"
        )
    if rejection.dropped == UNVERIFIABLE:
        return (
            f"its request was not kept: {source.scheme.name} sends its credential in clear, which is never "
            "stored, so it could not be verified again; have the provider redeliver it"
        )
    if rejection.reason in _INCOMPLETE:
        return f"its body did not arrive whole ({rejection.reason}); have the provider redeliver it"
    if rejection.reason == "replayed_token":
        return "it was verified, but its token had been used already: it is a replay, not a lost delivery"
    return "no request was kept (a rejection recorded before this gateway kept them keeps 1 KiB of its body)"

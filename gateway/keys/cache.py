"""A cache of remote verification keys (JWK sets, PEM certificates, Plaid's keys) fetched over https.

Does I/O (httpx). Fetches only from allowlisted hosts, with a time and size bound, and serves a stale key
when a refresh fails, so a provider's key endpoint hiccup does not reject genuine deliveries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from gateway.errors import SignatureError
from gateway.model import Secret

log = logging.getLogger("gateway.keys")

MIN_TTL, MAX_TTL, DEFAULT_TTL = 60.0, 24 * 3600.0, 3600.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?([0-9]+)\"?\s*(?:,|$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Entry:
    value: bytes
    fetched_at: float  # when this value was fetched
    expires_at: float
    tried_at: float  # the last fetch attempt, successful or not: bounds refetching


class _FetchError(Exception):
    """A fetch failed; ``reason`` is the SignatureError reason to raise when no stale value can stand in."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


class KeyCache:
    """Remote key documents by URL, each kept for its Cache-Control max-age (bounded to [60 s, 24 h]).

    ``hosts`` is the allowlist (exact host names). Concurrent ``get``s of one URL share one fetch; the
    least recently used entry is dropped past ``max_entries``. ``clock`` is any monotonic seconds source.
    """

    def __init__(
        self,
        hosts: Iterable[str],
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 2.0,
        max_bytes: int = 256 * 1024,
        max_entries: int = 64,
    ) -> None:
        self.hosts = frozenset(h.lower() for h in hosts)
        self._owns_client = client is None
        # No redirects: a 3xx to another host must not sidestep the allowlist.
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False)
        self._clock = clock
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}

    async def get(self, url: str, *, refresh: bool = False) -> bytes:
        """The document at ``url``, from the cache while fresh.

        ``refresh=True`` (a token named a key the cached set lacks) refetches, but at most once per
        60 s, so a stream of made-up key ids cannot turn into a stream of fetches.
        """
        self._check_url(url)
        return await self._cached(url, lambda: self._fetch("GET", url), refresh)

    async def plaid_key(self, base_url: str, client_id: str, secret: Secret, kid: str) -> dict[str, Any]:
        """Plaid's JWK for ``kid``, from POST ``/webhook_verification_key/get``, cached by key id.

        https://plaid.com/docs/api/webhooks/webhook-verification/#webhook_verification_keyget
        """
        url = base_url.rstrip("/") + "/webhook_verification_key/get"
        self._check_url(url)
        body = {"client_id": client_id, "secret": secret.reveal(), "key_id": kid}

        async def fetch() -> _Entry:
            entry = await self._fetch("POST", url, body)
            key = _json(entry.value, url).get("key")
            if not isinstance(key, dict):
                raise _FetchError("key_unavailable", f"{url} answered without a 'key' object")
            return _Entry(json.dumps(key).encode(), entry.fetched_at, entry.expires_at, entry.tried_at)

        data: dict[str, Any] = json.loads(await self._cached(f"plaid:{url}#{kid}", fetch, False))
        return data

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        if self._owns_client:
            await self._client.aclose()

    # -- internals ----------------------------------------------------------------------------------------

    def _check_url(self, url: str) -> None:
        if not _allowed(url, self.hosts):
            allowed = ", ".join(sorted(self.hosts)) or "none"
            raise SignatureError(
                "untrusted_key_url", f"refusing to fetch keys from {url[:200]!r} (https on: {allowed})"
            )

    async def _cached(self, key: str, fetch: Callable[[], Awaitable[_Entry]], refresh: bool) -> bytes:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            if now < entry.expires_at and not (refresh and now - entry.tried_at >= MIN_TTL):
                return entry.value
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(fetch())
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        try:
            # shield: one caller giving up must not cancel the fetch the others are waiting on.
            fresh = await asyncio.shield(task)
        except _FetchError as exc:
            stale = self._entries.get(key)
            if stale is None:
                raise SignatureError(exc.reason, str(exc)) from None
            log.warning("%s; serving the copy fetched %.0f s ago", exc, now - stale.fetched_at)
            # Try again in a minute, not on every delivery while the provider is down.
            self._entries[key] = _Entry(stale.value, stale.fetched_at, now + MIN_TTL, now)
            return stale.value
        self._store(key, fresh)
        return fresh.value

    def _settled(self, key: str, task: asyncio.Task[_Entry]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so a fetch nobody awaits any more is not reported as lost

    def _store(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def _fetch(self, method: str, url: str, body: dict[str, str] | None = None) -> _Entry:
        """One bounded request: the whole exchange within the timeout, at most ``max_bytes`` of body."""
        try:
            async with asyncio.timeout(self._timeout):
                # follow_redirects per request: a client passed in may follow them by default.
                async with self._client.stream(method, url, json=body, follow_redirects=False) as response:
                    if 400 <= response.status_code < 500 and method == "POST":
                        raise _FetchError("unknown_key", f"{url} refused the key id ({response.status_code})")
                    if response.status_code != 200:
                        raise _FetchError("key_unavailable", f"{url} answered {response.status_code}")
                    data = await self._read(response, url)
                    ttl = _ttl(response.headers.get("cache-control", ""))
        except TimeoutError:
            raise _FetchError("key_unavailable", f"{url} did not answer within {self._timeout:g} s") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL is no HTTPError
            raise _FetchError("key_unavailable", f"could not fetch {url}: {type(exc).__name__}") from None
        now = self._clock()
        return _Entry(data, now, now + ttl, now)

    async def _read(self, response: httpx.Response, url: str) -> bytes:
        too_big = _FetchError("key_unavailable", f"{url} sent more than {self._max_bytes} bytes")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)


def _allowed(url: str, hosts: frozenset[str]) -> bool:
    """https on an allowed host, port 443, no user info, nothing unprintable; read by urlsplit and by httpx
    (which connects) alike, so a URL the two parsers read differently can never reach another host."""
    if not url.isprintable() or " " in url:  # urlsplit drops tabs and newlines; httpx refuses them
        return False
    try:
        parts, sent = urlsplit(url), httpx.URL(url)
        port = parts.port
    except (ValueError, httpx.InvalidURL):  # a port that is not a number, a broken IPv6 literal
        return False
    return (
        parts.scheme == sent.scheme == "https"
        and parts.hostname in hosts
        and sent.host == parts.hostname
        and port in (None, 443)
        and sent.port in (None, 443)
        and parts.username is None
        and not sent.userinfo
    )


def _ttl(cache_control: str) -> float:
    """Seconds to keep a document: its max-age, bounded to [60 s, 24 h]; an hour when none is given."""
    m = _MAX_AGE.search(cache_control)
    if m is None:
        return DEFAULT_TTL
    return min(max(float(m.group(1)), MIN_TTL), MAX_TTL)


def _json(data: bytes, url: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise _FetchError("key_unavailable", f"{url} did not answer JSON") from None
    if not isinstance(value, dict):
        raise _FetchError("key_unavailable", f"{url} did not answer a JSON object")
    return value

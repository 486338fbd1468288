"""Fetch the key a remote-key delivery (plaid, pubsub, paypal, jwt) is checked with, one KeyCache per source.

I/O: https requests through gateway/keys/cache.py, only to each provider's documented hosts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx

from gateway.errors import SignatureError
from gateway.keys.cache import KeyCache
from gateway.model import Inbound
from gateway.routes.sources import Source
from gateway.signatures.asymmetric import PAYPAL_CERT_HOSTS, PAYPAL_CERT_URL, paypal_cert_url_allowed
from gateway.signatures.jwts import unverified_kid
from gateway.signatures.remote import bearer

# https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions: Google's OIDC signing keys.
GOOGLE_CERTS = "https://www.googleapis.com/oauth2/v3/certs"
PLAID_HEADER = "Plaid-Verification"


def allowed_hosts(source: Source) -> frozenset[str]:
    """The hosts keys for ``source`` may be fetched from: its provider's, or its configured jwks_url's."""
    fmt, remote = source.scheme.signature_format, source.remote
    url = {
        "plaid": remote.base_url if remote else None,
        "jwt": remote.jwks_url if remote else None,
        "pubsub": GOOGLE_CERTS,
    }.get(fmt)
    if fmt == "paypal":
        return PAYPAL_CERT_HOSTS
    host = urlsplit(url).hostname if url else None
    return frozenset({host}) if host else frozenset()


class Keyring:
    """The remote keys of every source, each source with its own cache and host allowlist.

    ``client`` (shared by the caches, not closed by them) and ``clock`` (monotonic seconds) are for tests.
    """

    def __init__(
        self,
        sources: Iterable[Source] = (),
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 2.0,
    ) -> None:
        self._client = client
        self._clock = clock
        self._timeout = timeout
        self._caches: dict[str, KeyCache] = {}
        for source in sources:
            if source.scheme.remote_keys:
                self._cache(source)

    def _cache(self, source: Source) -> KeyCache:
        cache = self._caches.get(source.name)
        if cache is None:
            cache = KeyCache(
                allowed_hosts(source), client=self._client, clock=self._clock, timeout=self._timeout
            )
            self._caches[source.name] = cache
        return cache

    async def material(self, source: Source, request: Inbound) -> Any:
        """What the pure check in gateway/signatures/verify.py needs for ``request``: a JWK, a JWK set or a
        PEM chain.

        None for a jwt source with static keys. Raises SignatureError: ``key_unavailable`` when the
        provider cannot be reached (the sender should retry), other reasons when the delivery is at fault.
        """
        scheme, remote = source.scheme, source.remote
        fmt = scheme.signature_format
        if fmt == "jwt" and (remote is None or remote.jwks_url is None):
            return None
        cache = self._cache(source)
        if fmt == "plaid":
            kid = unverified_kid(request.headers.get(PLAID_HEADER, ""))
            if kid is None:
                raise SignatureError("malformed_signature", f"the {PLAID_HEADER} token names no kid")
            if remote is None or remote.base_url is None or remote.client_id is None or not source.secrets:
                raise SignatureError("no_secret", "plaid needs client_id, environment and secret")
            return await cache.plaid_key(remote.base_url, remote.client_id, source.secrets[0], kid)
        if fmt == "paypal":
            url = request.headers.get(PAYPAL_CERT_URL, "")
            if not url:
                raise SignatureError("missing_signature", f"no {PAYPAL_CERT_URL} header")
            if not paypal_cert_url_allowed(url):
                # Never fetched: the sender would choose the certificate, or make us call an internal host.
                raise SignatureError(
                    "untrusted_certificate",
                    f"{PAYPAL_CERT_URL} {url[:200]!r} is not a PayPal certificate URL "
                    f"(https on {', '.join(sorted(PAYPAL_CERT_HOSTS))}, under /v1/notifications/certs/)",
                )
            return await cache.get(url)
        keys_url = GOOGLE_CERTS if fmt == "pubsub" else (remote.jwks_url if remote else None)
        if keys_url is None:
            raise SignatureError("no_secret", f"{scheme.name} has no key URL")
        kid = unverified_kid(bearer(scheme, request.headers))
        document = _json(await cache.get(keys_url), keys_url)
        if kid is not None and not _has_kid(document, kid):
            # A key rotated in since the set was cached: refetch (KeyCache bounds this to once a minute).
            document = _json(await cache.get(keys_url, refresh=True), keys_url)
        return document

    async def aclose(self) -> None:
        for cache in self._caches.values():
            await cache.aclose()
        self._caches.clear()


def _has_kid(document: dict[str, Any], kid: str) -> bool:
    keys = document.get("keys")
    return isinstance(keys, list) and any(isinstance(k, dict) and k.get("kid") == kid for k in keys)


def _json(data: bytes, url: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise SignatureError("key_unavailable", f"{url} did not answer a JSON object")
    return value

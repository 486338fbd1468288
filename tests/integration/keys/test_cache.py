"""KeyCache against respx-mocked key endpoints: allowlist, bounds, expiry, stale-on-error, shared fetches."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from gateway.errors import SignatureError
from gateway.keys.cache import KeyCache
from gateway.model import Secret
from tests.support.clock import Clock

CERTS = "https://www.googleapis.com/oauth2/v3/certs"
JWKS = b'{"keys": []}'


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
async def cache(clock: Clock, router: respx.MockRouter) -> AsyncIterator[KeyCache]:
    keys = KeyCache(["www.googleapis.com", "sandbox.plaid.com"], clock=clock)
    yield keys
    await keys.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "http://www.googleapis.com/oauth2/v3/certs",
        "https://evil.example/oauth2/v3/certs",
        "https://www.googleapis.com.evil.example/certs",
        "https://www.googleapis.com:8443/oauth2/v3/certs",
        "https://user@www.googleapis.com/oauth2/v3/certs",
        "https://www.googleapis.com:x/oauth2/v3/certs",
    ],
)
async def test_url_off_the_allowlist_is_refused_without_a_request(
    cache: KeyCache, router: respx.MockRouter, url: str
) -> None:
    with pytest.raises(SignatureError) as exc:
        await cache.get(url)
    assert exc.value.reason == "untrusted_key_url"
    assert exc.value.detail.endswith("(https on: sandbox.plaid.com, www.googleapis.com)")
    assert router.calls.call_count == 0


async def test_second_get_is_served_from_the_cache(cache: KeyCache, router: respx.MockRouter) -> None:
    route = router.get(CERTS).respond(200, content=JWKS)
    assert await cache.get(CERTS) == JWKS
    assert await cache.get(CERTS) == JWKS
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("cache_control", "kept"),
    [("public, max-age=120, must-revalidate", 120), ("max-age=5", 60), ("max-age=999999", 86400), ("", 3600)],
)
async def test_entries_expire_after_max_age_bounded_to_a_minute_and_a_day(
    cache: KeyCache, router: respx.MockRouter, clock: Clock, cache_control: str, kept: int
) -> None:
    route = router.get(CERTS).respond(200, content=JWKS, headers={"Cache-Control": cache_control})
    await cache.get(CERTS)
    clock.now += kept - 1
    await cache.get(CERTS)
    assert route.call_count == 1
    clock.now += 2
    await cache.get(CERTS)
    assert route.call_count == 2


async def test_failed_refresh_serves_the_stale_value_and_logs(
    cache: KeyCache, router: respx.MockRouter, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    route = router.get(CERTS)
    route.side_effect = [
        httpx.Response(200, content=JWKS),
        httpx.Response(503),
        httpx.Response(200, content=b"new"),
    ]
    await cache.get(CERTS)
    clock.now += 3601
    with caplog.at_level(logging.WARNING, logger="gateway.keys"):
        assert await cache.get(CERTS) == JWKS
    assert caplog.messages == [f"{CERTS} answered 503; serving the copy fetched 3601 s ago"]
    clock.now += 59  # no new attempt for a minute after a failure
    assert await cache.get(CERTS) == JWKS
    assert route.call_count == 2
    clock.now += 2
    assert await cache.get(CERTS) == b"new"


async def test_failed_fetch_without_a_cached_value_is_key_unavailable(
    cache: KeyCache, router: respx.MockRouter
) -> None:
    router.get(CERTS).respond(500)
    with pytest.raises(SignatureError) as exc:
        await cache.get(CERTS)
    assert (exc.value.reason, exc.value.detail) == ("key_unavailable", f"{CERTS} answered 500")


async def test_connect_timeout_is_key_unavailable(cache: KeyCache, router: respx.MockRouter) -> None:
    router.get(CERTS).mock(side_effect=httpx.ConnectTimeout("slow"))
    with pytest.raises(SignatureError) as exc:
        await cache.get(CERTS)
    assert (exc.value.reason, exc.value.detail) == (
        "key_unavailable",
        f"could not fetch {CERTS}: ConnectTimeout",
    )


async def test_endpoint_slower_than_the_total_timeout_is_key_unavailable(
    clock: Clock, router: respx.MockRouter
) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, content=JWKS)

    router.get(CERTS).mock(side_effect=hang)
    cache = KeyCache(["www.googleapis.com"], clock=clock, timeout=0.05)
    try:
        with pytest.raises(SignatureError) as exc:
            await cache.get(CERTS)
    finally:
        await cache.aclose()
    assert (exc.value.reason, exc.value.detail) == (
        "key_unavailable",
        f"{CERTS} did not answer within 0.05 s",
    )


async def test_response_over_the_size_cap_is_refused(clock: Clock, router: respx.MockRouter) -> None:
    router.get(CERTS).respond(200, content=b"x" * 1025)
    cache = KeyCache(["www.googleapis.com"], clock=clock, max_bytes=1024)
    try:
        with pytest.raises(SignatureError) as exc:
            await cache.get(CERTS)
    finally:
        await cache.aclose()
    assert (exc.value.reason, exc.value.detail) == ("key_unavailable", f"{CERTS} sent more than 1024 bytes")


async def test_streamed_response_over_the_size_cap_is_refused(clock: Clock, router: respx.MockRouter) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 200

    router.get(CERTS).mock(return_value=httpx.Response(200, content=chunks()))
    cache = KeyCache(["www.googleapis.com"], clock=clock, max_bytes=1024)
    try:
        with pytest.raises(SignatureError) as exc:
            await cache.get(CERTS)
    finally:
        await cache.aclose()
    assert exc.value.detail == f"{CERTS} sent more than 1024 bytes"


async def test_redirect_is_not_followed(cache: KeyCache, router: respx.MockRouter) -> None:
    router.get(CERTS).respond(302, headers={"Location": "https://evil.example/keys"})
    with pytest.raises(SignatureError) as exc:
        await cache.get(CERTS)
    assert exc.value.detail == f"{CERTS} answered 302"
    assert router.calls.call_count == 1


async def test_concurrent_gets_of_one_url_share_one_fetch(cache: KeyCache, router: respx.MockRouter) -> None:
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, content=JWKS)

    route = router.get(CERTS).mock(side_effect=slow)
    waiting = [asyncio.create_task(cache.get(CERTS)) for _ in range(5)]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*waiting) == [JWKS] * 5
    assert route.call_count == 1


async def test_least_recently_used_entry_is_dropped_past_the_bound(
    clock: Clock, router: respx.MockRouter
) -> None:
    routes = {
        name: router.get(f"https://www.googleapis.com/{name}").respond(200, content=name.encode())
        for name in "abc"
    }
    cache = KeyCache(["www.googleapis.com"], clock=clock, max_entries=2)
    try:
        for name in "abac":  # b is now the least recently used
            await cache.get(f"https://www.googleapis.com/{name}")
        await cache.get("https://www.googleapis.com/a")
        await cache.get("https://www.googleapis.com/b")
    finally:
        await cache.aclose()
    assert {name: route.call_count for name, route in routes.items()} == {"a": 1, "b": 2, "c": 1}


async def test_refresh_refetches_at_most_once_a_minute(
    cache: KeyCache, router: respx.MockRouter, clock: Clock
) -> None:
    route = router.get(CERTS).respond(200, content=JWKS)
    await cache.get(CERTS)
    clock.now += 30
    await cache.get(CERTS, refresh=True)
    assert route.call_count == 1
    clock.now += 31
    await cache.get(CERTS, refresh=True)
    assert route.call_count == 2


PLAID = "https://sandbox.plaid.com"
PLAID_KEY = {
    "alg": "ES256",
    "crv": "P-256",
    "kid": "k1",
    "kty": "EC",
    "x": "eA",
    "y": "eQ",
    "expired_at": None,
}


async def test_plaid_key_is_posted_for_and_cached_by_kid(cache: KeyCache, router: respx.MockRouter) -> None:
    route = router.post(f"{PLAID}/webhook_verification_key/get").respond(
        200, json={"key": PLAID_KEY, "request_id": "r1"}
    )
    assert await cache.plaid_key(PLAID, "client-1", Secret("s3cret"), "k1") == PLAID_KEY
    assert await cache.plaid_key(PLAID + "/", "client-1", Secret("s3cret"), "k1") == PLAID_KEY
    assert route.call_count == 1
    assert json.loads(route.calls.last.request.content) == {
        "client_id": "client-1",
        "secret": "s3cret",
        "key_id": "k1",
    }
    await cache.plaid_key(PLAID, "client-1", Secret("s3cret"), "k2")
    assert route.call_count == 2


async def test_plaid_refusing_the_key_id_is_unknown_key(cache: KeyCache, router: respx.MockRouter) -> None:
    router.post(f"{PLAID}/webhook_verification_key/get").respond(400, json={"error_code": "INVALID_FIELD"})
    with pytest.raises(SignatureError) as exc:
        await cache.plaid_key(PLAID, "client-1", Secret("s3cret"), "nope")
    assert (exc.value.reason, exc.value.detail) == (
        "unknown_key",
        f"{PLAID}/webhook_verification_key/get refused the key id (400)",
    )
    assert "s3cret" not in str(exc.value)


async def test_plaid_answer_without_a_key_is_key_unavailable(
    cache: KeyCache, router: respx.MockRouter
) -> None:
    router.post(f"{PLAID}/webhook_verification_key/get").respond(200, content=b"<html>")
    with pytest.raises(SignatureError) as exc:
        await cache.plaid_key(PLAID, "client-1", Secret("s3cret"), "k1")
    assert exc.value.detail == f"{PLAID}/webhook_verification_key/get did not answer JSON"


async def test_plaid_host_off_the_allowlist_is_refused(cache: KeyCache, router: respx.MockRouter) -> None:
    with pytest.raises(SignatureError) as exc:
        await cache.plaid_key("https://production.plaid.com.evil.example", "c", Secret("s3cret"), "k1")
    assert exc.value.reason == "untrusted_key_url"
    assert router.calls.call_count == 0

"""Forged JWTs whose header PyJWT refuses before any key is touched (a `kid` that is not a string, any `crit`
member): 401 with the reason, never a 500, on every admin API route and every `verify: jwt` hook."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway.errors import AccessDenied, SignatureError
from gateway.keys.keyring import Keyring
from gateway.model import Secret
from gateway.records.service import Service
from gateway.signatures.jwts import unverified_kid
from gateway.web.api import ROUTES, create_api
from gateway.web.app import create_app
from gateway.web.auth import AdminKey, authenticate
from tests.support.admin import SECRET
from tests.support.clock import NOW, Clock


def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def forged(header: dict[str, Any]) -> str:
    return f"{b64(header)}.{b64({'sub': 'x', 'exp': NOW + 60})}.AAAA"


JWT_ROUTES = """
tasks: [{module}]
sources:
  static:
    verify: jwt
    secret: a-shared-jwt-secret-of-at-least-32-bytes
    algorithms: [HS256]
  keyed:
    verify: jwt
    jwks_url: https://issuer.example/.well-known/jwks.json
    algorithms: [RS256]
routes:
  - {id: static, source: static, task: sync-subscription}
  - {id: keyed, source: keyed, task: sync-subscription}
"""

HEADERS = [
    {"alg": "HS256", "typ": "JWT", "kid": 5},
    {"alg": "HS256", "kid": ["a"]},
    {"alg": "HS256", "kid": {"k": 1}},
    {"alg": "HS256", "crit": ["exp"]},
    {"alg": "HS256", "crit": "exp"},
    {"alg": "HS256", "crit": []},
]


@pytest.fixture
async def api(
    load_config: Callable[..., Any], open_store: Callable[..., Any]
) -> AsyncIterator[httpx.AsyncClient]:
    service = Service(await open_store(), load_config(), clock=Clock())
    app = Starlette(
        routes=[Mount("/api", app=create_api(service, AdminKey("HS256", Secret(SECRET)), clock=Clock()))]
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield client


@pytest.mark.parametrize("header", HEADERS, ids=lambda h: json.dumps(h))
async def test_every_admin_route_answers_a_forged_jose_header_with_401(
    api: httpx.AsyncClient, header: dict[str, Any]
) -> None:
    auth = {"Authorization": f"Bearer {forged(header)}"}
    for op in ROUTES:
        path = "/api" + op.path.replace("{id}", "x")
        answer = await api.request(op.verb, path, headers=auth)
        assert answer.status_code == 401, (op.verb, path, answer.text)
        assert answer.json()["error"] == "bad_token"


@pytest.mark.parametrize("header", HEADERS, ids=lambda h: json.dumps(h))
async def test_a_jwt_hook_answers_a_forged_jose_header_with_401(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    router: respx.MockRouter,
    header: dict[str, Any],
) -> None:
    config = load_config(JWT_ROUTES)
    keyring = Keyring(config.sources.values())  # `router` answers no fetch: none may be made
    app = create_app(config, await open_store(), clock=Clock(), keyring=keyring)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        for source in ("static", "keyed"):
            answer = await client.post(
                f"/hooks/{source}", content=b"{}", headers={"Authorization": f"Bearer {forged(header)}"}
            )
            assert (answer.status_code, answer.json()["error"]) == (401, "malformed_signature"), answer.text
    await keyring.aclose()
    assert not router.calls


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
JOSE = st.fixed_dictionaries(
    {"alg": st.sampled_from(["HS256", "RS256", "none", "ES256"]) | JSON},
    optional={"kid": JSON, "crit": JSON, "typ": JSON, "jku": JSON, "x5c": JSON, "b64": JSON},
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(header=JOSE)
def test_any_jose_header_is_refused_with_the_gateways_own_errors(header: dict[str, Any]) -> None:
    token = forged(header)
    with pytest.raises(AccessDenied) as denied:
        authenticate(f"Bearer {token}", AdminKey("HS256", Secret(SECRET)), now=NOW)
    assert denied.value.status == 401
    try:
        unverified_kid(token)
    except SignatureError as exc:
        assert exc.reason == "malformed_signature"

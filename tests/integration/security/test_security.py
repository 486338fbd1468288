"""Security through the real app on a real store: every admin route refuses bad credentials, no secret or
token reaches a log record, an answer, the database's API views or a repr, and remote keys are fetched only
from the configured hosts, within a time bound, without following redirects."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
import signal
import sqlite3
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.routing import Route

from gateway.cli import main as cli
from gateway.errors import ConfigError, StoreError
from gateway.execution.executor import Executor, ExecutorOptions
from gateway.keys.keyring import Keyring
from gateway.model import Secret
from gateway.records.service import Service
from gateway.report import Gauges
from gateway.routes import load as config_mod
from gateway.server import ServeOptions
from gateway.signatures.signing import sign
from gateway.store.ops.reads import Reads
from gateway.store.sqlite.store import SQLiteStore
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.logs import Scrub
from gateway.telemetry.metrics import Metrics
from gateway.web.api import create_api
from gateway.web.auth import AUDIENCE, AdminKey, authenticate
from tests.support.admin import SCOPES, token
from tests.support.clock import NOW, Clock
from tests.support.keys import PAYPAL_BODY, PLAID_BODY, Pki, hs256_by_hand, jwks, paypal_headers
from tests.support.process import Gateway
from tests.support.routes import REMOTE_ROUTES, TASKS_CODE

MARK = "LEAKq7"  # inside every configured secret: any text quoting a piece of one that holds it is caught
WRONG = "WRONG7"  # inside every wrong secret a test sends: a presented credential is never quoted back either
GITHUB = f"{MARK}-github-6d1f0b9e"
ADMIN_SECRET = f"{MARK}-admin-Vq3wQm8nZ1xK7pL0sR4tY6uE2iO9aD5f"  # 45 bytes
METRICS_TOKEN = f"{MARK}-metrics-2b8c9d1e"
SOURCE_SECRETS = {
    "github": [GITHUB],
    "stripe": [f"whsec_{MARK}stripeNew0a9f", f"whsec_{MARK}stripeOld7c2e"],
    "billing": [f"whsec_{MARK}billingSecret0123456789AB"],  # base64 after whsec_, as Standard Webhooks wants
    "slack": [f"{MARK}-slack-8e2d"],
    "zoom": [f"{MARK}-zoom-41ac"],
    "apikey": [f"{MARK}-apikey-93b1"],
    "querykey": [f"{MARK}-querykey-5f70"],
    "gitlab": [f"{MARK}-gitlab-c3d4"],
    "basic": [f"hooks:{MARK}-basic-e5f6"],
    "jwt": [f"{MARK}-jwt-hmac-secret-of-at-least-32-bytes"],
}
VERIFY = {
    "github": "github",
    "stripe": "stripe",
    "billing": "standard-webhooks",
    "slack": "slack",
    "zoom": "zoom",
    "apikey": "{scheme: token, header: X-Api-Key}",
    "querykey": "{scheme: token, query: key}",
    "gitlab": "gitlab",
    "basic": "basic",
    "jwt": "jwt\n    algorithms: [HS256]\n    audience: gateway",
}
LEAKY_TASKS = (
    TASKS_CODE
    + f"""
@task(id="leaky", retry={{"max_attempts": 1}})
async def leaky(payload, ctx):
    ctx.log.info("calling the API with key {GITHUB}")
    raise RuntimeError("the API refused key {GITHUB}")
"""
)


def leak_routes() -> str:
    sources = "".join(
        f"  {name}:\n    verify: {VERIFY[name]}\n    secrets: {json.dumps(secrets)}\n"
        for name, secrets in SOURCE_SECRETS.items()
    )
    routes = "".join(
        f"  - {{id: {name}, source: {name}, task: record-payment}}\n"
        for name in SOURCE_SECRETS
        if name != "github"
    )
    # Input mapped from credential headers and a query token: what is stored is the redacted value.
    mapped = "{from_header: headers.X-Api-Key, ref: body.ref}"
    return (
        "tasks: [{module}]\nsources:\n"
        + sources
        + "routes:\n  - {id: leaky, source: github, task: leaky}\n"
        + f"  - {{id: mapped, source: apikey, task: deploy-preview, input: {mapped}}}\n"
        + "  - {id: query-mapped, source: querykey, task: deploy-preview, input: {key: query.key}}\n"
        + "  - {id: auth-mapped, source: basic, task: deploy-preview, input: {auth: headers.Authorization}}\n"
        + routes
    )


class FaultyReads(Reads):
    """Reads that fail while their store says so."""

    def __init__(self, conn: Any, store: FaultyStore) -> None:
        super().__init__(conn)
        self._store = store

    async def _read(self, query: str, params: dict[str, Any]) -> Any:
        if self._store.fail_reads:
            raise StoreError("could not read from the database: disk I/O error")
        return await super()._read(query, params)


class FaultyStore(SQLiteStore):
    """A real store whose writes and reads fail while told to, as a full or failing disk makes them."""

    fail_writes = False
    fail_reads = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads = FaultyReads(self.reads.conn, self)

    async def write(self, conn: Any, batch: list[Any]) -> None:
        if self.fail_writes:
            raise sqlite3.OperationalError("disk I/O error")
        return await super().write(conn, batch)


async def gauges() -> Gauges:
    return Gauges(now=NOW)


@pytest.fixture
async def make_gateway(open_store: Callable[..., Any], client_for: Callable[..., Any]) -> Callable[..., Any]:
    """``await make_gateway(config)``: (client, store, admin API app) of the whole app in process, with the
    admin API on ADMIN_SECRET and /metrics behind METRICS_TOKEN, on a FaultyStore."""

    async def make(config: Any, clock: Clock | None = None) -> tuple[httpx.AsyncClient, FaultyStore, Any]:
        clock = clock or Clock()
        store = await open_store(cls=FaultyStore)
        service = Service(store, config, clock=clock)
        api = create_api(service, AdminKey("HS256", Secret(ADMIN_SECRET)), clock=clock)
        client = await client_for(
            config,
            store,
            clock=clock,
            api=api,
            telemetry=Telemetry(metrics=Metrics(process=False)),
            gauges=gauges,
            metrics_token=Secret(METRICS_TOKEN),
        )
        return client, store, api

    return make


def admin_token(scopes: Iterable[str] = SCOPES, now: float = NOW) -> str:
    return token(tuple(scopes), secret=ADMIN_SECRET, now=now)


# -- 1. every admin route, every kind of bad credential ------------------------------------------------------

REALM = 'Bearer realm="gateway-admin"'
MISSING = (401, "missing_token", REALM)
BAD = (401, "bad_token", 'Bearer realm="gateway-admin", error="invalid_token"')
EXPIRED = (401, "expired_token", BAD[2])
NO_SCOPE = (403, "missing_scope", "")  # the challenge names the route's scope
CLAIMS = {"sub": "ops-bot", "scope": "read replay trigger", "aud": AUDIENCE, "iat": NOW, "exp": NOW + 3600}


def bearer_bytes(token: str) -> bytes:
    return f"Bearer {token}".encode("latin-1")


def signed_claims(**changes: Any) -> bytes:
    """A bearer header of a token the admin secret signed: good claims with ``changes`` (None drops one)."""
    claims = {k: v for k, v in {**CLAIMS, **changes}.items() if v is not None}
    return bearer_bytes(jwt.encode(claims, ADMIN_SECRET, algorithm="HS256"))


def forged(header: object, signature: str = "c2lnbmF0dXJl") -> bytes:
    part = [base64.urlsafe_b64encode(json.dumps(x).encode()).rstrip(b"=").decode() for x in (header, CLAIMS)]
    return bearer_bytes(f"{part[0]}.{part[1]}.{signature}")


def required_scope(method: str, path: str) -> str:
    """docs/api.md: every GET needs read; a trigger needs trigger; every other change needs replay."""
    return "read" if method == "GET" else "trigger" if path.endswith("/trigger") else "replay"


def admin_routes(api: Any) -> list[tuple[str, str]]:
    """(method, path with its parameters filled) of every route in the admin API's table."""
    found = [
        (method, "/api" + re.sub(r"\{[^}]+\}", "nothing", route.path))
        for route in api.routes
        if isinstance(route, Route)
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]
    assert len(found) >= 15  # the table as docs/api.md lists it, and whatever was added since
    return found


# What is wrong → (the Authorization header's bytes, or None for none; the answer: status, error, challenge)
REFUSALS: dict[str, tuple[bytes | None, tuple[int, str, str]]] = {
    "no header": (None, MISSING),
    "empty header": (b"", MISSING),
    "scheme alone": (b"Bearer", MISSING),
    "scheme and blanks": (b"Bearer    ", MISSING),
    "basic credentials": (b"Basic aG9va3M6cGFzcw==", MISSING),
    "the token without its scheme": (admin_token().encode(), MISSING),
    "two words": (b"Bearer a b", BAD),
    "not a jwt": (b"Bearer not-a-jwt", BAD),
    "non-ascii utf-8": ("Bearer tökén".encode(), BAD),
    "non-ascii after a good token": (bearer_bytes(admin_token() + "é"), BAD),
    "over 16 KiB": (bearer_bytes("a" * (16 * 1024 + 1)), BAD),
    "alg none": (forged({"alg": "none"}, signature=""), BAD),
    "alg RS256": (forged({"alg": "RS256"}), BAD),
    "header not an object": (forged([]), BAD),
    "signed with another secret": (bearer_bytes(token(secret=WRONG + ADMIN_SECRET)), BAD),
    "another audience": (signed_claims(aud="elsewhere"), BAD),
    "audience in a list": (signed_claims(aud=[AUDIENCE]), BAD),
    "no exp": (signed_claims(exp=None), BAD),
    "exp as text": (signed_claims(exp="tomorrow"), BAD),
    "scope as a list": (signed_claims(scope=["read"]), BAD),
    "empty subject": (signed_claims(sub=""), BAD),
    "issued in the future": (bearer_bytes(admin_token(now=NOW + 3600)), BAD),
    "not valid yet": (signed_claims(nbf=NOW + 600), BAD),
    "expired": (bearer_bytes(admin_token(now=NOW - 7200)), EXPIRED),
    "no scope this gateway knows": (signed_claims(scope="admin write"), NO_SCOPE),
}


def token_in(header: bytes | None) -> str | None:
    """The credential part of a header, when it is long enough that finding it in an answer means a leak."""
    if not header:
        return None
    text = header.decode("latin-1").strip()
    word = text.split()[-1]
    return word if len(word) >= 16 else None


def refusal_problems(
    response: httpx.Response, status: int, error: str, challenge: str, sent: str | None
) -> list[str]:
    problems = []
    if response.status_code != status:
        problems.append(f"status {response.status_code}, not {status}: {response.text[:200]}")
        return problems
    if response.headers.get("content-type") != "application/json":
        problems.append(f"content type {response.headers.get('content-type')}")
    body = response.json()
    if set(body) != {"error", "detail"} or body["error"] != error:  # a JSON error and no data
        problems.append(f"body {body}")
    if response.headers.get("www-authenticate") != challenge:
        problems.append(f"challenge {response.headers.get('www-authenticate')!r}, not {challenge!r}")
    shown = response.text + str(response.headers)
    if (sent is not None and sent in shown) or ADMIN_SECRET in shown:
        problems.append("the token or the admin secret is quoted back")
    return problems


@pytest.mark.parametrize(("header", "answer"), list(REFUSALS.values()), ids=list(REFUSALS))
async def test_every_admin_route_refuses_a_bad_credential_with_a_json_error_and_its_challenge(
    make_gateway: Callable[..., Any],
    load_config: Callable[..., Any],
    header: bytes | None,
    answer: tuple[int, str, str],
) -> None:
    status, error, challenge = answer
    client, _, api = await make_gateway(load_config())
    headers = {} if header is None else {"Authorization": header}
    failures = {}
    for method, path in admin_routes(api):
        scope = required_scope(method, path)
        wanted = challenge or f'Bearer realm="gateway-admin", error="insufficient_scope", scope="{scope}"'
        response = await client.request(method, path, headers=headers, json={} if method == "POST" else None)
        problems = refusal_problems(response, status, error, wanted, token_in(header))
        if problems:
            failures[f"{method} {path}"] = problems
    assert failures == {}


async def test_every_admin_route_answers_403_to_a_token_with_every_scope_but_its_own(
    make_gateway: Callable[..., Any], load_config: Callable[..., Any]
) -> None:
    client, _, api = await make_gateway(load_config())
    failures = {}
    for method, path in admin_routes(api):
        scope = required_scope(method, path)
        others = admin_token([s for s in SCOPES if s != scope])
        response = await client.request(method, path, headers={"Authorization": f"Bearer {others}"})
        challenge = f'Bearer realm="gateway-admin", error="insufficient_scope", scope="{scope}"'
        problems = refusal_problems(response, 403, "missing_scope", challenge, others)
        if problems:
            failures[f"{method} {path}"] = problems
    assert failures == {}


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_every_admin_route_lets_a_token_with_only_its_scope_through(
    make_gateway: Callable[..., Any], load_config: Callable[..., Any], scheme: str
) -> None:
    client, _, api = await make_gateway(load_config())
    answered = {}
    for method, path in admin_routes(api):
        granted = admin_token([required_scope(method, path)])
        response = await client.request(method, path, headers={"Authorization": f"{scheme} {granted}"})
        answered[f"{method} {path}"] = response.status_code
        assert granted not in response.text
    # Past authentication: the made-up ids are not found, a made-up task cannot be triggered, and so on.
    assert {route: code for route, code in answered.items() if code in (401, 403)} == {}


METRICS_REALM = 'Bearer realm="metrics"'


@pytest.mark.parametrize(
    ("header", "status", "error"),
    [
        (None, 401, "missing_token"),
        ("Basic " + base64.b64encode(f"x:{METRICS_TOKEN}".encode()).decode(), 401, "missing_token"),
        (METRICS_TOKEN, 401, "missing_token"),
        ("Bearer", 401, "missing_token"),
        (f"Bearer {METRICS_TOKEN}x", 401, "bad_token"),
        (f"Bearer {METRICS_TOKEN[:-1]}", 401, "bad_token"),
        (f"Bearer {METRICS_TOKEN} {METRICS_TOKEN}", 401, "bad_token"),
        (f"Bearer {admin_token()}", 401, "bad_token"),
        (f"Bearer {METRICS_TOKEN}", 200, None),
        (f"bearer   {METRICS_TOKEN}  ", 200, None),
    ],
)
async def test_metrics_with_a_scrape_token_answers_only_that_token(
    make_gateway: Callable[..., Any],
    load_config: Callable[..., Any],
    header: str | None,
    status: int,
    error: str | None,
) -> None:
    client, _, _ = await make_gateway(load_config())
    headers = {} if header is None else {"Authorization": header}
    for method in ("GET", "HEAD"):
        response = await client.request(method, "/metrics", headers=headers)
        assert response.status_code == status, response.text
        assert METRICS_TOKEN not in response.text
        if error is None:
            assert response.headers["content-type"].startswith("text/plain")
            assert method == "HEAD" or "gateway_requests_total" in response.text
        elif method == "GET":
            assert response.json()["error"] == error
            assert response.headers["www-authenticate"] == METRICS_REALM
            assert set(response.json()) == {"error", "detail"}


# -- 2. no secret in any log record, answer, stored view or repr ---------------------------------------------


class Witness:
    """Everything the gateway showed, and every string that must never be in any of it."""

    def __init__(self) -> None:
        self.forbidden = {MARK, WRONG, ADMIN_SECRET, METRICS_TOKEN}
        for name, secrets in SOURCE_SECRETS.items():
            if name == "basic":  # sent as base64 in Authorization: Basic
                self.forbidden |= {base64.b64encode(s.encode()).decode() for s in secrets}
        self.seen: list[tuple[str, str]] = []

    def forbid(self, *values: str) -> None:
        self.forbidden |= set(values)

    def see(self, label: str, text: object) -> None:
        self.seen.append((label, text if isinstance(text, str) else repr(text)))

    def answer(self, label: str, response: httpx.Response) -> httpx.Response:
        self.see(f"{label} -> {response.status_code}", response.text + "\n" + str(response.headers))
        return response

    def leaks(self) -> list[str]:
        return [
            f"{label}: {value[:24]}… in {text[:300]!r}"
            for label, text in self.seen
            for value in self.forbidden
            if value in text
        ]


def record_text(record: logging.LogRecord) -> str:
    """A record as any handler could render it: message, every extra field, arguments and exception."""
    parts = [record.getMessage(), repr(record.args)]
    parts += [str(value) for key, value in vars(record).items() if key not in ("args", "exc_info")]
    if record.exc_info:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(parts)


def signed(source: Any, secret: str, body: bytes, now: float) -> tuple[str, list[tuple[str, str]]]:
    """(path, headers) of ``body`` as ``source``'s provider sends it; a query token goes into the path."""
    if source.scheme.secret_query:
        return f"{source.path}?{source.scheme.secret_query[0]}={secret}&page=1", []
    url = f"http://gateway.test{source.path}"
    return source.path, sign(source.scheme, Secret(secret), body, now=now, url=url, remote=source.remote)


async def deliver(
    client: httpx.AsyncClient, config: Any, name: str, body: bytes, *, wrong: bool = False
) -> httpx.Response:
    """``body`` to source ``name``, signed at NOW (with a wrong secret when ``wrong``)."""
    source = config.sources[name]
    secret = source.secrets[0].reveal().replace(MARK, WRONG if wrong else MARK)
    path, headers = signed(source, secret, body, NOW)
    return await client.post(path, content=body, headers=[*headers, ("Content-Type", "application/json")])


PUSH = json.dumps({"ref": "refs/heads/main", "after": "abc123", "repository": {"full_name": "o/r"}}).encode()
HANDSHAKES = {
    "slack": {"type": "url_verification", "challenge": "challenge-3fa9"},
    "zoom": {"event": "endpoint.url_validation", "payload": {"plainToken": "plain-77c1"}},
}


async def test_no_secret_or_token_reaches_a_log_record_an_answer_the_api_or_a_repr(
    make_gateway: Callable[..., Any],
    load_config: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    witness = Witness()
    config = load_config(leak_routes(), LEAKY_TASKS)
    client, store, _ = await make_gateway(config)
    good = admin_token()
    witness.forbid(good)
    admin = {"Authorization": f"Bearer {good}"}

    async def api(method: str, path: str, **kwargs: Any) -> httpx.Response:
        return witness.answer(f"{method} {path}", await client.request(method, path, headers=admin, **kwargs))

    # Valid deliveries, forged ones and handshakes, to every source.
    for name in SOURCE_SECRETS:
        accepted = witness.answer(f"{name} signed", await deliver(client, config, name, PUSH))
        assert accepted.status_code == 202, accepted.text
        forged = witness.answer(f"{name} forged", await deliver(client, config, name, PUSH, wrong=True))
        assert forged.status_code == 401, forged.text
    for name, payload in HANDSHAKES.items():
        answered = witness.answer(
            f"{name} handshake", await deliver(client, config, name, json.dumps(payload).encode())
        )
        assert answered.status_code == 200 and (
            "challenge-3fa9" in answered.text or "plain-77c1" in answered.text
        )
    jwt_source = config.sources["jwt"]
    _, jwt_headers = signed(jwt_source, jwt_source.secrets[0].reveal(), PUSH, NOW)  # what deliver() sent
    witness.forbid(jwt_headers[0][1].removeprefix("Bearer "))

    # A task that puts its secret into its error and its log, run by an executor scrubbing as `serve` does.
    secrets = cli.secrets_of(
        config, {"GATEWAY_ADMIN_SECRET": ADMIN_SECRET, "GATEWAY_METRICS_TOKEN": METRICS_TOKEN}
    )
    executor = Executor(
        store.runs,
        config.tasks,
        ExecutorOptions(poll=3600),
        clock=Clock(),
        telemetry=Telemetry(scrub=Scrub(secrets)),
    )
    assert await executor.run_once() >= len(SOURCE_SECRETS)

    # The store failing: writes (deliveries, triggers, rejections) and reads (the API).
    store.fail_writes = True
    witness.answer("github while the disk fails", await deliver(client, config, "github", PUSH))
    witness.answer(
        "apikey forged while the disk fails", await deliver(client, config, "apikey", PUSH, wrong=True)
    )
    assert (await api("POST", "/api/tasks/deploy-preview/trigger", json={"payload": {}})).status_code == 503
    store.fail_writes, store.fail_reads = False, True
    assert (await api("GET", "/api/events")).status_code == 503
    store.fail_reads = False

    # Everything the API shows.
    assert (
        await api("POST", "/api/tasks/deploy-preview/trigger", json={"payload": {"n": 1}})
    ).status_code == 202
    events = (await api("GET", "/api/events?limit=500")).json()["data"]
    runs = (await api("GET", "/api/runs?limit=500")).json()["data"]
    for event in events:
        shown = (await api("GET", f"/api/events/{event['id']}")).json()
        assert all(
            value == "[redacted]"
            for key, value in shown["headers"]
            if key in ("authorization", "x-api-key", "x-gitlab-token")
        )
        await api("GET", f"/api/events/{event['id']}/body")
    for run in runs:
        await api("GET", f"/api/runs/{run['id']}")
    leaky = next(run for run in runs if run["task"] == "leaky")
    detail = (await api("GET", f"/api/runs/{leaky['id']}")).json()
    assert detail["attempt_history"][0]["error_message"] == "the API refused key [redacted]"
    mapped = [r for r in runs if r["route"] in ("mapped", "query-mapped", "auth-mapped")]
    inputs = [(await api("GET", f"/api/runs/{r['id']}")).json()["input"] for r in mapped]
    assert sorted(map(str, inputs)) == [
        str({"auth": "[redacted]"}),
        str({"from_header": "[redacted]", "ref": "refs/heads/main"}),
        str({"key": "[redacted]"}),
    ]
    rejections = (await api("GET", "/api/rejections?limit=500")).json()["data"]
    assert len(rejections) >= len(SOURCE_SECRETS)
    for path in ("/api/stats", "/api/jobs"):
        await api("GET", path)
    await api("POST", "/api/replays", json={"kind": "replay", "filter": {}, "dry_run": True})
    witness.answer(
        "metrics", await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    )

    # Every object that holds a secret, as repr and str.
    key = AdminKey("HS256", Secret(ADMIN_SECRET))
    options = ServeOptions(db=Path("x.db"), admin_key=key, metrics_token=Secret(METRICS_TOKEN))
    principal = authenticate(f"Bearer {good}", key, now=NOW)
    holders: list[object] = [config, *config.sources.values(), key, options, principal, Secret(GITHUB)]
    holders += [Telemetry(scrub=Scrub(secrets)), Scrub(secrets)]
    for holder in holders:
        witness.see(f"repr {type(holder).__name__}", repr(holder))
        witness.see(f"str {type(holder).__name__}", str(holder))

    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]  # the test's client
    for record in records:
        witness.see(f"log {record.name} {record.levelname}", record_text(record))
    assert any(r.name == "gateway.store" for r in records)  # the faults were logged
    assert witness.leaks() == []
    print(
        f"\nsecrets: {len(witness.forbidden)} strings, checked in {len(witness.seen)} texts "
        f"({len(records)} log records), {sum(len(t) for _, t in witness.seen)} characters"
    )


CONFIG_WITH_SECRETS = f"""
tasks: [{{module}}]
sources:
  github:
    verify: github
    secret: {MARK}-github-1
    tolerance: soon
  stripe:
    verify: stripe
    secrets: {MARK}-not-a-list
  typo:
    verify: github
    secrte: {MARK}-typo
  billing:
    verify: standard-webhooks
    secret: whsec_{MARK}!!!not-base64
  basic:
    verify: basic
    secret: {MARK}-no-colon
  short:
    verify: jwt
    secret: {MARK}-short
    algorithms: [HS256]
  jwks:
    verify: jwt
    algorithms: [RS256]
    jwks_url: https://user:{MARK}-password@issuer.example/jwks.json
  preset:
    verify: githb
    secret: {MARK}-unknown-preset
  discord:
    verify: discord
    public_key: {MARK}-not-hex
    signing_key: {MARK}-not-a-private-key
  env:
    verify: github
    secret: ${{UNSET_SECRET_VAR}}
routes:
  - {{id: r, source: github, task: nowhere, input: {{x: headers.{MARK}}}}}
"""


SOURCE_HEAD = "sources:\n  github:\n    verify: github\n"


@pytest.mark.parametrize(
    ("routes", "said"),
    [
        (
            CONFIG_WITH_SECRETS,
            "routes.yaml:27:5: sources.jwks.jwks_url: must not carry a user name or password "
            "(the value is not shown)",
        ),
        (
            SOURCE_HEAD + f'    secret: "{MARK}-unterminated\n',
            "routes.yaml:5:1: not valid YAML: found unexpected end of stream",
        ),
        (
            SOURCE_HEAD + f"    secret: {MARK}-1\n    secret: {MARK}-2\n",
            "routes.yaml:5:5: not valid YAML: duplicate key 'secret'",
        ),
        (
            SOURCE_HEAD + f"    secret: {MARK}-1\n  \tbad: indent\n",
            "routes.yaml:5:3: not valid YAML: found character '\\t' that cannot start any token",
        ),
    ],
    ids=["many problems", "unterminated string", "duplicate key", "tab indent"],
)
def test_config_problems_never_quote_a_secret(
    write_routes: Callable[..., Path], routes: str, said: str
) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["check", "--routes", str(write_routes(routes))], env={}, out=out, err=err) == 1
    shown = out.getvalue() + err.getvalue()
    assert said in shown.splitlines()
    assert MARK not in shown, shown


def test_a_secret_given_by_default_is_warned_about_by_its_path_not_its_value(
    load_config: Callable[..., Any],
) -> None:
    config = load_config(f"sources:\n  github:\n    verify: github\n    secret: ${{GH_SECRET:-{MARK}-dev}}\n")
    assert config.sources["github"].secrets[0].reveal() == f"{MARK}-dev"
    assert config.warnings and MARK not in "\n".join(config.warnings)
    with pytest.raises(ConfigError) as bad:
        load_config(f"sources:\n  github:\n    verify: github\n    secret: {MARK}\n    tolerance: -1\n")
    assert MARK not in str(bad.value) + repr(bad.value.problems)


@pytest.mark.acceptance
def test_serve_at_debug_logs_no_secret_while_it_ingests_fails_and_answers_the_api(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    """The real process as operators run it: `serve --log-level debug`, every line on stderr, to SIGTERM."""
    routes = write_routes(leak_routes(), LEAKY_TASKS)
    config = config_mod.load(routes, {})
    env = {"GATEWAY_ADMIN_SECRET": ADMIN_SECRET, "GATEWAY_METRICS_TOKEN": METRICS_TOKEN}
    log = tmp_path / "gateway.log"
    gw = Gateway(routes, tmp_path / "gateway.db", log, args=["--log-level", "debug"], env=env)
    witness = Witness()
    reader = token(("read",), secret=ADMIN_SECRET, now=time.time())
    witness.forbid(reader)
    admin = {"Authorization": f"Bearer {reader}"}
    try:
        gw.start()
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            for name in ("github", "querykey", "apikey", "basic", "slack"):
                source = config.sources[name]
                for mark in (MARK, WRONG):
                    secret = source.secrets[0].reveal().replace(MARK, mark)
                    path, headers = signed(source, secret, PUSH, time.time())
                    witness.answer(f"{name} {mark}", client.post(path, content=PUSH, headers=headers))
            runs: list[dict[str, Any]] = []
            deadline = time.monotonic() + 10
            while not (runs and runs[0]["status"] == "failed") and time.monotonic() < deadline:
                time.sleep(0.05)
                runs = client.get("/api/runs?task=leaky", headers=admin).json()["data"]
            failed = witness.answer("leaky run", client.get(f"/api/runs/{runs[0]['id']}", headers=admin))
            assert failed.json()["error"]["message"] == "the API refused key [redacted]"
            witness.answer("events", client.get("/api/events", headers=admin))
            witness.answer("unscoped", client.post("/api/replays", headers=admin, json={}))
            scrape = {"Authorization": f"Bearer {METRICS_TOKEN}"}
            assert witness.answer("metrics", client.get("/metrics", headers=scrape)).status_code == 200
            witness.answer(
                "metrics refused", client.get("/metrics", headers={"Authorization": f"Bearer {WRONG}"})
            )
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    finally:
        gw.stop()
    lines = log.read_text().splitlines()
    assert any('"level": "debug"' in line for line in lines), "no debug line: is --log-level debug applied?"
    for line in lines:
        witness.see("serve log", line)
    assert witness.leaks() == []
    print(
        f"\nserve --log-level debug: {len(lines)} log lines, {len(witness.seen) - len(lines)} answers checked"
    )


# -- 4. remote keys: only configured hosts, no redirects, bounded time ---------------------------------------

PAYPAL_URL = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"
JWKS_URL = "https://issuer.example/.well-known/jwks.json"
PLAID_KEYS = "https://sandbox.plaid.com/webhook_verification_key/get"


@pytest.fixture
async def remote_gateway(
    tmp_path: Path,
    pki: Pki,
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
) -> AsyncIterator[Callable[..., Any]]:
    """``await remote_gateway(**keyring_options)``: a client of the app with the remote-key sources of
    tests/support/routes.py's REMOTE_ROUTES (plaid, pubsub, paypal, jwt) and a real Keyring."""
    anchor = tmp_path / "anchor.pem"
    anchor.write_bytes(pki.anchor_pem)
    config = load_config(REMOTE_ROUTES.replace("ANCHOR", str(anchor)))
    keyrings: list[Keyring] = []
    # One outbound client for every cache unless a test brings its own: each new one loads the CA bundle.
    shared = httpx.AsyncClient(timeout=2.0, follow_redirects=False)

    async def make(**options: Any) -> httpx.AsyncClient:
        keyring = Keyring(config.sources.values(), **{"client": shared, **options})
        keyrings.append(keyring)
        client: httpx.AsyncClient = await client_for(
            config, await open_store(), clock=Clock(), keyring=keyring
        )
        return client

    yield make
    for keyring in keyrings:
        await keyring.aclose()
    await shared.aclose()


HOSTILE_CERT_URLS = [
    "http://api.paypal.com/v1/notifications/certs/CERT-1",
    "https://attacker.example/v1/notifications/certs/CERT-1",
    "https://api.paypal.com.attacker.example/v1/notifications/certs/CERT-1",
    "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
    "https://api.paypal.com@attacker.example/v1/notifications/certs/CERT-1",
    "https://attacker.example\\@api.paypal.com/v1/notifications/certs/CERT-1",
    "https://api.paypal.com\\@attacker.example/v1/notifications/certs/CERT-1",
    "https://attacker.example#@api.paypal.com/v1/notifications/certs/CERT-1",
    "https://attacker.example?@api.paypal.com/v1/notifications/certs/CERT-1",
    "https://api.paypal.com./v1/notifications/certs/CERT-1",
    "https://api.paypal.com\t/v1/notifications/certs/CERT-1",
    "https://api.paypal.com/v1/notifications/certs/../../oauth2/token",
    "https://api.paypal.com/v1/notifications/certs/%2e%2e/%2e%2e/oauth2/token",
    "https://api.paypal.com/v1/notifications/certs/CERT-1?next=https://attacker.example/",
    "https://api.paypal.com/v1/oauth2/token",
    "https://169.254.169.254/v1/notifications/certs/CERT-1",
    "https://localhost/v1/notifications/certs/CERT-1",
    "https://[::1]/v1/notifications/certs/CERT-1",
    "file:///etc/passwd",
    "//attacker.example/v1/notifications/certs/CERT-1",
]


@pytest.mark.parametrize("url", HOSTILE_CERT_URLS)
async def test_a_paypal_cert_url_off_paypal_is_refused_without_any_request(
    remote_gateway: Callable[..., Any], router: respx.MockRouter, pki: Pki, url: str
) -> None:
    anywhere = router.route().respond(200, content=pki.chain_pem)
    headers = dict(paypal_headers(pki.leaf_key, PAYPAL_BODY).pairs) | {"paypal-cert-url": url}
    response = await (await remote_gateway()).post("/hooks/paypal", content=PAYPAL_BODY, headers=headers)
    assert (response.status_code, response.json()["error"]) == (401, "untrusted_certificate"), response.text
    assert anywhere.call_count == 0


@pytest.mark.parametrize("where", ["jku", "x5u", "kid"])
async def test_a_jwt_header_naming_another_key_url_does_not_move_the_fetch(
    remote_gateway: Callable[..., Any], router: respx.MockRouter, rsa_key: rsa.RSAPrivateKey, where: str
) -> None:
    configured = router.get(JWKS_URL).respond(200, json=jwks(rsa_key, "k1"))
    anywhere = router.route().respond(200, json=jwks(rsa_key, "evil"))
    steer = {"kid": "k1", where: "https://attacker.example/jwks.json"}
    token = jwt.encode({"sub": "svc", "exp": NOW + 60}, rsa_key, algorithm="RS256", headers=steer)
    client = await remote_gateway()
    response = await client.post("/hooks/keyed", content=b"{}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == (401 if where == "kid" else 202), response.text
    assert configured.call_count >= 1 and anywhere.call_count == 0


async def test_a_plaid_key_id_goes_into_the_request_body_never_into_the_url(
    remote_gateway: Callable[..., Any], router: respx.MockRouter
) -> None:
    plaid = router.post(PLAID_KEYS).respond(400, json={"error_code": "INVALID_WEBHOOK_VERIFICATION_KEY_ID"})
    anywhere = router.route().respond(200, json={})
    kid = "../../../attacker.example/x?y=#"
    token = hs256_by_hand({"alg": "ES256", "kid": kid}, {"iat": NOW}, b"whatever")
    client = await remote_gateway()
    response = await client.post("/hooks/plaid", content=PLAID_BODY, headers={"Plaid-Verification": token})
    assert (response.status_code, response.json()["error"]) == (401, "unknown_key")
    assert anywhere.call_count == 0 and plaid.call_count == 1
    assert json.loads(plaid.calls.last.request.content)["key_id"] == kid


async def test_a_redirect_to_another_host_is_not_followed_even_by_a_client_that_follows_them(
    remote_gateway: Callable[..., Any], router: respx.MockRouter, rsa_key: rsa.RSAPrivateKey
) -> None:
    router.get(JWKS_URL).respond(302, headers={"Location": "https://attacker.example/jwks.json"})
    anywhere = router.route().respond(200, json=jwks(rsa_key, "k1"))
    token = jwt.encode({"sub": "svc", "exp": NOW + 60}, rsa_key, algorithm="RS256", headers={"kid": "k1"})
    async with httpx.AsyncClient(follow_redirects=True) as following:
        client = await remote_gateway(client=following)
        response = await client.post(
            "/hooks/keyed", content=b"{}", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 503 and response.json() == {
        "error": "key_unavailable",
        "detail": f"{JWKS_URL} answered 302",
    }
    assert anywhere.call_count == 0


@pytest.mark.parametrize("client_timeout", [None, 60.0], ids=["client without timeout", "client of 60 s"])
async def test_a_key_endpoint_that_never_answers_costs_a_delivery_the_keyring_timeout_then_503(
    remote_gateway: Callable[..., Any], router: respx.MockRouter, client_timeout: float | None
) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    router.get(JWKS_URL).mock(side_effect=hang)
    token = jwt.encode({"exp": NOW + 60}, "x" * 32, algorithm="HS256", headers={"kid": "k1"})
    async with httpx.AsyncClient(timeout=client_timeout) as slow:
        client = await remote_gateway(client=slow, timeout=0.2)
        started = time.perf_counter()
        response = await client.post(
            "/hooks/keyed", content=b"{}", headers={"Authorization": f"Bearer {token}"}
        )
        took = time.perf_counter() - started
    assert response.status_code == 503
    assert response.json()["detail"] == f"{JWKS_URL} did not answer within 0.2 s"
    print(f"\nhanging key endpoint answered 503 after {took:.3f} s (keyring timeout 0.2 s)")


async def test_every_key_cache_is_limited_to_its_sources_documented_or_configured_hosts(
    load_config: Callable[..., Any], tmp_path: Path, pki: Pki
) -> None:
    anchor = tmp_path / "anchor.pem"
    anchor.write_bytes(pki.anchor_pem)
    config = load_config(REMOTE_ROUTES.replace("ANCHOR", str(anchor)))
    keyring = Keyring(config.sources.values())
    try:
        hosts = {name: sorted(cache.hosts) for name, cache in keyring._caches.items()}
        timeouts = {name: cache._client.timeout for name, cache in keyring._caches.items()}
    finally:
        await keyring.aclose()
    assert hosts == {
        "plaid": ["sandbox.plaid.com"],
        "pubsub": ["www.googleapis.com"],
        "paypal": [
            "api-m.paypal.com",
            "api-m.sandbox.paypal.com",
            "api.paypal.com",
            "api.sandbox.paypal.com",
        ],
        "keyed": ["issuer.example"],
        "static": [],  # a jwt source with its own secret: nothing may be fetched for it
    }
    assert {name: timeout.read for name, timeout in timeouts.items()} == dict.fromkeys(hosts, 2.0)

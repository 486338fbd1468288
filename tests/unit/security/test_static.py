"""Security rules read from the source itself: no credential compared with ``==``/``in``, every credential
check through ``compare_digest``, outbound HTTP only from gateway/keys/cache.py, with a timeout and no
redirects.
"""

from __future__ import annotations

import ast
import functools
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import SignatureError
from gateway.model import Headers, Inbound, Secret
from gateway.signatures.recipes import scheme_from_spec
from gateway.signatures.schemes import PRESETS, Scheme
from gateway.signatures.signing import sign
from gateway.signatures.verify import secret_problem, verify
from gateway.web import auth
from tests.support.repo import REPO

PACKAGE = REPO / "gateway"
MODULES = sorted(PACKAGE.rglob("*.py"))  # every layer package, not only the top level


def where(path: Path) -> str:
    """``gateway/signatures/verify.py``: how a finding names its file."""
    return str(path.relative_to(PACKAGE.parent))


@functools.cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


# -- constant-time comparisons ----------------------------------------------------------------------------

# An operand is a credential when the last word of its name is one of these (signature_format is a format,
# not a signature; has_keys a flag). Lengths are public: len(digest) is not a credential.
CREDENTIAL_WORDS = frozenset(
    {
        "signature",
        "signatures",
        "sig",
        "sigs",
        "digest",
        "hexdigest",
        "digests",
        "mac",
        "macs",
        "hmac",
        "token",
        "tokens",
        "secret",
        "secrets",
        "expected",
        "password",
        "passwd",
        "credential",
        "credentials",
    }
)
# Methods that hand back the same value in another form: `secret.reveal().encode() == x` is about `secret`.
SAME_VALUE = frozenset({"reveal", "encode", "decode", "strip", "lower", "upper", "hex", "casefold"})
EQUALITY = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)


def last_word(name: str) -> str:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower().split("_")
    return [w for w in words if w][-1] if name.strip("_") else ""


def credential_name(node: ast.expr) -> str | None:
    """The name that makes ``node`` a credential, or None: a name, an attribute, an item of one, or one
    of them passed through SAME_VALUE methods or a constructor like ``Secret(...)``."""
    if isinstance(node, ast.Name):
        name = node.id
    elif isinstance(node, ast.Attribute):
        name = node.attr
    elif isinstance(node, ast.Subscript):
        return credential_name(node.value)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in SAME_VALUE:
            return credential_name(node.func.value)
        name = node.func.attr  # hmac.new(...).hexdigest()
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id  # Secret(...); len(...) is not one
    else:
        return None
    return name if last_word(name) in CREDENTIAL_WORDS else None


def is_literal(node: ast.expr) -> bool:
    """A constant, or a tuple/list/set of constants: comparing a kind or a marker, not a credential."""
    if isinstance(node, ast.Constant):
        return True
    return isinstance(node, ast.Tuple | ast.List | ast.Set) and all(is_literal(e) for e in node.elts)


def credential_comparisons(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, code) of every ``==``, ``!=``, ``in``, ``not in`` with a credential on either side and no
    literal on the other."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands[:-1], operands[1:], strict=True):
            if not isinstance(op, EQUALITY) or is_literal(left) or is_literal(right):
                continue
            if credential_name(left) or credential_name(right):
                yield node.lineno, ast.unparse(node)


def test_the_scan_reads_every_layer_package() -> None:
    """The rules below read MODULES: a glob that missed a folder would pass them without reading it."""
    packages = {path.parent.relative_to(PACKAGE).as_posix() for path in MODULES if path.name != "__init__.py"}
    on_disk = {p.parent.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("__init__.py")}
    assert packages >= on_disk - {"."} and "signatures" in packages and "store/sqlite" in packages
    assert len(MODULES) == len(list(PACKAGE.rglob("*.py")))
    # The comparisons the rule must see: each known credential check is in a module the scan reads.
    read = {where(path) for path in MODULES}
    assert {f"gateway/{module}" for module, _ in CREDENTIAL_CHECKS} <= read


def test_no_credential_is_compared_with_an_equality_operator() -> None:
    found = [
        f"{where(path)}:{line}: {code}"
        for path in MODULES
        for line, code in credential_comparisons(parsed(path))
    ]
    assert found == [], "compare these with hmac.compare_digest:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        "ok = signature == expected",
        "ok = given != secret.reveal()",
        "ok = hmac.new(k, m, 'sha256').hexdigest() == header",
        "ok = token in tokens",
        "ok = Secret(value) == stored",
        "ok = request.headers['x'] == self.secret",
        "ok = sigs[0] == computed",
        "ok = expectedSig.encode() == raw",
    ],
)
def test_the_rule_catches_credentials_compared_with_equality(code: str) -> None:
    assert [line for line, _ in credential_comparisons(ast.parse(code))] == [1]


@pytest.mark.parametrize(
    "code",
    [
        "ok = hmac.compare_digest(signature, expected)",
        "ok = len(digest) != size",
        "ok = kind == 'secret'",
        "ok = '-----BEGIN' in secret.reveal()",
        "ok = scheme.signature_format == fmt",
        "ok = token_id in (None, kid)",
        "ok = has_keys == ('jwks_url' in raw)",
    ],
)
def test_the_rule_lets_lengths_formats_and_literal_kinds_pass(code: str) -> None:
    assert list(credential_comparisons(ast.parse(code))) == []


def calls_compare_digest(function: ast.AST) -> bool:
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "compare_digest"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("hmac", "secrets")
        for node in ast.walk(function)
    )


def find_function(module: str, qualified: str) -> ast.AST:
    tree: ast.AST = parsed(PACKAGE / module)
    for name in qualified.split("."):
        tree = next(
            node
            for node in ast.iter_child_nodes(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name
        )
    return tree


# Every place a presented credential meets a configured one, by hand (the rest is PyJWT's or cryptography's).
CREDENTIAL_CHECKS = [
    ("signatures/verify.py", "_mac_matches"),  # every HMAC preset, hmac/token/basic recipes, gitlab tokens
    ("signatures/jwts.py", "verify_plaid"),  # the body hash a Plaid token claims
    ("web/auth.py", "check_bearer"),  # the /metrics scrape token
    ("model.py", "Secret.__eq__"),
]


@pytest.mark.parametrize(("module", "function"), CREDENTIAL_CHECKS)
def test_each_credential_check_goes_through_compare_digest(module: str, function: str) -> None:
    assert calls_compare_digest(find_function(module, function)), f"gateway/{module}: {function}"


class CompareSpy:
    """The real compare_digest, counting its calls."""

    def __init__(self, real: Callable[[Any, Any], bool]) -> None:
        self.real, self.calls = real, 0

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls += 1
        return self.real(a, b)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> CompareSpy:
    counting = CompareSpy(hmac.compare_digest)
    monkeypatch.setattr(hmac, "compare_digest", counting)
    monkeypatch.setattr(secrets, "compare_digest", counting)
    return counting


NOW = 1_700_000_000
URL = "https://gw.example/hooks/x"
SECRET = (
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 after whsec_, so every shared-secret preset takes it
)
WRONG = "whsec_TEAK7qTEAK7qTEAK7qTEAK7qTEAK7qTE"
JSON_BODY = json.dumps({"webhookTimestamp": NOW * 1000, "type": "x"}).encode()  # linear signs its timestamp


def delivery(scheme: Scheme, secret: str, body: bytes, kind: str) -> Inbound:
    """``body`` as the provider sends it; a query token goes into the query (sign() prints headers only)."""
    if scheme.secret_query:
        query, headers = ((scheme.secret_query[0], secret),), []
    else:
        query, headers = (), sign(scheme, Secret(secret), body, now=NOW, url=URL)
    return Inbound("POST", URL, Headers([*headers, ("Content-Type", kind)]), body, query)


def shared_secret_schemes() -> list[tuple[str, Scheme, str, bytes, str]]:
    """(label, scheme, secret, body, content type) of every preset or recipe `gateway sign` can sign."""
    recipes = {
        "hmac": {"scheme": "hmac", "header": "X-Sig", "algorithm": "sha256", "encoding": "hex"},
        "token-header": {"scheme": "token", "header": "X-Api-Key"},
        "token-query": {"scheme": "token", "query": "key"},
    }
    schemes = {**PRESETS, **{k: scheme_from_spec(v, k, []) for k, v in recipes.items()}}
    found = []
    for label, scheme in schemes.items():
        assert scheme is not None
        secret = "user:" + SECRET if scheme.key_format == "basic" else SECRET
        form = scheme.signature_format == "twilio"  # twilio binds a JSON body through the URL; a form as is
        body, kind = (b"Body=hi&From=x", "application/x-www-form-urlencoded") if form else (JSON_BODY, "json")
        try:
            if secret_problem(scheme, Secret(secret)) is None and scheme.verified:
                delivery(scheme, secret, body, kind)
                found.append((label, scheme, secret, body, kind))
        except ValueError:  # public keys, remote keys, mailgun (signed inside the body)
            continue
    return found


SIGNABLE = shared_secret_schemes()


@pytest.mark.parametrize(
    ("label", "scheme", "secret", "body", "kind"), SIGNABLE, ids=[s[0] for s in SIGNABLE]
)
def test_every_shared_secret_scheme_compares_through_compare_digest(
    spy: CompareSpy, label: str, scheme: Scheme, secret: str, body: bytes, kind: str
) -> None:
    good = verify(scheme, [Secret(secret)], delivery(scheme, secret, body, kind), now=NOW, tolerance=None)
    assert good.verified and spy.calls >= 1
    spy.calls = 0
    forged = delivery(scheme, secret.replace(SECRET, WRONG), body, kind)
    with pytest.raises(SignatureError) as refused:
        verify(scheme, [Secret(secret)], forged, now=NOW, tolerance=None)
    assert refused.value.reason == "bad_signature"
    assert spy.calls >= 1


def test_the_signable_list_covers_the_shared_secret_presets() -> None:
    assert {label for label, *_ in SIGNABLE} >= {
        "github",
        "stripe",
        "standard-webhooks",
        "slack",
        "shopify",
        "gitlab",
        "basic",
        "twilio",
        "hmac",
        "token-header",
        "token-query",
    }


def test_admin_and_metrics_tokens_are_checked_through_compare_digest(spy: CompareSpy) -> None:
    admin = "Vq3wQm8nZ1xK7pL0sR4tY6uE2iO9aD5fG3hJ8kM1nB"
    token = auth.mint(admin, "HS256", subject="ops", scopes=["read"], ttl=60, now=NOW)
    auth.authenticate(f"Bearer {token}", auth.AdminKey("HS256", Secret(admin)), now=NOW)
    assert spy.calls >= 1  # PyJWT's HS256 check
    spy.calls = 0
    auth.check_bearer("Bearer scrape-me", Secret("scrape-me"))
    assert spy.calls == 1


# -- outbound HTTP ----------------------------------------------------------------------------------------

CLIENTS = ("AsyncClient", "Client")
REQUESTS = frozenset(
    {"get", "post", "put", "patch", "delete", "head", "options", "request", "stream", "send"}
)
OTHER_HTTP = ("requests", "aiohttp", "urllib.request", "http.client", "urllib3", "pycurl")


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def httpx_constructions(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLIENTS
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "httpx"
    ]


def test_no_gateway_module_uses_another_http_client() -> None:
    found = [
        f"{where(path)}: {name}"
        for path in MODULES
        for name in imported_modules(parsed(path))
        if name.startswith(OTHER_HTTP)
    ]
    assert found == []


def test_every_httpx_client_has_a_timeout_and_follows_no_redirects() -> None:
    made = 0
    for path in MODULES:
        for call in httpx_constructions(parsed(path)):
            made += 1
            given = {kw.arg: kw.value for kw in call.keywords}
            at = f"{where(path)}:{call.lineno}"
            assert "timeout" in given, f"{at}: an httpx client without timeout="
            redirects = given.get("follow_redirects")
            assert isinstance(redirects, ast.Constant) and redirects.value is False, at
    assert made >= 1  # gateway/keys/cache.py builds one


def test_only_the_key_cache_sends_requests_and_each_refuses_redirects() -> None:
    """httpx's module functions (httpx.get …) are never used; client calls are made in keys.py only, and
    each says follow_redirects=False, whatever the client passed in would do."""
    senders = []
    for path in MODULES:
        for node in ast.walk(parsed(path)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            target = node.func.value
            if isinstance(target, ast.Name) and target.id == "httpx" and node.func.attr in REQUESTS:
                senders.append(f"{where(path)}:{node.lineno}: httpx.{node.func.attr}")
            if isinstance(target, ast.Attribute) and target.attr == "_client" and node.func.attr in REQUESTS:
                given = {kw.arg: kw.value for kw in node.keywords}
                redirects = given.get("follow_redirects")
                if not (isinstance(redirects, ast.Constant) and redirects.value is False):
                    senders.append(f"{where(path)}:{node.lineno}: without follow_redirects=False")
                elif where(path) != "gateway/keys/cache.py":
                    senders.append(f"{where(path)}:{node.lineno}: a request outside gateway/keys/cache.py")
    assert senders == []

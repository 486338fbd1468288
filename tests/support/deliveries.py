"""Deliveries as their senders make them: a GitHub push body, and headers signed for a source's scheme through
gateway.signatures.signing.sign, the way `gateway sign` signs them. No I/O.

These sign with the gateway's own signer, for tests that need a delivery that verifies. A test whose point is
an independent judge (a published vector, a provider's SDK, a signature computed by hand on purpose) computes
its own signature instead.
"""

from __future__ import annotations

import json
import time

import yaml

from gateway.errors import Problem
from gateway.model import Secret
from gateway.routes.sources import Source, parse_sources
from gateway.signatures.signing import sign
from tests.support.routes import ROUTES


def push(after: str = "abc123") -> bytes:
    """A GitHub push to main of o/r, as the JSON bytes GitHub would post."""
    return json.dumps({"ref": "refs/heads/main", "after": after, "repository": {"full_name": "o/r"}}).encode()


PUSH = push()


def sources_of(routes: str) -> dict[str, Source]:
    """The sources of a routes.yaml text, as the loader builds them (no task module is imported)."""
    problems: list[Problem] = []
    sources = parse_sources(yaml.safe_load(routes)["sources"], problems)
    assert problems == [], problems
    return sources


SOURCES = sources_of(ROUTES)  # github, stripe, billing, acme and open, as tests/support/routes.py has them


def signature_headers(
    source: Source,
    body: bytes,
    *,
    secret: str | None = None,
    now: float | None = None,
    url: str | None = None,
) -> dict[str, str]:
    """The signature headers ``source``'s sender sends with ``body``, from gateway.signatures.signing.sign:
    signed with ``secret`` (else the source's signing_key, else its first secret) at ``now`` (else the time
    now), for ``url`` (else the source's public_url, else its path on the in-process client's host)."""
    key = Secret(secret) if secret is not None else source.signing_key or source.secrets[0]
    at = time.time() if now is None else now
    url = url or source.public_url or f"http://gateway.test{source.path}"
    return dict(sign(source.scheme, key, body, now=at, url=url, remote=source.remote))


def github_headers(
    body: bytes, secret: str = "gh-secret", delivery: str = "d-1", event: str = "push"
) -> dict[str, str]:
    """What GitHub sends with ``body`` to the github source of ROUTES (or, with ``secret``, another one)."""
    return {
        **signature_headers(SOURCES["github"], body, secret=secret),
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": event,
        "Content-Type": "application/json",
    }


def acme_headers(body: bytes, delivery: str, content_type: str = "application/json") -> dict[str, str]:
    """What the acme sender (a custom HMAC recipe in ROUTES) sends with ``body``."""
    return {
        **signature_headers(SOURCES["acme"], body),
        "X-Acme-Delivery": delivery,
        "Content-Type": content_type,
    }

"""Signing in to the dashboard: the session cookie, which holds the admin token itself, and the CSRF tokens
every state-changing request carries. Pure but for ``secrets`` (the login nonce).

The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Secure and
``__Host-`` prefixed when the dashboard is served over https or behind a proxy that says so, and it expires
with the token. Every request checks the token again, as the API does: a token past its ``exp`` ends the
session, whatever the cookie says. A CSRF token is an HMAC keyed by the session's token itself: only a page
that holds the session can have it (the cookie is HttpOnly; a token thief needs no CSRF), and it holds across
restarts and across several gateways behind one load balancer, with no key to share. The login form, before
any session, carries one keyed by a random nonce in its own cookie (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.errors import AccessDenied
from gateway.web import auth
from gateway.web.auth import AdminKey, Principal

COOKIE = "gateway_session"
SECURE_COOKIE = "__Host-gateway_session"  # the browser keeps it only if Secure, Path=/ and no Domain
LOGIN_COOKIE = "gateway_login"
LOGIN_TTL = 3600  # seconds a login form stays usable


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at a page: their token's principal and the CSRF token their forms carry."""

    principal: Principal
    csrf: str = field(repr=False)

    @property
    def can_replay(self) -> bool:
        """Whether to show replay, rerun, cancel and bulk controls (the server checks again on POST)."""
        return "replay" in self.principal.scopes


def secure(scheme: str, headers: Mapping[str, str]) -> bool:
    """Whether the browser reached us over https: directly, or through a proxy that says so. Trusting the
    proxy's header here can only make the cookie stricter (a Secure cookie over plain http is dropped)."""
    if scheme == "https" or headers.get("x-forwarded-proto", "").strip().lower() == "https":
        return True
    forwarded = headers.get("forwarded", "").lower().replace(" ", "")
    return "proto=https" in forwarded


class Sessions:
    """Checks the session cookie's token with the admin key, and makes and checks CSRF tokens."""

    def __init__(self, key: AdminKey) -> None:
        self.key = key

    def cookie_name(self, is_secure: bool) -> str:
        return SECURE_COOKIE if is_secure else COOKIE

    def token_of(self, cookies: Mapping[str, str], is_secure: bool) -> str | None:
        return cookies.get(self.cookie_name(is_secure)) or None

    def viewer(self, token: str, *, now: float) -> Viewer:
        """The viewer a session token speaks for; AccessDenied (401) when it is not valid (any more)."""
        principal = auth.authenticate(f"Bearer {token}", self.key, now=now)
        return Viewer(principal, self._mac(b"session", token))

    def sign_in(self, token: str, *, now: float) -> Viewer:
        """A token pasted into the login form: checked like any other; it needs at least one scope."""
        viewer = self.viewer(token.strip(), now=now)
        if not viewer.principal.scopes:
            raise AccessDenied(403, "missing_scope", "this token has no scopes; the dashboard needs read")
        auth.require(viewer.principal, "read")
        return viewer

    def check(self, viewer: Viewer, given: str | None) -> bool:
        """Whether a form's CSRF token is the session's, compared in constant time."""
        return given is not None and hmac.compare_digest(viewer.csrf.encode(), given.encode())

    def login_nonce(self) -> tuple[str, str]:
        """A fresh (nonce, csrf) pair for a login form: the nonce for LOGIN_COOKIE, the csrf for the form."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._mac(b"login", nonce)

    def check_login(self, nonce: str | None, given: str | None) -> bool:
        if not nonce or given is None:
            return False
        return hmac.compare_digest(self._mac(b"login", nonce).encode(), given.encode())

    def _mac(self, purpose: bytes, value: str) -> str:
        return hmac.new(value.encode(), b"gateway-dashboard-csrf\0" + purpose, hashlib.sha256).hexdigest()

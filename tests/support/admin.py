"""Credentials for the admin API: the HS256 secret its tests configure, and tokens minted with it as
`gateway token create` mints them. No I/O."""

from __future__ import annotations

from gateway.web.auth import mint
from tests.support.clock import NOW

SECRET = "Vq3wQm8nZ1xK7pL0sR4tY6uE2iO9aD5fG3hJ8kM1nB"  # 42 bytes, as secrets.token_urlsafe(32) makes
SCOPES = ("read", "replay", "trigger")


def token(
    scopes: tuple[str, ...] = SCOPES, *, secret: str = SECRET, now: float = NOW, ttl: float = 3600
) -> str:
    return mint(secret, "HS256", subject="ops-bot", scopes=scopes, ttl=ttl, now=now)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}

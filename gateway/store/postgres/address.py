"""A PostgreSQL address as it may be shown: without its password. Pure."""

from __future__ import annotations

import urllib.parse


def without_password(address: str) -> str:
    """``postgresql://user@host:port/name``: no password, and no query parameters (which may hold one)."""
    try:
        parts = urllib.parse.urlsplit(address)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "postgresql://(an address that cannot be read)"
    user = f"{urllib.parse.unquote(parts.username)}@" if parts.username else ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"

"""The ``gateway`` command called as ``main(argv)``, and what its sign command prints delivered to the app in
process from sync code. I/O: the database files and streams it is given."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx

from gateway.cli.main import main
from gateway.routes import load as config_mod
from gateway.store.open import open_store
from gateway.web.app import create_app


def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``gateway ARGV...`` in process with ``env`` as its whole environment: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), env=env or {}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def deliver(
    config: config_mod.Config, db: Path | str, requests: list[tuple[str, bytes, dict[str, str]]]
) -> list[Any]:
    """POST each (path, body, headers) to the app of ``config`` on the database ``db`` (a SQLite file, or a
    PostgreSQL address); the responses."""

    async def go() -> list[Any]:
        store = await open_store(db)
        try:
            transport = httpx.ASGITransport(app=create_app(config, store))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                return [
                    await client.post(path, content=body, headers=headers) for path, body, headers in requests
                ]
        finally:
            await store.close()

    return asyncio.run(go())

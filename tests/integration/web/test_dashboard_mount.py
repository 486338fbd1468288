"""Where the dashboard is served: /ui beside /api on the hooks' app, GET / sent there unless a source is
served at /, a source under /ui refused, and the admin listener's own app (--admin-port)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.errors import Invalid
from gateway.model import Secret
from gateway.records.service import Service
from gateway.web.api import create_api
from gateway.web.app import create_admin_app, create_app
from gateway.web.auth import AdminKey
from gateway.web.dashboard import create_dashboard
from tests.support.admin import SECRET
from tests.support.routes import ROUTES

KEY = AdminKey("HS256", Secret(SECRET))


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")


async def test_the_hooks_app_serves_ui_beside_api_and_sends_root_there(
    load_config: Callable[..., Any], open_store: Callable[..., Any]
) -> None:
    config = load_config()
    store = await open_store()
    service = Service(store, config)
    app = create_app(config, store, api=create_api(service, KEY), dashboard=create_dashboard(service, KEY))
    async with _client(app) as client:
        root = await client.get("/")
        assert root.status_code == 303 and root.headers["location"] == "/ui/"
        login = await client.get("/ui/login")
        assert login.status_code == 200 and "Admin token" in login.text
        assert (await client.get("/api/events")).status_code == 401  # the API is still there
        hook = await client.post("/hooks/open", json={"a": 1})
        assert hook.status_code == 202  # and so are the hooks


async def test_a_source_served_at_root_keeps_it_and_one_under_ui_is_refused(
    load_config: Callable[..., Any], open_store: Callable[..., Any]
) -> None:
    store = await open_store()
    at_root = load_config(
        ROUTES.replace("  open:\n    verify: none", "  open:\n    verify: none\n    path: /")
    )
    service = Service(store, at_root)
    app = create_app(at_root, store, api=create_api(service, KEY), dashboard=create_dashboard(service, KEY))
    async with _client(app) as client:
        assert (await client.post("/", json={"a": 1})).status_code == 202
        assert (await client.get("/ui/login")).status_code == 200

    under = load_config(
        ROUTES.replace("  open:\n    verify: none", "  open:\n    verify: none\n    path: /ui/open")
    )
    with pytest.raises(Invalid, match=r"source open is served at /ui/open, under the gateway's /ui"):
        create_app(under, store, api=create_api(service, KEY), dashboard=create_dashboard(service, KEY))


async def test_the_admin_listener_serves_the_dashboard_too(
    load_config: Callable[..., Any], open_store: Callable[..., Any]
) -> None:
    service = Service(await open_store(), load_config())
    app = create_admin_app(create_api(service, KEY), create_dashboard(service, KEY))
    async with _client(app) as client:
        assert (await client.get("/")).headers["location"] == "/ui/"
        assert (await client.get("/ui/events")).status_code == 303  # to sign in
        assert (await client.get("/hooks/open")).status_code == 404


async def test_without_the_admin_api_a_browser_at_root_or_ui_is_told_how_to_turn_the_dashboard_on(
    load_config: Callable[..., Any], open_store: Callable[..., Any]
) -> None:
    config = load_config()
    store = await open_store()
    async with _client(create_app(config, store)) as client:
        for path in ("/", "/ui", "/ui/", "/ui/events?source=github"):
            told = await client.get(path)
            assert told.status_code == 404, path
            assert told.json()["error"] == "not_found"
            assert "set GATEWAY_ADMIN_SECRET" in told.json()["detail"], path
        assert (await client.post("/ui/anything", json={})).json()["error"] == "unknown_source"
        assert (await client.post("/hooks/open", json={"a": 1})).status_code == 202

    under = load_config(
        ROUTES.replace("  open:\n    verify: none", "  open:\n    verify: none\n    path: /ui/open")
    )
    async with _client(create_app(under, store)) as client:  # no dashboard: /ui/open is the source's
        assert (await client.post("/ui/open", json={"a": 1})).status_code == 202
        assert (await client.get("/ui/")).json()["error"] == "unknown_source"

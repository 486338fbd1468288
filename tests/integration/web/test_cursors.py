"""Cursors are input: a crafted one is a 400 naming the parameter on every paged listing, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway.errors import Invalid
from gateway.model import Secret
from gateway.records.page import decode_cursor, decode_rejection_cursor, encode_cursor
from gateway.records.service import Service
from gateway.web.api import create_api
from gateway.web.auth import AdminKey
from tests.support.admin import SECRET, bearer, token
from tests.support.clock import Clock

pytestmark = pytest.mark.both_stores


def crafted(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


CURSORS = [
    crafted([10**400, "x"]),  # an integer past a float's range
    crafted([-(10**400), "x"]),
    crafted([1.0, "x" * 10_000]),
    crafted([True, "x"]),
    crafted({"at": 1}),
    "x" * 5000,
    "%%%",
]


# Well-formed (time, id) pairs whose id no rejections page can continue from: rejection ids are numbers.
REJECTION_CURSORS = [
    crafted([1.0, "²"]),  # a digit to str.isdigit() that int() refuses
    crafted([1.0, "9" * 4301]),  # past int()'s digit limit
    crafted([1.0, "9" * 30]),  # past a database integer
    crafted([1.0, "-1"]),
]


@pytest.fixture
async def api(
    load_config: Callable[..., Any], open_store: Callable[..., Any]
) -> AsyncIterator[httpx.AsyncClient]:
    service = Service(await open_store(), load_config(), clock=Clock())
    app = create_api(service, AdminKey("HS256", Secret(SECRET)), clock=Clock())
    transport = httpx.ASGITransport(app=Starlette(routes=[Mount("/api", app=app)]))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gw", headers=bearer(token())
    ) as client:
        yield client


@pytest.mark.parametrize("cursor", CURSORS)
async def test_a_crafted_cursor_is_a_400_on_every_listing(api: httpx.AsyncClient, cursor: str) -> None:
    for path in ("/api/events", "/api/runs", "/api/jobs", "/api/rejections"):
        answer = await api.get(path, params={"cursor": cursor})
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"] == "invalid" and answer.json()["detail"].startswith("cursor: ")


@pytest.mark.parametrize("cursor", REJECTION_CURSORS)
async def test_a_rejections_cursor_whose_id_is_no_rejection_id_is_a_400(
    api: httpx.AsyncClient, cursor: str
) -> None:
    answer = await api.get("/api/rejections", params={"cursor": cursor})
    assert answer.status_code == 400 and answer.json()["detail"].startswith("cursor: not a cursor")


@given(
    st.text(max_size=300)
    | st.builds(
        crafted,
        st.lists(st.from_type(type(None)) | st.integers() | st.floats() | st.text(max_size=30), max_size=3),
    )
)
def test_decoding_any_string_gives_a_cursor_or_invalid(cursor: str) -> None:
    for decode in (decode_cursor, decode_rejection_cursor):
        try:
            decode(cursor)
        except Invalid as exc:
            assert str(exc).startswith("cursor: ")


def test_a_cursor_handed_out_decodes_to_what_was_encoded() -> None:
    assert decode_cursor(encode_cursor(1_800_000_000.25, "evt_01J")) == (1_800_000_000.25, "evt_01J")
    assert decode_rejection_cursor(encode_cursor(1.0, "123")) == 123

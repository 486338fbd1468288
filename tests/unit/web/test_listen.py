"""The server choice: the loop each server runs on, uvicorn's settings beside Hypercorn's, --server."""

from __future__ import annotations

import sys

import pytest
import uvicorn
import uvloop

from gateway.cli.main import build_parser, main
from gateway.errors import GatewayError
from gateway.web.listen import (
    HEAD_LIMIT,
    UVICORN_MISSING,
    Listener,
    hypercorn_config,
    loop_factory,
    uvicorn_config,
)


async def app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("never called: only the settings are read")


def test_hypercorn_runs_on_the_default_loop_and_uvicorn_on_uvloop() -> None:
    assert loop_factory("hypercorn") is None
    assert loop_factory("uvicorn") is uvloop.new_event_loop


def test_an_unknown_server_is_named_with_the_choices() -> None:
    with pytest.raises(GatewayError) as caught:
        loop_factory("gunicorn")
    assert str(caught.value) == (
        "unknown server 'gunicorn' (--server, GATEWAY_SERVER): choose one of ('hypercorn', 'uvicorn')"
    )


@pytest.mark.parametrize("missing", ["uvicorn", "uvloop", "httptools"])
def test_a_missing_uvicorn_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # `import <missing>` now raises ImportError
    with pytest.raises(GatewayError) as caught:
        loop_factory("uvicorn")
    assert str(caught.value) == UVICORN_MISSING
    assert "pip install 'hookgate[uvicorn]'" in UVICORN_MISSING
    assert loop_factory("hypercorn") is None  # the default server does not need the extra


def test_uvicorn_gets_hypercorns_limits_and_leaves_logging_and_lifespan_to_the_gateway() -> None:
    listener = Listener(host="127.0.0.1", port=8123, shutdown_grace=7.5)
    hc = hypercorn_config(listener)
    uv = uvicorn_config(app, listener)
    assert (uv.host, uv.port) == ("127.0.0.1", 8123)
    assert uv.timeout_keep_alive == hc.keep_alive_timeout == 75
    assert uv.timeout_graceful_shutdown == 8  # 7.5 s rounded up: uvicorn takes whole seconds
    assert uv.h11_max_incomplete_event_size == hc.h11_max_incomplete_size == HEAD_LIMIT - 1
    assert (uv.lifespan, uv.access_log, uv.log_config, uv.proxy_headers) == ("off", False, None, False)
    assert uv.loop == "uvloop"
    assert isinstance(uv.http, type) and uv.http.__mro__[1].__name__ == "HttpToolsProtocol"


def test_uvicorn_listens_where_it_is_told_for_an_extra_listener() -> None:
    uv = uvicorn_config(app, Listener("::1", 9100, server="uvicorn"))
    assert (uv.host, uv.port) == ("::1", 9100)
    assert isinstance(uv, uvicorn.Config)


def test_server_flag_defaults_to_hypercorn_and_falls_back_to_the_environment() -> None:
    assert build_parser({}).parse_args(["serve"]).server == "hypercorn"
    assert build_parser({"GATEWAY_SERVER": "uvicorn"}).parse_args(["serve"]).server == "uvicorn"
    chosen = build_parser({"GATEWAY_SERVER": "uvicorn"}).parse_args(["serve", "--server", "hypercorn"])
    assert chosen.server == "hypercorn"


def test_server_help_says_when_to_choose_uvicorn(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"], env={}) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "{hypercorn,uvicorn}" in text
    assert "faster HTTP stack" in text
    assert "pip install 'hookgate[uvicorn]'" in text
    assert "docs/benchmarks.md) (env GATEWAY_SERVER; now: hypercorn)" in text

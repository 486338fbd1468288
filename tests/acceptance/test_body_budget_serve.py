"""`gateway serve --body-budget`, as a process: a body that would pass the budget while another holds it is
refused 503 overloaded with Retry-After, a typical delivery is still stored, and a budget no source's
max_body fits in, or one that is not a size, is refused before anything listens (issue 17, defect 3)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bench.load import Server, clean_env, free_port, gateway_argv
from tests.support.deliveries import github_headers

pytestmark = pytest.mark.acceptance

KIB = 1024
ROUTES = """
sources:
  github: {verify: github, secret: gh-secret, max_body: 1MiB}
  open: {verify: none, max_body: 1MiB}
routes: []
"""


def _serve(tmp_path: Path, *flags: str) -> list[str]:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    return [*gateway_argv(routes, tmp_path / "gateway.db", free_port(), log_level="warning"), *flags]


def test_past_the_budget_a_body_is_refused_503_while_a_typical_delivery_is_stored(tmp_path: Path) -> None:
    argv = _serve(tmp_path, "--body-budget", "1MiB")
    port = int(argv[argv.index("--port") + 1])
    with Server(argv, port=port, log=tmp_path / "serve.log", env=clean_env(), cpu=None) as server:
        holder = socket.create_connection(("127.0.0.1", port), timeout=10)
        head = f"POST /hooks/open HTTP/1.1\r\nHost: x\r\nContent-Length: {1000 * KIB}\r\n\r\n".encode()
        holder.sendall(head + b"a" * (900 * KIB))  # held: the rest comes later
        with httpx.Client(base_url=server.url, timeout=10) as client:
            deadline, refused = time.monotonic() + 20, None
            while refused is None and time.monotonic() < deadline:  # until the server has read the 900 KiB
                probe = client.post("/hooks/open", content=b"b" * (200 * KIB))
                if probe.status_code == 503:
                    refused = probe
                else:
                    assert probe.status_code == 202, probe.text
                    time.sleep(0.05)
            assert refused is not None, "no body was refused while 900 KiB of a 1 MiB budget were held"
            assert refused.headers["Retry-After"] == "5"
            assert refused.json()["error"] == "overloaded"

            body = b'{"ref": "refs/heads/main"}'
            typical = client.post("/hooks/github", content=body, headers=github_headers(body))
            assert typical.status_code == 202, typical.text

            holder.sendall(b"a" * (100 * KIB))
            assert holder.recv(64).startswith(b"HTTP/1.1 202"), server.tail()
            holder.close()
            again = client.post("/hooks/open", content=b"c" * (200 * KIB))
            assert again.status_code == 202, "the held bytes were not given back"


@pytest.mark.parametrize(
    ("budget", "said"),
    [
        (
            "512KiB",
            "--body-budget 524288 is below the max_body of source(s) github (1048576), open (1048576)",
        ),
        ("lots", "argument --body-budget: expected a size such as 64MiB or 1048576, got 'lots'"),
        ("0", "argument --body-budget: expected a size such as 64MiB or 1048576, got '0'"),
    ],
)
def test_a_budget_that_is_not_a_size_or_below_a_max_body_exits_2_before_listening(
    tmp_path: Path, budget: str, said: str
) -> None:
    argv = _serve(tmp_path, "--body-budget", budget)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=clean_env(), check=False)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr

"""The acceptance fixtures: `gateway serve` as a real subprocess on a free 127.0.0.1 port, killed at the end
(the process itself is tests/support/process.py's Gateway)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.support.process import Gateway
from tests.support.routes import ROUTES, TASKS_CODE

pytestmark = pytest.mark.acceptance


@pytest.fixture
def gateway(write_routes: Callable[..., Path], tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def make(
        routes: str | None = None,
        tasks_code: str | None = None,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Gateway:
        path = write_routes(routes or ROUTES, tasks_code or TASKS_CODE)
        gw = Gateway(path, tmp_path / "gateway.db", tmp_path / "gateway.log", args=args, env=env)
        gw.start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()

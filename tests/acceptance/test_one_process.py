"""One `gateway serve` per database file, however the file is named: a second one started through a symlink
is refused before it opens anything, so it cannot mark the first one's running runs crashed and run them
again."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.process import Gateway, free_port

pytestmark = pytest.mark.acceptance


def test_a_second_gateway_on_the_same_file_through_a_symlink_is_refused(
    gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    first = gateway()
    link = tmp_path / "elsewhere" / "alias.db"
    link.parent.mkdir()
    link.symlink_to(first.db)
    argv = ["serve", "--routes", str(first.routes), "--db", str(link), "--port", str(free_port())]
    second = subprocess.run(
        [sys.executable, "-m", "gateway", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=first.routes.parent,
    )
    assert second.returncode == 1
    assert "another gateway process is already serving" in second.stderr
    assert first.proc is not None and first.proc.poll() is None  # the first one serves on

"""The distribution as pip builds it (what `pip install hookgate` and the Docker image get, not the editable
install the tests run on): it builds, it is named hookgate, and it carries every SQL file the store reads."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import gateway

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_builds_and_holds_the_package_with_its_sql(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("*.whl")
    assert wheel.name == f"hookgate-{gateway.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    sql = {str(p.relative_to(ROOT)) for p in (ROOT / "gateway" / "store" / "sqlite" / "sql").rglob("*.sql")}
    assert len(sql) >= 6 and sql <= names  # queries.sql and every migration
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "gateway").rglob("*.py")}
    assert modules <= names

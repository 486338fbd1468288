"""bench/flame.py: the py-spy command it runs against the server (the recording itself needs py-spy and
ptrace rights: `python -m bench.flame`, not the suite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import flame


def test_py_spy_records_the_server_without_pausing_it_for_the_whole_load(tmp_path: Path) -> None:
    argv = flame.py_spy_argv(4242, tmp_path / "f.svg", 11)
    assert argv[0].endswith("py-spy") and argv[1] == "record"
    pairs = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert pairs["--pid"] == "4242" and pairs["--output"] == str(tmp_path / "f.svg")
    assert (pairs["--duration"], pairs["--rate"], pairs["--format"]) == ("11", "200", "flamegraph")
    assert "--nonblocking" in argv and "--threads" in argv


def test_an_output_path_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        flame.main([])
    assert info.value.code == 2 and "--out" in capsys.readouterr().err

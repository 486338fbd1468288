"""The one documented benchmark command: ingest (bench/ingest.py), then the executor (bench/executor.py) and
growth (bench/growth.py), on this machine, with its description. I/O: processes, sockets, temp files; writes
bench/results/bench-<date>[-quick].md and .json (and each section's own files).

Run from the repository: ``python -m bench [--quick] [--only ingest,executor,growth]``. Quick mode takes
under two minutes; full mode (3 rounds of 10 s per ingest cell) about half an hour.

Benchmarks that run only alone are commands: ``python -m bench dashboard [--quick]`` (bench/dashboard.py,
the same as ``python -m bench.dashboard``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import ingest, load, plot

SECTIONS = ("ingest", "executor", "growth")
TITLES = {"ingest": "Ingest", "executor": "Executor", "growth": "Growth"}
COMMANDS = {"dashboard": "bench.dashboard"}  # `python -m bench <name> [its flags]`: that module's main()


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, RAM, Python, SQLite, kernel, pinning, wrk."""
    cpuinfo = _read("/proc/cpuinfo")
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), ""
    )
    mem_kb = next(
        (int(ln.split()[1]) for ln in _read("/proc/meminfo").splitlines() if ln.startswith("MemTotal")), 0
    )
    try:
        wrk = subprocess.run([load.wrk_path(), "-v"], capture_output=True, text=True, timeout=10, check=False)
        wrk_version = (wrk.stdout or wrk.stderr).splitlines()[0].strip()
    except (load.BenchError, OSError, IndexError, subprocess.SubprocessError):
        wrk_version = "missing"
    return {
        "cpu": model or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": f"{platform.system()} {platform.release()}",
        "pinning": load.pinning(),
        "wrk": wrk_version,
    }


def describe(m: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"- CPU: {m['cpu']}, {m['cores']} cores visible; RAM {m['ram_gib']} GiB",
            f"- Python {m['python']}, SQLite {m['sqlite']}, {m['kernel']}",
            f"- load generator: {m['wrk']}; {m['pinning']}",
        ]
    )


def sections(only: str | None) -> list[str]:
    if not only:
        return list(SECTIONS)
    chosen = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        raise SystemExit(
            f"--only: unknown section(s) {', '.join(unknown)} (choose from {', '.join(SECTIONS)})"
        )
    return chosen


def run_section(name: str, quick: bool, out: Path) -> tuple[dict[str, Any] | None, str]:
    """(result, markdown) of one section; (None, why) when its module is not there or it failed."""
    if name == "ingest":
        result = ingest.run(ingest.Plan.of(quick))
        ingest.save(result, out)
        png = plot.draw(result, plot.default_path(result, out))
        shown = png.relative_to(plot.ROOT) if png.is_relative_to(plot.ROOT) else png
        return result, ingest.markdown(result) + f"\nPlot: `{shown}`\n"
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bench.{name}":
            raise
        return None, f"_Skipped: bench/{name}.py is not there yet._\n"
    result = module.run(quick)
    return result, module.markdown(result)


def main(argv: Sequence[str] | None = None) -> int:
    args_given = list(sys.argv[1:] if argv is None else argv)
    if args_given and args_given[0] in COMMANDS:
        command: int = importlib.import_module(COMMANDS[args_given[0]]).main(args_given[1:])
        return command
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="under two minutes (default: the full run)")
    parser.add_argument(
        "--only", metavar="LIST", help=f"comma-separated sections (default: {','.join(SECTIONS)})"
    )
    parser.add_argument("--out", type=Path, default=ingest.RESULTS, help="results directory (bench/results)")
    args = parser.parse_args(args_given)
    chosen = sections(args.only)
    started = datetime.datetime.now()
    t0 = time.monotonic()
    described = machine()
    report: dict[str, Any] = {"started": started.isoformat(timespec="seconds"), "machine": described}
    report |= {"mode": "quick" if args.quick else "full", "sections": {}, "skipped": {}}
    parts = [
        f"# Benchmarks ({report['mode']}), {started:%Y-%m-%d %H:%M}",
        "",
        "## Machine",
        "",
        describe(described),
    ]
    failed = False
    for name in chosen:
        print(f"== {name}", file=sys.stderr, flush=True)
        section_t0 = time.monotonic()
        try:
            result, text = run_section(name, args.quick, args.out)
        except (load.BenchError, subprocess.SubprocessError, OSError) as exc:
            result, text, failed = None, f"_Failed: {exc}_\n", True
        seconds = time.monotonic() - section_t0
        if result is None:
            report["skipped"][name] = text.strip("_\n")
        else:
            report["sections"][name] = result
        parts += ["", f"## {TITLES[name]}", "", f"_{seconds:.0f} s_", "", text.rstrip()]
        print(f"== {name}: {seconds:.0f} s", file=sys.stderr, flush=True)
    report["seconds"] = round(time.monotonic() - t0, 1)
    parts += ["", f"Wall time: {report['seconds']:.0f} s.", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"bench-{started:%Y-%m-%d}{'-quick' if args.quick else ''}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text("\n".join(parts))
    print("\n".join(parts))
    print(f"written to {stem}.md and {stem}.json", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

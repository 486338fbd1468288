"""The ingest benchmark's picture: throughput and p99 latency against concurrency, one line per configuration,
two panels, as a PNG (matplotlib, Agg: no display needed). I/O: reads a result, writes the PNG.

Run: ``python -m bench.plot bench/results/ingest-<date>.json [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS_PNG = ROOT / "docs" / "img" / "bench-ingest.png"
STYLE = {  # one colour per kind, a dashed line for uvicorn
    "floor": "#7f7f7f",
    "gateway": "#1f77b4",
    "locked": "#d62728",
    "shared": "#ff7f0e",
    "intake": "#2ca02c",  # by name: the gateway with --executor off
}


def default_path(result: dict[str, Any], results_dir: Path) -> Path:
    """docs/img/bench-ingest.png for a full run (the one the docs show), else beside the results."""
    if result["mode"] != "quick":
        return DOCS_PNG
    return results_dir / f"ingest-{result['started'][:10]}-quick.png"


def series(result: dict[str, Any]) -> dict[str, list[tuple[int, float, float]]]:
    """(concurrency, req/s, p99 ms) per setup, ordered by concurrency: the points the plot draws."""
    points: dict[str, list[tuple[int, float, float]]] = {s["name"]: [] for s in result["setups"]}
    for c, rows in result["summary"].items():
        for row in rows:
            points[row["setup"]].append((int(c), float(row["rps"]), float(row["p99"])))
    return {name: sorted(p) for name, p in points.items() if p}


def draw(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setups = {s["name"]: s for s in result["setups"]}
    fig, (rps_ax, p99_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, points in series(result).items():
        setup = setups[name]
        cs, rps, p99 = zip(*points, strict=True)
        style = {
            "color": STYLE.get(setup["name"].removesuffix("-uvicorn"), STYLE.get(setup["kind"], "black")),
            "linestyle": "--" if setup["server"] == "uvicorn" else "-",
            "marker": "o",
            "label": f"{name} ({setup['server']})",
        }
        rps_ax.plot(cs, rps, **style)
        p99_ax.plot(cs, p99, **style)
    concurrencies = sorted({int(c) for c in result["summary"]})
    for ax, title, unit in ((rps_ax, "Throughput", "requests/s"), (p99_ax, "p99 latency", "ms")):
        ax.set_xscale("log")
        ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
        ax.minorticks_off()
        ax.set_xlabel("concurrent connections (wrk -c)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    p99_ax.set_yscale("log")
    rps_ax.set_ylim(bottom=0)
    rps_ax.legend(fontsize="small")
    plan = result["plan"]
    fig.suptitle(
        f"Ingest of signed 1 KiB GitHub pushes, {result['started'][:10]} ({result['mode']}: "
        f"{plan['rounds']} round(s) of {plan['duration']} s, medians)",
        fontsize="medium",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__)
    parser.add_argument("result", type=Path, help="an ingest-<date>.json written by bench.ingest")
    parser.add_argument("--out", type=Path, help="PNG to write (default: by mode, see default_path)")
    args = parser.parse_args(argv)
    result = json.loads(args.result.read_text())
    print(draw(result, args.out or default_path(result, args.result.parent)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

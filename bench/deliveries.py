"""Benchmark inputs: a file of uniquely signed GitHub push deliveries for wrk to walk, and the routes.yaml
(plus a no-op tasks module) the gateway under test serves. I/O: writes files.

The deliveries file holds one request per line, fields separated by a tab (no field contains one):

    METHOD <TAB> PATH <TAB> Name: value <TAB> ... <TAB> BODY

Every body is compact JSON (no raw tab or newline) of exactly ``size`` bytes; every delivery has its own
``X-GitHub-Delivery`` (a UUID derived from ``label`` and the line number, so files are reproducible and two
labels never collide) and a valid ``X-Hub-Signature-256`` for ``secret``. bench/load.py's Lua script reads it.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

SECRET = "bench-github-secret"  # a benchmark-only secret; it guards nothing
SOURCE_PATH = "/hooks/github"
BODY_SIZE = 1024
_NAMESPACE = uuid.UUID("5b0d6f4e-8a53-4c39-9a4e-2f0b1d7c9e21")

TASKS_MODULE = "bench_noop"  # written beside routes.yaml; the gateway imports it from there
_TASKS_SOURCE = '''"""The benchmark's task: it does nothing, so a run costs only the gateway's own work."""

from typing import Any

from gateway import Context, task


@task(id="noop")
async def noop(payload: Any, ctx: Context) -> None:
    return None
'''


def push_body(n: int, size: int = BODY_SIZE) -> bytes:
    """A GitHub ``push`` payload, compact JSON of exactly ``size`` bytes (the commit message pads it)."""
    sha = hashlib.sha1(f"commit-{n}".encode()).hexdigest()
    commit: dict[str, object] = {
        "id": sha,
        "timestamp": "2024-05-01T12:00:00Z",
        "author": {"name": "Mona Octocat", "email": "octocat@example.com"},
        "message": "",
    }
    doc = {
        "ref": "refs/heads/main",
        "before": hashlib.sha1(f"commit-{n - 1}".encode()).hexdigest(),
        "after": sha,
        "repository": {
            "id": 1296269,
            "name": "hello-world",
            "full_name": "octo-org/hello-world",
            "private": False,
            "default_branch": "main",
        },
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat", "id": 1, "type": "User"},
        "head_commit": commit,
    }
    bare = len(json.dumps(doc, separators=(",", ":")).encode())
    if bare > size:
        raise ValueError(f"size={size} is too small: a push body needs at least {bare} bytes")
    commit["message"] = f"bench commit {n} ".ljust(size - bare, "x")[: size - bare]
    body = json.dumps(doc, separators=(",", ":")).encode()
    if len(body) != size:  # cannot happen with ASCII-only fields: one character is one byte
        raise ValueError(f"push body is {len(body)} bytes, not {size}")
    return body


def github_headers(body: bytes, secret: str, delivery: str) -> list[tuple[str, str]]:
    """The headers GitHub sends with a push (docs.github.com/en/webhooks/webhook-events-and-payloads)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return [
        ("Content-Type", "application/json"),
        ("User-Agent", "GitHub-Hookshot/bench"),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", delivery),
        ("X-GitHub-Hook-ID", "424242"),
        ("X-Hub-Signature-256", f"sha256={digest}"),
    ]


def line(method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes) -> str:
    """One request in the deliveries file format (without the newline)."""
    text = body.decode()
    fields = [method, path, *(f"{k}: {v}" for k, v in headers), text]
    if any("\t" in f or "\n" in f for f in fields):
        raise ValueError("a field of the request contains a tab or a newline")
    return "\t".join(fields)


def write_deliveries(
    path: Path,
    count: int,
    *,
    secret: str = SECRET,
    label: str = "main",
    source_path: str = SOURCE_PATH,
    size: int = BODY_SIZE,
) -> Path:
    """Write ``count`` unique signed push deliveries to ``path``; returns ``path``."""
    with path.open("w", encoding="ascii", newline="\n") as out:
        for n in range(count):
            body = push_body(n, size)
            delivery = str(uuid.uuid5(_NAMESPACE, f"{label}-{n}"))
            out.write(line("POST", source_path, github_headers(body, secret, delivery), body))
            out.write("\n")
    return path


def routes_yaml(secret: str = SECRET, *, routed: bool) -> str:
    """routes.yaml with a ``github`` source; ``routed`` adds a route from every push to the no-op task,
    else deliveries are only stored (ingest only, no runs)."""
    head = f"tasks: [{TASKS_MODULE}]\n" if routed else "tasks: []\n"
    sources = f"sources:\n  github:\n    verify: github\n    secret: {json.dumps(secret)}\n"
    if not routed:
        return head + sources + "routes: []\n"
    route = "  - id: noop-on-push\n    source: github\n    event: push\n    task: noop\n"
    return head + sources + "routes:\n" + route


def write_config(directory: Path, *, routed: bool, secret: str = SECRET) -> Path:
    """Write routes.yaml (and, when ``routed``, the tasks module it names) into ``directory``; returns the
    routes.yaml path."""
    directory.mkdir(parents=True, exist_ok=True)
    if routed:
        (directory / f"{TASKS_MODULE}.py").write_text(_TASKS_SOURCE)
    routes = directory / "routes.yaml"
    routes.write_text(routes_yaml(secret, routed=routed))
    return routes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.deliveries",
        description="Write N signed GitHub push deliveries (and a routes.yaml for them) for bench/load.py.",
    )
    parser.add_argument("out", type=Path, help="directory to write deliveries.txt and routes.yaml into")
    parser.add_argument("-n", "--count", type=int, default=50_000, help="deliveries (default 50000)")
    parser.add_argument("--secret", default=SECRET, help="the github source's secret")
    parser.add_argument("--routed", action="store_true", help="route pushes to a no-op task (default: none)")
    parser.add_argument("--label", default="main", help="seed of the delivery ids (files differ by label)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = write_deliveries(args.out / "deliveries.txt", args.count, secret=args.secret, label=args.label)
    routes = write_config(args.out, routed=args.routed, secret=args.secret)
    print(f"{path}: {args.count} deliveries; {routes}: {'routed' if args.routed else 'ingest only'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the repository is: for tests that read its sample routes.yaml, docs/samples or gateway/."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

"""What a source keeps beyond its events: ``rejections:`` (how many bytes of refused requests are kept
whole, to verify again once a secret is fixed) in routes.yaml, read into frozen values.

Pure: no I/O, no clock. The store enforces the cap (gateway/store/sqlite/rejections.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.errors import Problem, unknown_key
from gateway.model import RejectionKeep
from gateway.routes.sizes import parse_size

# 32 MiB a source: thousands of typical deliveries (1-50 KiB), or three of the largest a default max_body
# takes; a few sources can never fill a disk with it.
DEFAULT_REJECTIONS = RejectionKeep(32 * 1024 * 1024)
REJECTION_KEYS = ("keep",)


def parse_rejections(raw: Mapping[str, Any], where: str, problems: list[Problem]) -> RejectionKeep:
    """A source's ``rejections: {keep: 64MiB}`` (``keep: 0`` keeps no request), else the default; a bad
    value appends a Problem under ``where`` (the source's path) and gives the default."""
    if "rejections" not in raw:
        return DEFAULT_REJECTIONS
    value, where = raw["rejections"], f"{where}.rejections"
    if not isinstance(value, dict):
        problems.append(Problem(where, f"expected a mapping like {{keep: 32MiB}}, got {value!r}"))
        return DEFAULT_REJECTIONS
    problems += [
        unknown_key(key, REJECTION_KEYS, f"{where}.{key}") for key in value if key not in REJECTION_KEYS
    ]
    if "keep" not in value:
        problems.append(
            Problem(f"{where}.keep", "missing: how many bytes of rejected requests to keep (32MiB)")
        )
        return DEFAULT_REJECTIONS
    keep = value["keep"]
    if keep in (0, "0") and not isinstance(keep, bool):
        return RejectionKeep(0)
    return RejectionKeep(parse_size(keep, f"{where}.keep", problems, DEFAULT_REJECTIONS.keep))

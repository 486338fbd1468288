"""Sizes as routes.yaml writes them: a whole number of bytes, or one with a unit (``512KiB``, ``10MiB``,
``1GB``), for ``max_body:`` and ``rejections: {keep:}``. Pure: no I/O.
"""

from __future__ import annotations

import re

from gateway.errors import Problem

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}


def parse_size(value: object, where: str, problems: list[Problem], default: int) -> int:
    """Bytes in ``value`` (more than 0); a bad one appends a Problem at ``where`` and gives ``default``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _SIZE.match(value) if isinstance(value, str) else None
    if m and int(m.group(1)) > 0:
        return int(m.group(1)) * _UNITS[m.group(2)]
    problems.append(Problem(where, f"expected a size like 1048576, '512KiB' or '10MiB', got {value!r}"))
    return default

"""A delivery's body as data: parse_payload(content type, body) -> Payload (json | form | raw), and the strict
JSON every stored payload and API body is read with. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import parse_qsl

from gateway.model import Payload


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:20]} is out of a float's range")
    return value


def strict_json(body: bytes | str) -> Any:
    """JSON as RFC 8259 / I-JSON (RFC 7493) mean it, which every reader of the stored event can write back
    out: no NaN or Infinity (Python's extension), no number that overflows to one, no lone surrogate escape
    (``"\\ud800"``: UTF-8 cannot encode it). Raises ValueError, or RecursionError for a deeply nested one."""
    data = json.loads(body, parse_constant=_not_json, parse_float=_finite)
    text = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    if b"\\ud" in text or b"\\uD" in text:  # rare: check that the strings decoded are valid Unicode
        json.dumps(data, ensure_ascii=False).encode()  # UnicodeEncodeError (a ValueError) for a lone one
    return data


def parse_payload(content_type: str | None, body: bytes) -> Payload:
    """Parse a body by its content type; anything unparseable is kept as raw text (nothing is lost:
    the exact bytes are stored beside it).

    >>> parse_payload("application/json", b'{"a": 1}')
    Payload(kind='json', data={'a': 1})
    >>> parse_payload("application/x-www-form-urlencoded", b"a=1&b=2&b=3")
    Payload(kind='form', data={'a': '1', 'b': ['2', '3']})
    """
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    looks_json = (
        mime == "application/json" or mime.endswith("+json") or (not mime and body[:1] in (b"{", b"["))
    )
    if looks_json:
        try:
            return Payload("json", strict_json(body), parsed=True)
        except (ValueError, RecursionError):
            pass
    elif mime == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            pass
        else:
            return Payload("form", _form(pairs))
    return Payload("raw", body.decode("utf-8", errors="replace"))


def _form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Form fields in the order they first appear; a repeated field's values as a list, in order. Linear in
    the number of fields: a body repeating one key 100,000 times costs 100,000 appends, not their square."""
    first: dict[str, str] = {}
    repeated: dict[str, list[str]] = {}
    for key, value in pairs:
        if key in repeated:
            repeated[key].append(value)
        elif key in first:
            repeated[key] = [first[key], value]
        else:
            first[key] = value
    return {key: repeated.get(key, value) for key, value in first.items()}

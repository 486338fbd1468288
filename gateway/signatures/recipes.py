"""The ``verify:`` value of a source: a preset name, or a recipe mapping (``hmac``, ``token``, ``jwt``).

Pure: no I/O. Every problem is reported with its path and, where it helps, a did-you-mean.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping

from gateway.errors import Problem
from gateway.signatures.schemes import (
    ALGORITHMS,
    DEFAULT_TOLERANCE,
    ENCODINGS,
    PLACEHOLDER,
    PLACEHOLDERS,
    PRESETS,
    Scheme,
)

RECIPE_KEYS = (
    "scheme", "header", "algorithm", "encoding", "prefix", "signed", "timestamp_header", "id_header",
    "tolerance", "dedupe", "event_type",
)  # fmt: skip

TOKEN_KEYS = ("scheme", "header", "query", "dedupe", "event_type")
JWT_KEYS = ("scheme", "header", "dedupe", "event_type")


def placeholders(template: str) -> list[str]:
    """The placeholder names a signed-string template uses, in order (``"{timestamp}.{body}"`` → two)."""
    return PLACEHOLDER.findall(template)


def scheme_from_spec(spec: object, path: str, problems: list[Problem]) -> Scheme | None:
    """The scheme a ``verify:`` value names: a preset name, or a mapping for the generic ``hmac`` recipe.

    Every problem found is appended to ``problems``; returns None if there was any.
    """
    if isinstance(spec, str):
        if spec in PRESETS:
            return PRESETS[spec]
        if spec == "hmac":
            problems.append(Problem(path, "scheme hmac needs a mapping: {scheme: hmac, header: X-Signature}"))
        elif spec == "token":
            problems.append(Problem(path, "scheme token needs a mapping: {scheme: token, header: X-Api-Key}"))
        else:
            problems.append(Problem(path, _unknown("scheme", spec, (*PRESETS, "hmac", "token"))))
        return None
    if not isinstance(spec, Mapping):
        problems.append(Problem(path, f"expected a scheme name or a mapping, got {type(spec).__name__}"))
        return None
    if spec.get("scheme") == "token":
        return _token(spec, path, problems)
    if spec.get("scheme") == "jwt":
        return _jwt(spec, path, problems)
    return _recipe(spec, path, problems)


def _jwt(spec: Mapping[object, object], path: str, problems: list[Problem]) -> Scheme | None:
    """``{scheme: jwt, header: X-Token}``: the jwt preset reading its token from another header (a
    ``Bearer `` prefix is optional there). Keys, algorithms, audience and issuer are source settings."""
    before = len(problems)
    for key in spec:
        if key not in JWT_KEYS:
            hint = " (it is a source setting, next to verify:)" if key in _JWT_SOURCE_KEYS else ""
            problems.append(Problem(f"{path}.{key}", _unknown("key", key, JWT_KEYS, "allowed") + hint))
    text = {key: _text(spec, key, path, problems) for key in JWT_KEYS}
    if len(problems) > before:
        return None
    header = text["header"] or "Authorization"
    return dataclasses.replace(
        PRESETS["jwt"],
        signature_headers=(header,),
        dedupe=text["dedupe"],
        event_type=text["event_type"],
        secret_headers=(header,),
    )


_JWT_SOURCE_KEYS = ("algorithms", "audience", "issuer", "jwks_url")


def _token(spec: Mapping[object, object], path: str, problems: list[Problem]) -> Scheme | None:
    """``{scheme: token, header: X-Api-Key}`` or ``{scheme: token, query: token}``: a shared secret sent in
    clear, compared in constant time. It proves who sent the delivery, not what it says."""
    before = len(problems)
    for key in spec:
        if key not in TOKEN_KEYS:
            problems.append(Problem(f"{path}.{key}", _unknown("key", key, TOKEN_KEYS, "allowed")))
    text = {key: _text(spec, key, path, problems) for key in TOKEN_KEYS}
    if (spec.get("header") is None) == (spec.get("query") is None):
        problems.append(Problem(path, "scheme token needs exactly one of header: (e.g. X-Api-Key) or query:"))
    if len(problems) > before:
        return None
    header, query = text["header"], text["query"]
    return Scheme(
        name="token",
        signature_headers=(header,) if header else (),
        signature_format="token",
        dedupe=text["dedupe"],
        event_type=text["event_type"],
        binds_body=False,
        secret_headers=(header,) if header else (),
        secret_query=(query,) if query else (),
    )


def _recipe(spec: Mapping[object, object], path: str, problems: list[Problem]) -> Scheme | None:
    before = len(problems)
    for key in spec:
        if key not in RECIPE_KEYS:
            problems.append(Problem(f"{path}.{key}", _unknown("key", key, RECIPE_KEYS, "allowed")))
    text = {key: _text(spec, key, path, problems) for key in RECIPE_KEYS if key != "tolerance"}
    if spec.get("scheme") is None:
        problems.append(Problem(path, "missing required key 'scheme' (scheme: hmac)"))
    elif text["scheme"] is not None and text["scheme"] != "hmac":
        name = text["scheme"]
        fix = f"write `verify: {name}` for the preset" if name in PRESETS else "use scheme: hmac"
        problems.append(Problem(f"{path}.scheme", f"unknown scheme {name!r} in a mapping ({fix})"))
    if spec.get("header") is None:
        problems.append(Problem(path, "missing required key 'header' (the header carrying the signature)"))
    algorithm = text["algorithm"] or "sha256"
    if algorithm not in ALGORITHMS:
        problems.append(Problem(f"{path}.algorithm", _unknown("algorithm", algorithm, ALGORITHMS)))
    encoding = text["encoding"] or "hex"
    if encoding not in ENCODINGS:
        problems.append(Problem(f"{path}.encoding", _unknown("encoding", encoding, ENCODINGS)))
    signed = text["signed"] if text["signed"] is not None else "{body}"
    used = placeholders(signed)
    _check_template(used, text, path, problems)
    tolerance = _tolerance(spec, "timestamp" in used, path, problems)
    if len(problems) > before:
        return None
    return Scheme(
        name="hmac",
        signature_headers=(text["header"] or "",),
        signature_format="prefixed",
        algorithm=algorithm,
        encoding=encoding,
        prefix=text["prefix"] or "",
        signed=signed,
        timestamp_headers=(text["timestamp_header"],) if text["timestamp_header"] else (),
        id_headers=(text["id_header"],) if text["id_header"] else (),
        tolerance=tolerance,
        dedupe=text["dedupe"],
        event_type=text["event_type"],
    )


def _check_template(used: list[str], text: dict[str, str | None], path: str, problems: list[Problem]) -> None:
    at = f"{path}.signed"
    for name in used:
        if name not in PLACEHOLDERS:
            close = difflib.get_close_matches(name, PLACEHOLDERS, n=1)
            tail = f"did you mean {{{close[0]}}}?" if close else "known: {body}, {timestamp}, {id}"
            problems.append(Problem(at, f"unknown placeholder {{{name}}} ({tail})"))
    if "body" not in used:
        problems.append(Problem(at, "the signed string must include {body}, or the body is not protected"))
    for name, key in (("timestamp", "timestamp_header"), ("id", "id_header")):
        if name in used and not text[key]:
            problems.append(Problem(at, f"{{{name}}} is signed but {key} is not set (name its header)"))
        elif text[key] and name not in used:
            problems.append(Problem(f"{path}.{key}", f"{key} is set but signed does not use {{{name}}}"))


def _tolerance(spec: Mapping[object, object], signed: bool, path: str, problems: list[Problem]) -> int | None:
    if "tolerance" not in spec:
        return DEFAULT_TOLERANCE if signed else None
    value = spec["tolerance"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(Problem(f"{path}.tolerance", f"expected seconds >= 0 or null, got {value!r}"))
    elif not signed:
        problems.append(Problem(f"{path}.tolerance", "a tolerance needs a signed {timestamp} to check"))
    else:
        return value
    return None


def _text(spec: Mapping[object, object], key: str, path: str, problems: list[Problem]) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or (not value and key != "prefix"):
        problems.append(Problem(f"{path}.{key}", f"expected a non-empty string, got {value!r}"))
        return None
    return value


def _unknown(what: str, value: object, choices: tuple[str, ...], label: str = "known") -> str:
    close = difflib.get_close_matches(str(value), choices, n=1)
    tail = f"did you mean {close[0]!r}?" if close else f"{label}: {', '.join(choices)}"
    return f"unknown {what} {value!r} ({tail})"

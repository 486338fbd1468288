"""What a dashboard request carries: the query of a listing (empty fields dropped, unknown ones refused) and
the urlencoded body of a form (bounded, each field once). Pure but for reading the request body."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl

from starlette.requests import Request

from gateway.errors import Invalid, TooLarge, unknown_key

FORM_CAP = 1024 * 1024 + 64 * 1024  # an edited rerun payload may be as large as the API takes (1 MiB)
MAX_FIELDS = 64


def listing_query(request: Request, allowed: Iterable[str]) -> dict[str, str]:
    """The query of a listing page: a filter form sends every field, so empty ones mean "any"."""
    names = tuple(allowed)
    given: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in names:
            raise Invalid(str(unknown_key(name[:40], names, "query")))
        if name in given:
            raise Invalid(f"{name}: given more than once; give it once")
        if value.strip():
            given[name] = value.strip()
    return given


async def read_form(request: Request) -> dict[str, str]:
    """A form's fields; Invalid for a body that is not one, TooLarge past FORM_CAP."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise Invalid("expected a form (application/x-www-form-urlencoded)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_CAP:
            raise TooLarge(f"the form is larger than {FORM_CAP} bytes")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise Invalid("the form is not valid UTF-8 urlencoded text, or has too many fields") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise Invalid(f"the form field {name[:40]!r} is given more than once")
        fields[name] = value
    return fields


def pick(fields: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The non-empty ``names`` of a form, stripped: a filter's fields, for the parameters' checks."""
    return {n: fields[n].strip() for n in names if fields.get(n, "").strip()}

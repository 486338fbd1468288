"""Pages as HTML: the Jinja2 environment (autoescaped: payloads are attacker-controlled), the filters the
templates use, and the headers every dashboard answer carries. I/O: reads the templates, packaged with
gateway/, once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.responses import HTMLResponse, Response

from gateway.telemetry.traceparent import trace_id_of

# script-src 'self' and no 'unsafe-inline': a payload that got past escaping still could not run. Nothing is
# fetched from another origin (connect-src 'self' is the live refresh), and no page can be framed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages hold payloads: no copy in a shared or back-button cache
}
PRETTY_MAX = 256 * 1024  # characters of pretty JSON shown on a page; the rest is behind the raw body link


def iso(ts: float | None) -> str:
    if ts is None or not math.isfinite(ts):
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _machine_time(ts: float | None) -> str:
    if ts is None or not math.isfinite(ts):
        return ""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    return f"{_seconds(max(0.0, now - ts))} ago"


def pretty(value: Any) -> str:
    """A stored JSON value for people: indented, non-ASCII kept, cut at PRETTY_MAX characters."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    if len(text) > PRETTY_MAX:
        return text[:PRETTY_MAX] + f"\n… ({len(text) - PRETTY_MAX} more characters: see the raw body)"
    return text


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def query(values: Mapping[str, Any], **changes: Any) -> str:
    """A query string of ``values`` with ``changes`` (None removes one), empty values left out."""
    merged = {**values, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


class Renderer:
    """Renders a template with what every page needs (the viewer, the CSRF token) into an answer."""

    def __init__(self, *, trace_url: str | None = None) -> None:
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("gateway.web.dashboard", "templates"),
            autoescape=True,  # every template, whatever its name: nothing reaches a page unescaped
            undefined=jinja2.StrictUndefined,  # a misspelt name fails the test that renders it, not silently
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(
            iso=iso,
            machine_time=_machine_time,
            seconds=_seconds,
            pretty=pretty,
            percent=_percent,
            trace_id=trace_id_of,
        )
        env.globals.update(ago=_ago, query=query, trace_link=self.trace_link)
        self.env = env
        self.trace_url = trace_url

    def trace_link(self, trace_id: str | None) -> str | None:
        """The trace UI's page for ``trace_id`` (``--trace-url`` with ``{trace_id}`` in it), if configured."""
        if not trace_id or not self.trace_url:
            return None
        return self.trace_url.replace("{trace_id}", trace_id)

    def page(self, name: str, context: Mapping[str, Any], *, status: int = 200) -> Response:
        html = self.env.get_template(name).render(context)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

"""A real browser for the dashboard's acceptance tests: Debian's chromium driven by Playwright's sync API (no
browser download: ``executable_path``), a Watch that records what a page should never do (dialogs, console
errors such as CSP violations, uncaught exceptions, requests leaving 127.0.0.1) and screenshots.
I/O: a browser process, PNG files.

Playwright's sync API runs its own event loop in a greenlet and, between two calls, leaves that loop marked as
this thread's running loop: while a browser is open, ``asyncio.run`` and pytest-asyncio's async tests and
fixtures fail ("cannot be called from a running event loop"). So the tests that use one are sync, and the
browser is closed before the rest of the suite goes on (tests/acceptance/dashboard/conftest.py opens it once
for that package).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    ViewportSize,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM") or "/usr/bin/chromium"

# As root Chromium needs --no-sandbox; the others keep it from reaching Google's hosts (updates, sync, field
# trials, QUIC probes) on a closed network.
ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LOCAL_SCHEMES = frozenset({"data", "blob", "about"})  # no request leaves the browser for these


class ChromiumMissing(Exception):
    pass


@contextlib.contextmanager
def chromium(executable: str = CHROMIUM) -> Iterator[Browser]:
    """Playwright and one headless Chromium, both stopped at the end. A missing executable raises
    ChromiumMissing, naming what installs it (the fixtures fail with it; they never skip)."""
    if not os.access(executable, os.X_OK):
        raise ChromiumMissing(
            f"no Chromium at {executable}: the dashboard's browser tests drive Debian's chromium "
            "(.ci/run installs it: `apt-get install chromium`; or point GATEWAY_TEST_CHROMIUM at one). "
            "Never `playwright install`: no browser is downloaded."
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=list(ARGS))
        try:
            yield browser
        finally:
            browser.close()


def is_local(url: str) -> bool:
    """Whether a request to ``url`` stays on this machine (the gateway under test, or no network at all)."""
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or parts.hostname in LOCAL_HOSTS


@dataclass
class Watch:
    """What happened on a page that a clean page never does: every dialog (dismissed), console errors (a CSP
    violation is one: "Refused to execute inline script ..."), uncaught exceptions, and requests to any host
    but 127.0.0.1/localhost (aborted: nothing leaves the machine). ``assert_clean()`` fails listing them,
    except those an ``expect_*`` pattern (a regex, searched) allows."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    third_party: list[str] = field(default_factory=list)
    _expected: dict[str, list[re.Pattern[str]]] = field(default_factory=dict)

    @classmethod
    def attach(cls, page: Page) -> Watch:
        watch = cls(page)
        page.on("dialog", watch._on_dialog)
        page.on("console", watch._on_console)
        page.on("pageerror", watch._on_page_error)
        page.on("websocket", lambda ws: watch._on_url(ws.url))
        page.context.on("request", lambda request: watch._on_url(request.url))
        page.context.route(lambda url: not is_local(url), lambda route: route.abort("blockedbyclient"))
        return watch

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        with contextlib.suppress(PlaywrightError):  # the page may have gone away with its dialog
            dialog.dismiss()

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location
            self.console_errors.append(f"{message.text} ({where.get('url')}:{where.get('lineNumber')})")

    def _on_page_error(self, error: PlaywrightError) -> None:
        self.page_errors.append(f"{error.name}: {error.message}")

    def _on_url(self, url: str) -> None:
        if not is_local(url):
            self.third_party.append(url)

    def expect_console(self, pattern: str) -> None:
        """Allow console errors matching ``pattern`` (say, the CSP violation a test provokes on purpose)."""
        self._expected.setdefault("console", []).append(re.compile(pattern))

    def expect_dialog(self, pattern: str = "") -> None:
        self._expected.setdefault("dialog", []).append(re.compile(pattern))

    def expect_page_error(self, pattern: str = "") -> None:
        self._expected.setdefault("pageerror", []).append(re.compile(pattern))

    def expect_request(self, pattern: str = "") -> None:
        self._expected.setdefault("request", []).append(re.compile(pattern))

    def unexpected(self) -> dict[str, list[str]]:
        """Each kind's records that no expected pattern allows; kinds with none are left out."""
        kinds = {
            "dialog": self.dialogs,
            "console": self.console_errors,
            "pageerror": self.page_errors,
            "request": self.third_party,
        }
        found = {}
        for kind, records in kinds.items():
            allowed = self._expected.get(kind, [])
            left = [r for r in records if not any(p.search(r) for p in allowed)]
            if left:
                found[kind] = left
        return found

    def assert_clean(self) -> None:
        found = self.unexpected()
        if found:
            lines = [f"  {kind}: {record}" for kind, records in found.items() for record in records]
            raise AssertionError(f"the page at {self.page.url} was not clean:\n" + "\n".join(lines))


def new_page(browser: Browser, viewport: ViewportSize = DESKTOP) -> tuple[BrowserContext, Page, Watch]:
    """A fresh context (no cookies, no storage) and its one page, watched; close the context at the end."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    return context, page, Watch.attach(page)


def desktop(page: Page) -> Page:
    page.set_viewport_size(DESKTOP)
    return page


def phone(page: Page) -> Page:
    """The page at a phone's size (390x844 CSS pixels); the same context, so the session is kept."""
    page.set_viewport_size(PHONE)
    return page


def screenshots_dir(fallback: Path) -> Path:
    """GATEWAY_SCREENSHOTS when set (``GATEWAY_SCREENSHOTS=docs/img pytest tests/acceptance/dashboard``),
    else ``fallback`` (a test's tmp_path): screenshots are taken on every run, kept only when asked for."""
    chosen = os.environ.get("GATEWAY_SCREENSHOTS")
    return Path(chosen) if chosen else fallback


def shoot(page: Page, name: str, directory: Path) -> Path:
    """A full-page PNG of ``page`` as ``<directory>/<name>.png`` (directories made); its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name if name.endswith(".png") else f"{name}.png")
    page.screenshot(path=path, full_page=True, animations="disabled")
    return path

"""The dashboard's browser fixtures: one Chromium for this package (tests/support/browser.py), a fresh watched
page per test, screenshots, and ``dashboard(...)``: `gateway serve` with an admin secret, tokens minted by
`gateway token create`, and signed GitHub deliveries.

The tests here are sync: while Playwright's sync API has a browser open, the thread's event loop is its own
(see tests/support/browser.py), so async tests and fixtures cannot run here, and the browser is closed when
the package's tests are done, before the rest of the suite runs.
"""

from __future__ import annotations

import inspect
import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.support import browser as browsers
from tests.support.deliveries import PUSH, github_headers
from tests.support.process import Gateway

SECRET = "dashboard-acceptance-admin-secret-4b8e2d7a9c1f"  # 46 bytes: long enough for HS256
ADMIN_ENV = ("GATEWAY_ADMIN_SECRET", "GATEWAY_ADMIN_PUBLIC_KEY", "GATEWAY_ADMIN_HOST", "GATEWAY_ADMIN_PORT")


@pytest.fixture(autouse=True)
def sync_tests_only(request: pytest.FixtureRequest) -> None:
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        pytest.fail(
            "the dashboard's browser tests are sync: Playwright's sync API holds this thread's event loop "
            "while the browser is open (tests/support/browser.py)",
            pytrace=False,
        )


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Chromium, launched once for this package (about a second) and closed after its last test.
    No Chromium fails the test, naming `apt-get install chromium`; it never skips."""
    try:
        with browsers.chromium() as launched:
            yield launched
    except browsers.ChromiumMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def watch(browser: Browser) -> Iterator[browsers.Watch]:
    """The Watch of this test's page (a new context: no cookies; 1280x800). At teardown it must be clean:
    a test that provokes a dialog, console error, page error or third-party request on purpose says so
    first with ``watch.expect_console(pattern)`` (or expect_dialog, expect_page_error, expect_request)."""
    context, _page, watched = browsers.new_page(browser)
    try:
        yield watched
    finally:
        context.close()
    watched.assert_clean()


@pytest.fixture
def page(watch: browsers.Watch) -> Page:
    """This test's page, watched (see ``watch``)."""
    return watch.page


@pytest.fixture
def shoot(tmp_path: Path) -> Callable[[Page, str], Path]:
    """``shoot(page, name)``: a full-page PNG ``<name>.png`` in $GATEWAY_SCREENSHOTS when set, else in
    the test's tmp_path; returns its path."""

    def take(page: Page, name: str) -> Path:
        return browsers.shoot(page, name, browsers.screenshots_dir(tmp_path / "screenshots"))

    return take


@dataclass
class Dashboard:
    """A running `gateway serve` with the admin secret SECRET: its /ui, its tokens and its deliveries."""

    gateway: Gateway
    cwd: Path
    _ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def ui(self) -> str:
        return f"{self.gateway.url}/ui"

    def token(self, *scopes: str, ttl: str = "10m") -> str:
        """A token as an operator makes one: `gateway token create --scope ... --ttl 10m` (read without
        scopes)."""
        argv = [sys.executable, "-m", "gateway", "token", "create", "--ttl", ttl]
        for scope in scopes or ("read",):
            argv += ["--scope", scope]
        env = {**os.environ, "GATEWAY_ADMIN_SECRET": SECRET}
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=self.cwd, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def deliver(
        self,
        body: bytes = PUSH,
        *,
        delivery: str | None = None,
        event: str = "push",
        secret: str = "gh-secret",
        expect: int | None = 202,
    ) -> httpx.Response:
        """POST ``body`` to /hooks/github, signed as GitHub signs it (a fresh delivery id unless given);
        the answer's status must be ``expect`` (202, accepted) unless that is None."""
        delivery = delivery or f"dash-{next(self._ids)}"
        headers = github_headers(body, secret=secret, delivery=delivery, event=event)
        answer = httpx.post(f"{self.url}/hooks/github", content=body, headers=headers, timeout=10)
        if expect is not None:
            assert answer.status_code == expect, answer.text
        return answer


@pytest.fixture
def dashboard(
    gateway: Callable[..., Gateway], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Dashboard]:
    """``dashboard(routes=None, tasks_code=None, *, args=(), env=None)``: start `gateway serve` (the
    tests' ROUTES and TASKS_CODE unless given) with GATEWAY_ADMIN_SECRET=SECRET; killed at the end."""
    for name in ADMIN_ENV:  # no admin configuration leaks in from the shell running the tests
        monkeypatch.delenv(name, raising=False)

    def start(
        routes: str | None = None,
        tasks_code: str | None = None,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Dashboard:
        gw = gateway(routes, tasks_code, args=args, env={"GATEWAY_ADMIN_SECRET": SECRET, **(env or {})})
        return Dashboard(gw, tmp_path)

    return start

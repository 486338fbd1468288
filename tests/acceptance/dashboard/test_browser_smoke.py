"""The browser fixtures themselves, without the dashboard: a real page from a running gateway, a screenshot,
and a Watch that catches a dialog."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.acceptance.dashboard.conftest import Dashboard
from tests.support.browser import Watch

pytestmark = pytest.mark.acceptance


def test_the_browser_reads_a_running_gateway_and_shoots_it(
    dashboard: Callable[..., Dashboard], page: Page, shoot: Callable[[Page, str], Path]
) -> None:
    dash = dashboard()
    answer = page.goto(f"{dash.url}/healthz")
    assert answer is not None and answer.status == 200
    text = page.locator("body").inner_text()
    assert '"ok"' in text
    assert json.loads(text)["status"] == "ok"

    png = shoot(page, "healthz")
    assert png.name == "healthz.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_watch_records_a_dialog_and_is_not_clean(page: Page, watch: Watch) -> None:
    page.set_content("<script>alert(1)</script>")
    assert watch.dialogs == ["alert: 1"]
    with pytest.raises(AssertionError, match="dialog: alert: 1"):
        watch.assert_clean()

    watch.expect_dialog(r"^alert: 1$")  # provoked on purpose: the fixture's own check at teardown passes
    watch.assert_clean()

"""The dashboard in Chromium against `gateway serve` subprocesses: signing in and out, filtering and searching
events, replay and a bulk job watched to the end without a reload, a rerun through the JSON editor, cancel, a
read token and forged forms, a hostile payload, the keyboard, a phone's width; and the screenshots of
docs/dashboard.md (``GATEWAY_SCREENSHOTS=docs/img``).

Two gateways serve the whole module: ``live`` runs its tasks, ``held`` (``--executor off``) keeps its runs
queued. Each test makes its own records with unique delivery ids and looks only at those, so the order of the
tests does not matter; the figures a test reads are lower bounds where other tests add to them.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, ViewportSize, expect

from tests.acceptance.dashboard.conftest import ADMIN_ENV, SECRET, Dashboard
from tests.support.browser import Watch
from tests.support.deliveries import push
from tests.support.process import Gateway

pytestmark = pytest.mark.acceptance

ROUTES = """
tasks: [dashboard_tasks]
sources:
  github: {verify: github, secret: gh-secret}
routes:
  - {id: echo-pushes, source: github, event: push, task: echo}
  - {id: slow-builds, source: github, event: build, task: slow}
  - {id: backfill, source: github, event: backfill, task: echo}
"""

# echo fails when its input says "fail": true (twice: two attempts 0.1 s apart); slow takes 3 s, longer
# than a turn of the dashboard's polling (2 s), so a page shows it unfinished first.
TASKS = """
import asyncio
from gateway import task

RETRY = {"max_attempts": 2, "min_timeout": 0.1, "max_timeout": 0.1, "jitter": False}

@task(id="echo", retry=RETRY)
async def echo(payload, ctx):
    ctx.log.info("attempt %d for %s", ctx.attempt, payload.get("ref"))
    if payload.get("fail"):
        raise RuntimeError("asked to fail: the input says fail=true")
    return {"echoed": payload}

@task(id="slow")
async def slow(payload, ctx):
    ctx.log.info("building %s", payload.get("after"))
    await asyncio.sleep(3)
    return {"built": payload.get("after")}
"""

SETTLE = 20_000  # ms for a run or job to reach its end on a page that refreshes itself every 2 s
PHONE: ViewportSize = {"width": 375, "height": 740}
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z"  # how a page writes a time
HOSTILE_SCRIPT = "<script>window.__pwned=1</script>"
HOSTILE_IMG = "<img src=x onerror=window.__pwned=1>"


# -- the gateways, tokens and sign-in ------------------------------------------------------------------------


class Gateways:
    """The module's `gateway serve` processes (started on first use) and their tokens (minted once)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: dict[str, Dashboard] = {}
        self.tokens: dict[tuple[str, tuple[str, ...]], str] = {}

    def get(self, name: str, *args: str) -> Dashboard:
        if name not in self.started:
            where = self.root / name
            where.mkdir()
            (where / "dashboard_tasks.py").write_text(TASKS)
            (where / "routes.yaml").write_text(ROUTES)
            gw = Gateway(
                where / "routes.yaml",
                where / "gateway.db",
                where / "gateway.log",
                args=args,
                env={"GATEWAY_ADMIN_SECRET": SECRET},
            )
            self.started[name] = Dashboard(gw, where)
            gw.start()
        return self.started[name]

    def token(self, dash: Dashboard, *scopes: str) -> str:
        key = (dash.url, scopes)
        if key not in self.tokens:
            self.tokens[key] = dash.token(*scopes)
        return self.tokens[key]

    def stop(self) -> None:
        for dash in self.started.values():
            dash.gateway.stop()


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    made = Gateways(tmp_path_factory.mktemp("dashboards"))
    with pytest.MonkeyPatch.context() as env:
        for name in ADMIN_ENV:  # no admin configuration leaks in from the shell running the tests
            env.delenv(name, raising=False)
        try:
            yield made
        finally:
            made.stop()


@pytest.fixture
def live(gateways: Gateways) -> Dashboard:
    """The gateway that runs its tasks."""
    return gateways.get("live")


@pytest.fixture
def held(gateways: Gateways) -> Dashboard:
    """The gateway with ``--executor off``: its runs stay queued (no worker serves them)."""
    return gateways.get("held", "--executor", "off")


@pytest.fixture
def sign_in(gateways: Gateways, page: Page) -> Callable[..., None]:
    """``sign_in(dash, *scopes)``: through the login form, with a token of those scopes (read, replay)."""

    def go(dash: Dashboard, *scopes: str) -> None:
        page.goto(f"{dash.ui}/login")
        page.get_by_label("Admin token").fill(gateways.token(dash, *(scopes or ("read", "replay"))))
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{dash.ui}/")

    return go


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def deliver(dash: Dashboard, payload: dict[str, Any] | bytes, **given: Any) -> dict[str, Any]:
    """Deliver ``payload`` (JSON bytes, or a value to encode) as GitHub would; the 202's JSON (``event_id``,
    ``runs``)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    answer: dict[str, Any] = dash.deliver(body, **given).json()
    return answer


def mark(page: Page) -> None:
    """Set a marker on the page's window: it survives DOM swaps but not a navigation or a reload."""
    page.evaluate("window.__marker = 1")


def still_marked(page: Page) -> bool:
    return bool(page.evaluate("window.__marker === 1"))


def overflows(page: Page) -> int:
    """How many CSS pixels the page is wider than its viewport (0: no horizontal scrolling)."""
    width: int = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    return width


def fact(page: Page, scope: str, name: str) -> Locator:
    """The <dd> after the <dt> called ``name`` in ``scope``'s facts."""
    return page.locator(f'{scope} dt:text-is("{name}") + dd').first


# -- 1. signing in and out -----------------------------------------------------------------------------------


def test_sign_in_with_a_token_shows_the_overview_figures_and_sign_out_ends_the_session(
    live: Dashboard, gateways: Gateways, page: Page, shoot: Callable[[Page, str], Path]
) -> None:
    for n in range(3):
        deliver(live, {"ref": "refs/heads/main", "after": f"ok{n}"}, delivery=unique("ov"))
    deliver(live, {"ref": "refs/heads/main", "after": "bad", "fail": True}, delivery=unique("ov"))
    deliver(live, {"zen": "Keep it logically awesome."}, delivery=unique("ov"), event="ping")  # no route
    live.deliver(push("forged"), delivery=unique("ov"), secret="not-the-secret", expect=401)

    page.goto(f"{live.ui}/")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2F$"))
    page.get_by_label("Admin token").fill(gateways.token(live, "read", "replay"))
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"{live.ui}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    github = page.locator("#overview section").first.locator("tbody tr", has_text="github")
    routed, unrouted, rejected = (int(github.locator("td").nth(i).inner_text()) for i in range(3))
    assert routed >= 4 and unrouted >= 1 and rejected >= 1, (routed, unrouted, rejected)
    runs = page.locator("section", has=page.get_by_role("heading", name="Runs, last 24 hours"))
    expect(runs.locator("ul.counts").first.locator(".s-failed")).to_be_visible(timeout=SETTLE)
    expect(runs.locator("ul.counts").first.locator(".s-completed")).to_be_visible(timeout=SETTLE)
    shoot(page, "dashboard-overview")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live.ui}/login?why=signed-out")
    assert [c["name"] for c in page.context.cookies() if c["name"] == "gateway_session"] == []
    page.goto(f"{live.ui}/events")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2Fevents$"))
    expect(page.get_by_label("Admin token")).to_be_visible()
    expect(page.get_by_role("navigation", name="Sections")).to_have_count(0)


# -- 2. events: filters, search, one event -------------------------------------------------------------------


def test_events_filter_by_source_and_status_search_by_delivery_id_and_show_one_event(
    live: Dashboard, page: Page, sign_in: Callable[..., None], shoot: Callable[[Page, str], Path]
) -> None:
    wanted = unique("gh-delivery")
    payload = {"ref": "refs/heads/main", "after": "f00dfeed", "repository": {"full_name": "o/r"}}
    event_id = deliver(live, payload, delivery=wanted)["event_id"]
    pinged = unique("gh-ping")
    deliver(live, {"zen": "Design for failure."}, delivery=pinged, event="ping")
    sign_in(live)

    page.get_by_role("link", name="Events", exact=True).click()
    expect(page.locator("#events-list tbody tr").first).to_be_visible()
    shoot(page, "dashboard-events")

    form = page.get_by_role("search", name="Filter events")
    form.get_by_label("Source").select_option("github")
    form.get_by_label(re.compile(r"^Status")).select_option("unrouted")
    form.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]source=github(&|$)"))
    expect(page).to_have_url(re.compile(r"[?&]status=unrouted(&|$)"))
    rows = page.locator("#events-list tbody tr")
    expect(rows.filter(has_text=pinged)).to_have_count(1)
    expect(rows.filter(has_text=wanted)).to_have_count(0)  # routed: filtered out
    statuses = rows.locator("td:nth-child(5) .badge").all_inner_texts()
    assert statuses and set(statuses) == {"unrouted"}, statuses

    form.get_by_label(re.compile(r"^Status")).select_option("")
    form.get_by_label("Search").fill(wanted)
    form.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.locator("td.clip")).to_have_text(wanted)

    rows.first.get_by_role("link").first.click()
    expect(page).to_have_url(f"{live.ui}/events/{event_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(event_id)
    expect(fact(page, ".facts", "Dedupe key")).to_have_text(wanted)
    expect(fact(page, ".facts", "Verification")).to_have_text("verified:github")
    headers = page.locator("table.headers").first
    expect(headers.locator("tr", has_text="x-github-delivery").locator("td")).to_have_text(wanted)
    expect(headers.locator("tr", has_text="x-github-event").locator("td")).to_have_text("push")
    signature = headers.locator("tr", has_text="x-hub-signature-256").locator("td")
    expect(signature).to_have_text("signature, not shown")  # the header is listed, its value is not
    assert re.search(r"sha256=[0-9a-f]{64}", page.content()) is None
    assert "gh-secret" not in page.content()
    shown = page.locator("section", has=page.get_by_role("heading", name="Payload")).locator("pre")
    text = shown.inner_text()
    assert json.loads(text) == payload
    assert text == json.dumps(payload, indent=2), text  # indented for people, in the sender's key order
    shoot(page, "dashboard-event")


# -- 3. replay, watched to the end ---------------------------------------------------------------------------


def test_replay_confirms_the_routes_it_would_run_then_the_run_completes_without_a_reload(
    live: Dashboard, page: Page, sign_in: Callable[..., None]
) -> None:
    original = deliver(live, push("b4dc0de"), event="build")["event_id"]
    sign_in(live)
    page.goto(f"{live.ui}/events/{original}")
    page.get_by_role("link", name="Replay…").click()

    expect(page).to_have_url(f"{live.ui}/events/{original}/replay")
    expect(page.get_by_role("heading", level=1)).to_have_text("Replay this event?")
    expect(page.get_by_text("It would create 1 run:")).to_be_visible()
    would = page.locator("table.list tbody tr")
    expect(would).to_have_count(1)
    expect(would.locator("td")).to_have_text(["slow-builds", "slow", "slow"])
    page.get_by_role("button", name="Replay", exact=True).click()

    expect(page).to_have_url(re.compile(r"/ui/events/(?!" + re.escape(original) + r")[^/]+$"))
    expect(fact(page, ".facts", "Replay of")).to_have_text(original)
    status = page.locator("#event-runs tbody tr td:nth-child(3) .badge")
    expect(status).to_have_count(1)
    first_seen = status.inner_text()
    assert first_seen in ("queued", "executing"), first_seen  # a 3 s task: not done when the page came
    mark(page)
    expect(status).to_have_text("completed", timeout=SETTLE)
    assert still_marked(page), "the page was reloaded or navigated away: the status should come live"
    assert page.locator("body").get_attribute("data-poll") == "2000"  # an event page stays live


# -- 4. rerun with an edited input ---------------------------------------------------------------------------


def test_rerun_a_failed_run_with_edited_json_refuses_invalid_json_then_runs_the_edit(
    live: Dashboard, page: Page, sign_in: Callable[..., None], shoot: Callable[[Page, str], Path]
) -> None:
    ref = unique("refs/heads/broken")
    run_id = deliver(live, {"ref": ref, "after": "dead", "fail": True})["runs"][0]["id"]
    sign_in(live)
    page.goto(f"{live.ui}/runs/{run_id}")
    expect(fact(page, "#run-state", "Status")).to_have_text("failed", timeout=SETTLE)
    attempts = page.locator("ol.attempts > li")
    expect(attempts).to_have_count(2)
    expect(attempts.first).to_contain_text("RuntimeError: asked to fail: the input says fail=true")
    logs = attempts.first.locator("pre.logs").inner_text().splitlines()  # one line per ctx.log call, timed
    assert len(logs) == 2, logs
    assert re.fullmatch(rf"{STAMP} info attempt 1 for {re.escape(ref)}", logs[0]), logs
    assert re.fullmatch(rf"{STAMP} info attempt 1 failed; next attempt in 0\.1 s", logs[1]), logs
    attempts.first.locator("summary", has_text="Traceback").click()
    expect(attempts.first.locator("details pre").first).to_contain_text('raise RuntimeError("asked to fail')
    shoot(page, "dashboard-run")

    page.get_by_role("link", name="Rerun with edited input…").click()
    expect(page).to_have_url(f"{live.ui}/runs/{run_id}/rerun")
    editor = page.get_by_label("Input (JSON)")
    check = page.locator("#payload-check")
    assert json.loads(editor.input_value()) == {"ref": ref, "after": "dead", "fail": True}
    expect(check).to_have_text("Valid JSON.")

    mark(page)
    editor.fill('{"ref": "refs/heads/fixed", "fail": false,')
    expect(check).to_contain_text("Not valid JSON")
    expect(editor).to_have_attribute("aria-invalid", "true")
    shoot(page, "dashboard-rerun")
    page.get_by_role("button", name="Rerun").click()
    expect(editor).to_be_focused()  # the script refused the submit and sent the reader back to the editor
    expect(page).to_have_url(f"{live.ui}/runs/{run_id}/rerun")
    assert still_marked(page), "an invalid edit was submitted"

    edited = {"ref": "refs/heads/fixed", "fail": False, "note": "edited in the dashboard"}
    editor.fill(json.dumps(edited))
    expect(check).to_have_text("Valid JSON.")
    expect(editor).not_to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Rerun").click()

    expect(page).to_have_url(re.compile(r"/ui/runs/(?!" + re.escape(run_id) + r")[^/]+$"))
    expect(fact(page, "#run-state", "Rerun of")).to_have_text(run_id)
    shown = page.locator("section", has=page.get_by_role("heading", name="Input")).locator("pre")
    assert json.loads(shown.inner_text()) == edited
    expect(fact(page, "#run-state", "Status")).to_have_text("completed", timeout=SETTLE)
    output = page.locator("section", has=page.get_by_role("heading", name="Output")).locator("pre")
    assert json.loads(output.inner_text()) == {"echoed": edited}


# -- 5. cancel a queued run ----------------------------------------------------------------------------------


def test_cancel_a_queued_run_shows_it_canceled(
    held: Dashboard, page: Page, sign_in: Callable[..., None]
) -> None:
    run_id = deliver(held, push("queued1"))["runs"][0]["id"]
    sign_in(held)
    page.goto(f"{held.ui}/runs/{run_id}")
    status = fact(page, "#run-state", "Status")
    expect(status).to_have_text("queued")
    expect(page.get_by_text("No attempt yet: the run waits for a worker")).to_be_visible()
    page.get_by_role("button", name="Cancel run").click()

    expect(page).to_have_url(f"{held.ui}/runs/{run_id}")
    expect(status).to_have_text("canceled")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    expect(page.get_by_role("button", name="Rerun", exact=True)).to_be_visible()  # final: it can be rerun
    assert page.locator("body").get_attribute("data-poll") is None  # a final run's page stops polling


# -- 6. a bulk job -------------------------------------------------------------------------------------------


def _backfill(dash: Dashboard, token: str, *, deliveries: int, doublings: int) -> int:
    """``deliveries`` events of type backfill, then doubled ``doublings`` times by replay jobs over them
    (replays included), through the API; how many there are at the end."""
    with httpx.Client(base_url=dash.url, timeout=30) as client:
        for _ in range(deliveries):
            dash.deliver(push(unique("bf")), event="backfill")
        auth = {"Authorization": f"Bearer {token}"}
        body = {"kind": "replay", "filter": {"event_type": "backfill", "include_replays": True}}
        for _ in range(doublings):
            started = client.post("/api/replays", json=body, headers=auth)
            assert started.status_code == 202, started.text
            job = started.json()["job"]
            deadline = time.monotonic() + 30
            while job["status"] == "running" and time.monotonic() < deadline:
                time.sleep(0.05)  # waiting for the setup, not asserting on time
                job = client.get(f"/api/jobs/{job['id']}", headers=auth).json()
            assert job["status"] == "completed", job
    return int(deliveries * 2**doublings)


def test_bulk_dry_run_counts_then_the_job_page_shows_progress_to_completed_without_a_reload(
    held: Dashboard,
    gateways: Gateways,
    page: Page,
    sign_in: Callable[..., None],
    shoot: Callable[[Page, str], Path],
) -> None:
    # Enough events that the job outlasts the page's first answer: a chunk of 100 takes some ms, so 4,800 are
    # still being replayed when the job page comes, and its figures must come live.
    total = _backfill(held, gateways.token(held, "read", "replay"), deliveries=150, doublings=5)
    sign_in(held)
    page.get_by_role("link", name="Bulk").click()
    page.get_by_role("link", name="New bulk job…").click()
    page.get_by_label("Replay events").check()
    page.get_by_label("Event type (replay)").fill("backfill")
    page.get_by_label("Include earlier replays (replay)").check()
    page.get_by_role("button", name="Count (dry run)").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(f"Dry run: {total} events")
    expect(page.locator("#preview-count")).to_have_text(str(total))
    expect(page.locator(".facts")).to_contain_text("backfill")
    page.get_by_role("button", name="Start the replay job").click()

    expect(page).to_have_url(re.compile(r"/ui/jobs/[^/]+$"))
    state = page.locator("#job-state")
    progress = page.locator("#job-progress")
    first = state.locator(".badge").first.inner_text(), int(progress.get_attribute("value") or 0)
    assert first[0] == "running" and first[1] < total, first  # the page came before the job was done
    assert progress.get_attribute("max") == str(total)
    mark(page)
    expect(state.locator(".badge").first).to_have_text("completed", timeout=SETTLE)
    expect(progress).to_have_attribute("value", str(total))
    expect(state).to_contain_text(f"{total} of {total} done, {total} runs created.")
    assert still_marked(page), "the page was reloaded: the job's progress should come live"
    assert page.locator("body").get_attribute("data-poll") is None  # finished: it stopped polling
    expect(fact(page, "#job-state", "Finished")).not_to_have_text("-")
    shoot(page, "dashboard-job")


# -- 7. a read token, forged forms ---------------------------------------------------------------------------


FORGE = """async ([path, csrf]) => {
  const body = new URLSearchParams(csrf === null ? {input: "original"} : {csrf, input: "original"});
  const answer = await fetch(path, {method: "POST", body, redirect: "manual"});
  return [answer.status, await answer.text()];
}"""


def test_a_read_token_gets_no_controls_and_forged_or_csrf_less_posts_are_refused(
    live: Dashboard, page: Page, watch: Watch, sign_in: Callable[..., None]
) -> None:
    done = deliver(live, push(unique("ro")))
    event_id, run_id = done["event_id"], done["runs"][0]["id"]
    sign_in(live, "read")
    expect(page.locator(".who")).to_contain_text("(read only)")
    page.goto(f"{live.ui}/runs/{run_id}")
    expect(fact(page, "#run-state", "Status")).to_have_text("completed", timeout=SETTLE)
    for name in ("Rerun", "Cancel run"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="Rerun with edited input…")).to_have_count(0)
    page.goto(f"{live.ui}/events/{event_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(event_id)
    expect(page.get_by_role("link", name="Replay…")).to_have_count(0)
    page.goto(f"{live.ui}/jobs")
    expect(page.get_by_role("link", name="New bulk job…")).to_have_count(0)
    page.goto(f"{live.ui}/bulk")
    expect(page.get_by_text("Your token has no replay scope")).to_be_visible()
    expect(page.get_by_role("button", name="Count (dry run)")).to_have_count(0)

    # A script on the page holds the cookie and the session's CSRF token (the sign-out form's): the server
    # still refuses an action the token's scopes do not allow.
    watch.expect_console(r"status of 403")
    csrf = page.locator('.who input[name="csrf"]').get_attribute("value")
    status, text = page.evaluate(FORGE, [f"/ui/events/{event_id}/replay", csrf])
    assert status == 403 and "no replay scope" in text, (status, text)
    status, text = page.evaluate(FORGE, [f"/ui/runs/{run_id}/rerun", csrf])
    assert status == 403, (status, text)
    page.goto(f"{live.ui}/events/{event_id}")
    expect(page.get_by_text("Never replayed.")).to_be_visible()

    # With the replay scope, a form without its CSRF token is refused all the same.
    sign_in(live, "read", "replay")
    page.goto(f"{live.ui}/runs/{run_id}")
    status, text = page.evaluate(FORGE, [f"/ui/runs/{run_id}/rerun", None])
    assert status == 403 and "CSRF token is missing" in text, (status, text)
    answer = page.request.post(f"{live.ui}/events/{event_id}/replay", form={"input": "original"})
    assert answer.status == 403, answer.status
    page.reload()
    expect(page.get_by_role("heading", name="Reruns")).to_have_count(0)
    page.goto(f"{live.ui}/events/{event_id}")
    expect(page.get_by_text("Never replayed.")).to_be_visible()


# -- 8. a hostile payload ------------------------------------------------------------------------------------


def test_a_hostile_payload_and_headers_render_as_inert_text(
    live: Dashboard, page: Page, sign_in: Callable[..., None]
) -> None:
    payload = {"ref": HOSTILE_SCRIPT, "after": HOSTILE_IMG, "repository": {"full_name": HOSTILE_SCRIPT}}
    key = f"{HOSTILE_SCRIPT}-{uuid.uuid4().hex[:6]}"
    event_id = deliver(live, payload, delivery=key, event=HOSTILE_IMG)["event_id"]
    sign_in(live)

    page.goto(f"{live.ui}/events?{httpx.QueryParams({'q': key})}")
    row = page.locator("#events-list tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(2)).to_have_text(HOSTILE_IMG)  # the event type, from X-GitHub-Event
    expect(row.locator("td.clip")).to_have_text(key)  # the dedupe key, from X-GitHub-Delivery
    inert(page)

    for path in (f"/ui/events/{event_id}", f"/ui/events/{event_id}?raw=1"):
        page.goto(f"{live.url}{path}")
        expect(page.locator("pre.code").first).to_contain_text(HOSTILE_SCRIPT)
        expect(page.locator("pre.code").first).to_contain_text(HOSTILE_IMG)
        expect(fact(page, ".facts", "Type")).to_have_text(HOSTILE_IMG)
        expect(fact(page, ".facts", "Dedupe key")).to_have_text(key)
        headers = page.locator("table.headers").first
        expect(headers.locator("tr", has_text="x-github-delivery").locator("td")).to_have_text(key)
        inert(page)


def inert(page: Page) -> None:
    """Nothing of the hostile text became markup or ran (the Watch also fails the test on a CSP report)."""
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("main script, main img, main [onerror]").count() == 0
    assert page.locator("script").count() == 1  # ours: /ui/static/dashboard.js


# -- 9. the keyboard -----------------------------------------------------------------------------------------


def tab_to(page: Page, selector: str, limit: int = 60) -> int:
    """Press Tab until ``selector`` has the focus; how many presses it took (fails past ``limit``)."""
    for presses in range(1, limit + 1):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return presses
    raise AssertionError(f"{selector} never got the focus in {limit} presses of Tab")


def focus_ring(page: Page) -> str:
    ring: str = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    return ring


def test_the_keyboard_signs_in_with_tab_and_enter_and_reaches_the_list_links(
    live: Dashboard, gateways: Gateways, page: Page
) -> None:
    deliver(live, push(unique("kb")))
    page.goto(f"{live.ui}/login")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    expect(page.get_by_role("link", name="Skip to content")).to_be_in_viewport()

    assert tab_to(page, "#token", limit=3) <= 2  # past the skip link and the brand only
    field = page.get_by_label("Admin token")
    expect(field).to_be_focused()
    expect(page.locator('label[for="token"]')).to_be_visible()
    expect(page.locator('label[for="token"]')).to_have_text("Admin token")
    assert focus_ring(page) == "solid"
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    assert focus_ring(page) == "solid"

    page.keyboard.press("Shift+Tab")
    expect(field).to_be_focused()
    page.keyboard.type(gateways.token(live, "read", "replay"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live.ui}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")

    page.goto(f"{live.ui}/events")
    tab_to(page, '#events-list a[href^="/ui/events/"]')
    link = page.locator("*:focus")
    expect(link).to_have_attribute("href", re.compile(r"^/ui/events/[^/]+$"))
    assert focus_ring(page) == "solid"
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/events/[^/?]+$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Event")


# -- 10. a phone ---------------------------------------------------------------------------------------------


def test_a_phone_width_has_no_horizontal_overflow_on_overview_events_and_a_run(
    live: Dashboard, page: Page, sign_in: Callable[..., None], shoot: Callable[[Page, str], Path]
) -> None:
    run_id = deliver(live, {"ref": unique("refs/heads/phone"), "fail": True})["runs"][0]["id"]
    sign_in(live)
    page.set_viewport_size(PHONE)
    assert page.evaluate("window.innerWidth") == PHONE["width"]
    page.goto(f"{live.ui}/")
    expect(page.locator("#overview")).to_be_visible()
    assert overflows(page) <= 1, f"the overview is {overflows(page)} px wider than a phone"

    page.goto(f"{live.ui}/runs/{run_id}")
    expect(fact(page, "#run-state", "Status")).to_have_text("failed", timeout=SETTLE)
    page.locator("ol.attempts summary", has_text="Traceback").first.click()
    expect(page.locator("ol.attempts details pre").first).to_be_visible()
    assert overflows(page) <= 1, f"a run with its traceback open is {overflows(page)} px wider than a phone"

    page.goto(f"{live.ui}/events")
    rows = page.locator("#events-list tbody tr")
    expect(rows.first).to_be_visible()
    box = rows.first.bounding_box()
    assert box is not None and box["width"] <= PHONE["width"], box  # the table folds into cards
    assert overflows(page) <= 1, f"the events list is {overflows(page)} px wider than a phone"
    page.goto(f"{live.ui}/events?run_status=failed")  # a few cards, for the picture
    expect(rows.first).to_be_visible()
    assert overflows(page) <= 1, f"the filtered list is {overflows(page)} px wider than a phone"
    shoot(page, "dashboard-phone")


# -- 11. every other page ----------------------------------------------------------------------------------


def test_every_other_page_renders_with_its_figures_and_fits_1280_px(
    live: Dashboard, page: Page, sign_in: Callable[..., None], shoot: Callable[[Page, str], Path]
) -> None:
    """The pages no other test walks through: each renders (no console error, no blocked resource: the watch
    stays clean), shows what it is for, and is no wider than the window; each is photographed."""
    answer = deliver(live, {"ref": "refs/heads/main", "after": unique("pages"), "fail": True})
    live.deliver(push("forged"), delivery=unique("pages"), secret="rotated-wrongly", expect=401)
    sign_in(live)
    pages = [
        ("runs", "/runs?task=echo", "Runs", "#runs-list tbody tr"),
        ("replay", f"/events/{answer['event_id']}/replay", "Replay this event?", "text=echo-pushes"),
        ("bulk", "/bulk", "New bulk job", "form"),
        ("jobs", "/jobs", "Bulk jobs", "main"),
        ("rejections", "/rejections", "Rejections", "text=bad_signature"),
        ("tasks", "/tasks", "Tasks", "tbody tr:has-text('echo')"),
        ("workers", "/workers", "Workers", "tbody tr:has-text('live')"),
    ]
    for name, path, heading, shows in pages:
        page.goto(f"{live.ui}{path}")
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        expect(page.locator(shows).first).to_be_visible(timeout=SETTLE)
        assert overflows(page) <= 1, f"{path} is {overflows(page)} px wider than 1280"
        shoot(page, f"dashboard-{name}")


# -- 12. a slow page is asked for less often -------------------------------------------------------------

SLOW_NETWORK = """
window.__delays = [];
const realTimeout = window.setTimeout.bind(window);
window.setTimeout = (fn, ms, ...rest) => { window.__delays.push(ms); return realTimeout(fn, ms, ...rest); };
const realFetch = window.fetch.bind(window);
window.fetch = (...args) => new Promise((done) => realTimeout(done, 400)).then(() => realFetch(...args));
"""


def test_a_live_page_that_took_long_to_refresh_waits_ten_times_as_long_before_the_next(
    live: Dashboard, page: Page, sign_in: Callable[..., None]
) -> None:
    sign_in(live)
    page.add_init_script(SLOW_NETWORK)  # every refresh takes at least 400 ms from here on
    page.goto(f"{live.ui}/")
    deadline = time.monotonic() + SETTLE / 1000  # (wait_for_function evaluates a string: the CSP forbids it)
    while page.evaluate("window.__delays.length") < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    first, second = page.evaluate("window.__delays.slice(0, 2)")
    assert first == 2000, first  # the page's own period, before anything was fetched
    assert second >= 4000, second  # ten times the 400+ ms the refresh took

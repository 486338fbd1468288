"""The dashboard over a real store, in process: sign-in and sessions, every page rendered from real records,
scopes and CSRF on every form, escaping of hostile payloads, bad queries and forms, and no secret shown.
(The browser's view of it: tests/acceptance/dashboard/.)"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway.model import CANCELED, FAILED, Event, EventFilter, Headers, Payload, Run, RunFilter, Secret
from gateway.records.service import Service
from gateway.store.sqlite.store import SQLiteStore
from gateway.web.auth import AdminKey
from gateway.web.dashboard import create_dashboard
from tests.support.admin import SECRET, token
from tests.support.clock import Clock
from tests.support.records import finish, push_event, queued_run

pytestmark = pytest.mark.both_stores

FORM = {"content-type": "application/x-www-form-urlencoded"}
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@dataclass
class Ui:
    client: httpx.AsyncClient
    service: Service
    store: SQLiteStore
    clock: Clock
    woken: list[str]

    async def sign_in(self, *scopes: str, ttl: float = 3600) -> httpx.Response:
        login = await self.client.get("/ui/login")
        csrf = CSRF.search(login.text)
        assert csrf, login.text
        form = {
            "csrf": csrf.group(1),
            "token": token(scopes or ("read", "replay"), now=self.clock(), ttl=ttl),
        }
        return await self.client.post("/ui/login", data=form)

    async def csrf(self, path: str = "/ui/") -> str:
        page = await self.client.get(path)
        found = CSRF.search(page.text)
        assert found, page.text
        return found.group(1)

    async def post(
        self, path: str, form: dict[str, str] | None = None, *, csrf: str | None = "page"
    ) -> httpx.Response:
        """POST a form as a browser does (urlencoded, even when empty), with the page's CSRF token unless
        told otherwise (None: none)."""
        data = dict(form or {})
        if csrf == "page":
            data["csrf"] = await self.csrf()
        elif csrf is not None:
            data["csrf"] = csrf
        return await self.client.post(path, content=urlencode(data), headers=FORM)

    async def seed(self, *, payload: Any = None, name: str = "seed") -> tuple[Event, Run]:
        event = push_event(name, self.clock() - 600, content_type="application/json")
        if payload is not None:
            body = json.dumps(payload).encode()
            event = Event(**{**_fields(event), "body": body, "payload": Payload("json", payload)})
        run = queued_run(name, event)
        await self.store.record(event, [run])
        return event, run


def _fields(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


@pytest.fixture
async def make_ui(
    load_config: Callable[..., Any], open_store: Callable[..., Any]
) -> AsyncIterator[Callable[..., Any]]:
    clients: list[httpx.AsyncClient] = []

    async def make(trace_url: str | None = None) -> Ui:
        store = await open_store()
        clock = Clock()
        service = Service(store, load_config(), clock=clock)
        woken: list[str] = []
        ui = create_dashboard(
            service,
            AdminKey("HS256", Secret(SECRET)),
            clock=clock,
            on_job=lambda: woken.append("job"),
            trace_url=trace_url,
        )
        app = Starlette(routes=[Mount("/ui", app=ui)])
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")
        clients.append(client)
        return Ui(client, service, store, clock, woken)

    yield make
    for client in clients:
        await client.aclose()


PAGES = [
    "/ui/",
    "/ui/events",
    "/ui/events/{event}",
    "/ui/events/{event}/replay",
    "/ui/runs",
    "/ui/runs/{run}",
    "/ui/runs/{run}/rerun",
    "/ui/bulk",
    "/ui/jobs",
    "/ui/jobs/{job}",
    "/ui/rejections",
    "/ui/tasks",
    "/ui/workers",
]


async def test_every_page_renders_for_a_signed_in_viewer_and_redirects_without_a_session(
    make_ui: Callable[..., Any],
) -> None:
    ui = await make_ui()
    event, run = await ui.seed()
    job = await ui.service.bulk.start_job(
        "rerun", __import__("gateway.model").model.RunFilter(task="deploy-preview"), requested_by="t"
    )
    for page in PAGES:
        path = page.format(event=event.id, run=run.id, job=job.id)
        anonymous = await ui.client.get(path)
        assert anonymous.status_code == 303, path
        assert anonymous.headers["location"].startswith("/ui/login?next="), path
    signed = await ui.sign_in()
    assert signed.status_code == 303
    for page in PAGES:
        path = page.format(event=event.id, run=run.id, job=job.id)
        answer = await ui.client.get(path)
        assert answer.status_code == 200, (path, answer.text[:2000])
        assert "script-src 'self'" in answer.headers["content-security-policy"]


# -- signing in, sessions, cookies ---------------------------------------------------------------------


async def test_sign_in_sets_a_strict_http_only_cookie_that_ends_with_the_token(
    make_ui: Callable[..., Any],
) -> None:
    ui = await make_ui()
    answer = await ui.sign_in("read", ttl=600)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("gateway_session="))
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert "httponly" in attributes and "secure" not in attributes
    assert attributes["samesite"].strip().lower() == "samesite=strict"
    assert attributes["path"].strip() == "Path=/"
    assert attributes["max-age"].strip() == "Max-Age=600"
    assert (await ui.client.get("/ui/")).status_code == 200

    ui.clock.advance(
        600 + 11
    )  # past exp and its 10 s of leeway: the session ended, whatever the browser keeps
    expired = await ui.client.get("/ui/events?source=github")
    assert expired.status_code == 303
    assert expired.headers["location"] == "/ui/login?next=%2Fui%2Fevents%3Fsource%3Dgithub&why=expired"
    assert 'gateway_session=""' in expired.headers["set-cookie"]  # forgotten


async def test_behind_an_https_proxy_the_cookie_is_secure_and_host_prefixed(
    make_ui: Callable[..., Any],
) -> None:
    ui = await make_ui()
    proxied = await ui.client.get("/ui/login", headers={"X-Forwarded-Proto": "https"})
    nonce = next(c for c in proxied.headers.get_list("set-cookie") if c.startswith("gateway_login="))
    assert "Secure" in nonce and "HttpOnly" in nonce  # the proxy said https: so is the browser
    login = await ui.client.get("https://gateway.test/ui/login")
    csrf = CSRF.search(login.text)
    assert csrf is not None
    form = {"csrf": csrf.group(1), "token": token(("read",), now=ui.clock())}
    answer = await ui.client.post("https://gateway.test/ui/login", data=form)
    assert answer.status_code == 303
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "gateway_session=" in c)
    assert cookie.startswith("__Host-gateway_session=") and "Secure" in cookie and "Domain" not in cookie
    assert (await ui.client.get("https://gateway.test/ui/")).status_code == 200
    assert (await ui.client.get("http://gateway.test/ui/")).status_code == 303  # not sent over http


@pytest.mark.parametrize(
    ("given", "status", "says"),
    [
        ("not-a-jwt", 401, "token"),
        ("expired", 401, "expired"),
        ("other-secret", 401, "signature"),
        ("trigger-only", 403, "read"),
        ("", 401, "token"),
    ],
)
async def test_a_bad_token_at_sign_in_is_refused_with_why_and_no_cookie(
    make_ui: Callable[..., Any], given: str, status: int, says: str
) -> None:
    ui = await make_ui()
    value = {
        "expired": token(("read",), now=ui.clock() - 7200, ttl=60),
        "other-secret": token(("read",), secret="Zb7nR2kW9qL4xT6yU1iO3pA8sD5fG0hJ2kM7nB4vC", now=ui.clock()),
        "trigger-only": token(("trigger",), now=ui.clock()),
    }.get(given, given)
    login = await ui.client.get("/ui/login")
    csrf = CSRF.search(login.text)
    assert csrf is not None
    answer = await ui.client.post("/ui/login", data={"csrf": csrf.group(1), "token": value})
    assert answer.status_code == status
    assert says in answer.text.lower()
    assert "gateway_session=" not in answer.headers.get("set-cookie", "")
    assert value not in answer.text or not value  # the pasted token is never echoed back
    assert (await ui.client.get("/ui/")).status_code == 303


async def test_the_login_form_needs_its_own_nonce_cookie(make_ui: Callable[..., Any]) -> None:
    ui = await make_ui()
    login = await ui.client.get("/ui/login")
    csrf = CSRF.search(login.text)
    assert csrf is not None
    ui.client.cookies.clear()  # a form posted from elsewhere: the browser has no nonce for it
    answer = await ui.client.post("/ui/login", data={"csrf": csrf.group(1), "token": token(now=ui.clock())})
    assert answer.status_code == 403
    assert "gateway_session=" not in answer.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    "target",
    ["//evil.example/ui/", "https://evil.example/", "/\\evil.example", "/api/events", "javascript:alert(1)"],
)
async def test_sign_in_never_redirects_off_the_dashboard(make_ui: Callable[..., Any], target: str) -> None:
    ui = await make_ui()
    login = await ui.client.get("/ui/login", params={"next": target})
    csrf = CSRF.search(login.text)
    assert csrf is not None
    form = {"csrf": csrf.group(1), "token": token(now=ui.clock()), "next": target}
    answer = await ui.client.post("/ui/login", data=form)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/"


async def test_sign_out_ends_the_session_and_needs_the_csrf_token(make_ui: Callable[..., Any]) -> None:
    ui = await make_ui()
    await ui.sign_in("read")
    refused = await ui.post("/ui/logout", csrf=None)
    assert refused.status_code == 403
    out = await ui.post("/ui/logout")
    assert out.status_code == 303 and out.headers["location"].startswith("/ui/login")
    assert (await ui.client.get("/ui/")).status_code == 303


async def test_static_files_need_no_session_and_carry_the_policy(make_ui: Callable[..., Any]) -> None:
    ui = await make_ui()
    for name, kind in (("dashboard.css", "text/css"), ("dashboard.js", "text/javascript")):
        answer = await ui.client.get(f"/ui/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert (await ui.client.get("/ui/static/../app.py")).status_code == 404
    assert (await ui.client.get("/ui/static/secret.txt")).status_code == 404


# -- scopes and CSRF on every form ------------------------------------------------------------------------

FORMS = [
    ("/ui/events/{event}/replay", {}),
    ("/ui/runs/{run}/rerun", {"input": "original"}),
    ("/ui/runs/{run}/cancel", {}),
    ("/ui/bulk/preview", {"kind": "rerun"}),
    ("/ui/bulk", {"kind": "rerun"}),
]


@pytest.mark.parametrize(("path", "form"), FORMS)
async def test_every_form_refuses_a_read_token_a_missing_or_foreign_csrf_and_no_session(
    make_ui: Callable[..., Any], path: str, form: dict[str, str]
) -> None:
    ui = await make_ui()
    event, run = await ui.seed()
    path = path.format(event=event.id, run=run.id)
    before = (await ui.store.reads.count_events(), await ui.store.reads.count_runs())

    anonymous = await ui.client.post(path, data={**form, "csrf": "0" * 64})
    assert anonymous.status_code == 401

    await ui.sign_in("read", "replay")
    assert (await ui.post(path, form, csrf=None)).status_code == 403
    assert (await ui.post(path, form, csrf="f" * 64)).status_code == 403
    other = await make_ui()  # another session's CSRF token (another token): not this session's
    await other.sign_in("read", "replay")
    assert (await ui.post(path, form, csrf=await other.csrf())).status_code == 403

    await ui.sign_in("read")
    forged = await ui.post(path, form)  # a read session's own valid CSRF token: still no replay scope
    assert forged.status_code == 403 and "replay scope" in forged.text
    assert (await ui.store.reads.count_events(), await ui.store.reads.count_runs()) == before
    assert (await ui.store.reads.get_run(run.id)).status == "queued"


async def test_a_form_from_one_gateway_is_accepted_by_another_over_the_same_store(
    make_ui: Callable[..., Any],
) -> None:
    """Several gateways behind one load balancer (or one restarted between page and submit): the CSRF token
    is the session's, not a process's, so the form works wherever it lands."""
    ui = await make_ui()
    _, run = await ui.seed()
    await ui.sign_in("read", "replay")
    csrf = await ui.csrf()
    twin = create_dashboard(ui.service, AdminKey("HS256", Secret(SECRET)), clock=ui.clock)
    app = Starlette(routes=[Mount("/ui", app=twin)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test", cookies=ui.client.cookies
    ) as elsewhere:
        canceled = await elsewhere.post(
            f"/ui/runs/{run.id}/cancel", content=urlencode({"csrf": csrf}), headers=FORM
        )
    assert canceled.status_code == 303
    assert (await ui.store.reads.get_run(run.id)).status == CANCELED


async def test_a_read_token_sees_everything_but_no_action_control(make_ui: Callable[..., Any]) -> None:
    ui = await make_ui()
    event, run = await ui.seed()
    await ui.sign_in("read")
    pages = [
        await ui.client.get(p)
        for p in (f"/ui/events/{event.id}", f"/ui/runs/{run.id}", "/ui/jobs", "/ui/bulk")
    ]
    assert all(p.status_code == 200 for p in pages)
    html = "".join(p.text for p in pages)
    assert event.id in html and run.id in html and "(read only)" in html
    for control in ('/replay"', "/rerun", "/cancel", "Count (dry run)", 'href="/ui/bulk"'):
        assert control not in html, control
    await ui.sign_in("read", "replay")
    full = (await ui.client.get(f"/ui/runs/{run.id}")).text + (
        await ui.client.get(f"/ui/events/{event.id}")
    ).text
    assert "Cancel run" in full and "Replay…" in full


# -- what the forms do ------------------------------------------------------------------------------------


async def test_replay_confirms_what_it_would_create_then_records_a_linked_event(
    make_ui: Callable[..., Any],
) -> None:
    ui = await make_ui()
    event, _ = await ui.seed()
    await ui.sign_in()
    confirm = await ui.client.get(f"/ui/events/{event.id}/replay")
    assert "deploy-on-push" in confirm.text and "deploy-preview" in confirm.text
    assert await ui.store.reads.count_events() == 1  # the confirmation recorded nothing
    done = await ui.post(f"/ui/events/{event.id}/replay")
    assert done.status_code == 303
    new_id = done.headers["location"].rsplit("/", 1)[1]
    replay = await ui.store.reads.get_event(new_id)
    assert replay is not None and replay.replay_of == event.id
    page = await ui.client.get(done.headers["location"])
    assert f"/ui/events/{event.id}" in page.text and "deploy-preview" in page.text


async def test_a_failed_runs_page_shows_its_error_as_an_error_not_as_output(
    make_ui: Callable[..., Any],
) -> None:
    ui = await make_ui()
    _, run = await ui.seed()
    await finish(ui.store, [run.id], at=ui.clock(), outcome=FAILED)
    await ui.sign_in()
    page = await ui.client.get(f"/ui/runs/{run.id}")
    assert page.status_code == 200
    section = page.text[page.text.index('<section aria-labelledby="h-output">') :]
    section = section[: section.index("</section>")]
    assert '<h2 id="h-output">Error</h2>' in section and "Output" not in section
    assert "<b>RuntimeError</b>: the API said 503" in section
    assert "{" not in section  # no JSON dump of the error: it had no fields beyond type and message


async def test_rerun_with_edited_input_keeps_bad_json_in_the_editor_and_runs_good_json(
    make_ui: Callable[..., Any],
) -> None:
    ui = await make_ui()
    _, run = await ui.seed()
    await finish(ui.store, [run.id], at=ui.clock(), outcome=FAILED)
    await ui.sign_in()
    typed = '{"repo": "o/r", "sha": <b>"x"'
    bad = await ui.post(f"/ui/runs/{run.id}/rerun", {"input": "edited", "payload": typed})
    assert bad.status_code == 400 and "not valid JSON" in bad.text
    assert "{&#34;repo&#34;: &#34;o/r&#34;, &#34;sha&#34;: &lt;b&gt;&#34;x&#34;" in bad.text  # kept, escaped
    assert await ui.store.reads.count_runs() == 1
    good = await ui.post(
        f"/ui/runs/{run.id}/rerun", {"input": "edited", "payload": '{"repo": "o/r", "sha": "fixed"}'}
    )
    assert good.status_code == 303
    rerun = await ui.store.reads.get_run(good.headers["location"].rsplit("/", 1)[1])
    assert rerun is not None and rerun.rerun_of == run.id and rerun.input == {"repo": "o/r", "sha": "fixed"}


async def test_cancel_a_queued_run_and_a_clear_409_for_a_finished_one(make_ui: Callable[..., Any]) -> None:
    ui = await make_ui()
    _, run = await ui.seed()
    await ui.sign_in()
    assert (await ui.post(f"/ui/runs/{run.id}/cancel")).status_code == 303
    assert (await ui.store.reads.get_run(run.id)).status == CANCELED
    again = await ui.post(f"/ui/runs/{run.id}/cancel")
    assert again.status_code == 409 and "Not possible now" in again.text


async def test_bulk_dry_run_counts_then_the_job_starts_and_wakes_the_worker(
    make_ui: Callable[..., Any],
) -> None:
    ui = await make_ui()
    for n in range(3):
        await ui.seed(name=f"b{n}")
    await ui.sign_in()
    form = {"kind": "replay", "source": "github", "since": "1h"}
    preview = await ui.post("/ui/bulk/preview", form)
    assert preview.status_code == 200
    assert '<b id="preview-count">3</b>' in preview.text
    assert (
        'name="since" value="1h"' not in preview.text
    )  # the instant counted, not "an hour before the start"
    assert ui.woken == []
    hidden = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', preview.text))
    started = await ui.client.post("/ui/bulk", data=hidden)
    assert started.status_code == 303 and ui.woken == ["job"]
    job = await ui.service.bulk.job(started.headers["location"].rsplit("/", 1)[1])
    assert job.total == 3 and isinstance(job.filter, EventFilter) and job.filter.source == "github"
    page = await ui.client.get(started.headers["location"])
    assert "<progress" in page.text and "data-poll" in page.text

    bad = await ui.post("/ui/bulk/preview", {"kind": "everything"})
    assert bad.status_code == 400 and "kind" in bad.text


async def test_cancel_a_running_bulk_job_once_then_a_clear_409(make_ui: Callable[..., Any]) -> None:
    ui = await make_ui()
    await ui.seed()
    job = await ui.service.bulk.start_job("rerun", RunFilter(task="deploy-preview"), requested_by="t")
    path = f"/ui/jobs/{job.id}/cancel"
    assert (await ui.client.post(path, data={"csrf": "0" * 64})).status_code == 401
    await ui.sign_in("read")
    refused = await ui.post(path)
    assert refused.status_code == 403 and "replay scope" in refused.text
    await ui.sign_in("read", "replay")
    assert (await ui.post(path, csrf=None)).status_code == 403
    assert (await ui.service.bulk.job(job.id)).status == "running"

    canceled = await ui.post(path)
    assert canceled.status_code == 303 and canceled.headers["location"] == f"/ui/jobs/{job.id}"
    assert (await ui.service.bulk.job(job.id)).status == CANCELED
    page = await ui.client.get(f"/ui/jobs/{job.id}")
    assert "Cancel job" not in page.text and "data-poll" not in page.text  # final: no control, no polling
    again = await ui.post(path)
    assert again.status_code == 409 and "only running jobs can be canceled" in again.text


# -- escaping, secrets, bad input ------------------------------------------------------------------------

HOSTILE = '</pre><script>alert(1)</script><img src=x onerror="alert(2)">'


async def test_a_hostile_payload_renders_as_text_everywhere(make_ui: Callable[..., Any]) -> None:
    ui = await make_ui()
    event, _ = await ui.seed(payload={"ref": HOSTILE, "after": HOSTILE})
    await ui.store.record(
        Event(**{**_fields(event), "id": "evt_h2", "event_type": HOSTILE, "dedupe_key": HOSTILE}), []
    )
    await ui.sign_in()
    for path in (f"/ui/events/{event.id}", f"/ui/events/{event.id}?raw=1", "/ui/events", "/ui/events/evt_h2"):
        html = (await ui.client.get(path)).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path


async def test_no_secret_reaches_a_page(make_ui: Callable[..., Any]) -> None:
    ui = await make_ui()
    event, _ = await ui.seed()
    headers = Headers(
        [("Authorization", "[redacted]"), ("X-Hub-Signature-256", "sha256=abc"), ("X-GitHub-Event", "push")]
    )
    await ui.store.record(Event(**{**_fields(event), "id": "evt_s", "headers": headers}), [])
    session = await ui.sign_in()
    pasted = session.request.content.decode()
    html = ""
    for page in [*PAGES[:7], "/ui/events/evt_s"]:
        html += (await ui.client.get(page.format(event=event.id, run="run_seed", job="x"))).text
    for secret in ("gh-secret", "whsec_new_stripe_secret", "acme-secret", SECRET):
        assert secret not in html
    assert pasted.split("token=")[1] not in html  # the session's own token is never rendered
    shown = (await ui.client.get("/ui/events/evt_s")).text
    assert "sha256=abc" not in shown and "signature, not shown" in shown  # a copied one could be replayed
    assert "[redacted]" in shown and ">push<" in shown  # a credential says so; other headers as they came


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("bogus=1", "bogus"),
        ("since=yesterday", "since: expected an ISO-8601 time"),
        ("status=routed&status=unrouted", "given more than once"),
        ("status=rooted", "did you mean 'routed'"),
        ("cursor=not-a-cursor", "cursor"),
    ],
)
async def test_a_bad_listing_query_is_a_400_page_that_says_what_is_wrong(
    make_ui: Callable[..., Any], query: str, says: str
) -> None:
    ui = await make_ui()
    await ui.sign_in("read")
    answer = await ui.client.get(f"/ui/events?{query}")
    assert answer.status_code == 400
    assert says in answer.text.replace("&#39;", "'")


async def test_unknown_records_and_paths_are_404_pages_and_bad_forms_are_refused(
    make_ui: Callable[..., Any],
) -> None:
    ui = await make_ui()
    await ui.sign_in()
    for path in ("/ui/events/evt_nope", "/ui/runs/run_nope", "/ui/jobs/job_nope", "/ui/nothing"):
        answer = await ui.client.get(path)
        assert answer.status_code == 404 and "text/html" in answer.headers["content-type"], path
    csrf = await ui.csrf()
    as_json = await ui.client.post("/ui/bulk/preview", json={"csrf": csrf, "kind": "replay"})
    assert as_json.status_code == 400 and "form" in as_json.text
    twice = await ui.client.post(
        "/ui/bulk/preview",
        content=f"csrf={csrf}&kind=replay&kind=rerun",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert twice.status_code == 400 and "more than once" in twice.text
    huge = await ui.client.post(
        "/ui/bulk/preview",
        content=b"csrf=" + b"a" * 2_000_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 413
    not_utf8 = await ui.client.post(
        "/ui/bulk/preview",
        content=b"csrf=\xff\xfe",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert not_utf8.status_code == 400


async def test_search_finds_an_event_by_its_dedupe_key_and_by_a_run_id(make_ui: Callable[..., Any]) -> None:
    ui = await make_ui()
    event, run = await ui.seed()
    await ui.store.record(Event(**{**_fields(event), "id": "evt_k", "dedupe_key": "delivery-42"}), [])
    await ui.sign_in("read")
    by_key = (await ui.client.get("/ui/events", params={"q": "delivery-42"})).text
    assert "/ui/events/evt_k" in by_key and f'/ui/events/{event.id}"' not in by_key
    by_run = (await ui.client.get("/ui/events", params={"q": run.id})).text
    assert f"/ui/events/{event.id}" in by_run and "/ui/events/evt_k" not in by_run


async def test_a_configured_trace_ui_links_the_run_trace_id(make_ui: Callable[..., Any]) -> None:
    ui = await make_ui(trace_url="http://jaeger.example/trace/{trace_id}")
    event, run = await ui.seed()
    traced = Run(
        **{
            **{n: getattr(run, n) for n in run.__dataclass_fields__},
            "id": "run_t",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        }
    )
    await ui.store.record(
        Event(**{**_fields(event), "id": "evt_t"}),
        [Run(**{**{n: getattr(traced, n) for n in traced.__dataclass_fields__}, "event_id": "evt_t"})],
    )
    await ui.sign_in("read")
    page = (await ui.client.get("/ui/runs/run_t")).text
    assert 'href="http://jaeger.example/trace/4bf92f3577b34da6a3ce929d0e0e4736"' in page

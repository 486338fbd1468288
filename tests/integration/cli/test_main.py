"""The CLI, called as ``main(argv)``: --version, check, sign, events, show, rejections, and bad input."""

from __future__ import annotations

import asyncio
import base64
import importlib.metadata
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import gateway
from gateway.cli.main import main
from gateway.routes import load as config_mod
from gateway.store.open import open_store
from tests.support.cli import deliver, run
from tests.support.deliveries import github_headers
from tests.support.repo import REPO
from tests.support.routes import ROUTES

pytestmark = pytest.mark.both_stores  # the tests on a database run on each store


def test_check_passes_on_the_sample_and_warns_about_dev_secrets() -> None:
    code, out, err = run("check", "--routes", str(REPO / "routes.yaml"))
    assert code == 0
    assert out.strip() == f"{REPO / 'routes.yaml'}: OK: 4 source(s), 6 route(s), 5 task(s)"
    assert (
        "WARNING: routes.yaml: sources.github.secret (${GITHUB_WEBHOOK_SECRET}): using the development" in err
    )


def test_check_prints_every_problem_and_exits_1(write_routes: Callable[..., Path]) -> None:
    path = write_routes(
        "tasks: [{module}]\nsources: {a: {verify: githb}}\nroutes: [{id: r, source: b, task: t}]\n"
    )
    code, _, err = run("check", "--routes", str(path))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("routes.yaml:2:15: sources.a.verify: ")
    assert lines[1] == "routes.yaml:3:18: routes[0].source: unknown source 'b' (known: a)"
    assert (
        lines[2]
        == "routes.yaml:3:29: routes[0].task: unknown task 't' (known: deploy-preview, record-payment, "
        "sync-subscription)"
    )


def test_routes_path_falls_back_to_the_environment(write_routes: Callable[..., Path]) -> None:
    path = write_routes()
    code, out, _ = run("check", env={"GATEWAY_ROUTES": str(path)})
    assert code == 0 and out.startswith(f"{path}: OK")


def test_help_names_the_environment_fallbacks(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("serve", "--help", env={"GATEWAY_PORT": "9001"})[0] == 0
    text = capsys.readouterr().out
    for name in ("GATEWAY_ROUTES", "GATEWAY_DB", "GATEWAY_HOST", "GATEWAY_PORT", "now: 9001"):
        assert name in text


def test_version_prints_the_distribution_and_its_version(capsys: pytest.CaptureFixture[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["--version"], env={}, out=out, err=err) == 0
    # argparse's version action prints to sys.stdout itself, not to the stream main() was given.
    assert capsys.readouterr().out.splitlines() == [f"hookgate {gateway.__version__}"]
    assert out.getvalue() == err.getvalue() == ""


def test_the_installed_distribution_has_the_package_version() -> None:
    # pyproject.toml takes its version from gateway/__init__.py; a mismatch means a stale install (reinstall
    # with pip install -e .) or a static version back in pyproject.toml.
    assert importlib.metadata.version("hookgate") == gateway.__version__


def parse_headers(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.strip().splitlines())


def test_sign_prints_headers_the_gateway_accepts(write_routes: Callable[..., Path], tmp_path: Path) -> None:
    routes = write_routes()
    body = tmp_path / "push.json"
    body.write_bytes(b'{"ref": "refs/heads/main", "after": "1", "repository": {"full_name": "o/r"}}')
    code, out, err = run("sign", "github", "--body", str(body), "--event", "push", "--routes", str(routes))
    assert code == 0, err
    headers = parse_headers(out)
    assert set(headers) == {"X-Hub-Signature-256", "X-GitHub-Event", "X-GitHub-Delivery", "Content-Type"}
    assert "gh-secret" not in out
    [response] = deliver(
        config_mod.load(routes, {}), tmp_path / "g.db", [("/hooks/github", body.read_bytes(), headers)]
    )
    assert response.status_code == 202
    assert [r["task"] for r in response.json()["runs"]] == ["deploy-preview", "record-payment"]


@pytest.mark.parametrize("source", ["stripe", "billing", "acme"])
def test_sign_works_for_every_scheme(write_routes: Callable[..., Path], tmp_path: Path, source: str) -> None:
    routes = write_routes()
    body = tmp_path / "b.json"
    body.write_bytes(b'{"id": "evt_9", "type": "invoice.paid"}')
    code, out, err = run("sign", source, "--body", str(body), "--routes", str(routes))
    assert code == 0, err
    [response] = deliver(
        config_mod.load(routes, {}),
        tmp_path / "g.db",
        [(f"/hooks/{source}", body.read_bytes(), parse_headers(out))],
    )
    assert response.status_code == 202, response.text


def test_sign_reports_unknown_sources_and_unreadable_bodies(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    routes = str(write_routes())
    assert (
        f"{routes}: no source named 'gitlab' (known: github, stripe, billing, acme, open)\n"
        in run("sign", "gitlab", "--body", "x", "--routes", routes)[2]
    )
    code, _, err = run("sign", "github", "--body", str(tmp_path / "missing.json"), "--routes", routes)
    assert code == 1
    assert (
        err.splitlines()[-1] == f"--body: cannot read {tmp_path / 'missing.json'}: No such file or directory"
    )


@pytest.fixture
def populated(write_routes: Callable[..., Path], database: Path | str) -> tuple[Path | str, list[Any]]:
    config = config_mod.load(write_routes(), {})
    body = b'{"ref": "refs/heads/main", "after": "1", "repository": {"full_name": "o/r"}}'
    good = github_headers(body, delivery="d1")
    db = database
    responses = deliver(
        config,
        db,
        [
            ("/hooks/github", body, good),
            ("/hooks/open", b"hello", {"Content-Type": "text/plain"}),
            ("/hooks/github", body, {**good, "X-Hub-Signature-256": "sha256=" + "0" * 64}),
        ],
    )
    return db, responses


def test_events_lists_newest_first_with_filters(populated: tuple[Path | str, list[Any]]) -> None:
    db, responses = populated
    code, out, _ = run("events", "--db", str(db), "--json")
    rows = json.loads(out)["data"]
    assert code == 0
    assert [r["id"] for r in rows] == [responses[1].json()["event_id"], responses[0].json()["event_id"]]
    code, out, _ = run("events", "--db", str(db), "--source", "github", "--status", "routed", "--since", "1h")
    assert code == 0
    assert out.splitlines()[0].split() == [
        "ID",
        "RECEIVED_AT",
        "SOURCE",
        "EVENT_TYPE",
        "STATUS",
        "VERIFICATION",
        "REPLAY_OF",
    ]
    assert len(out.splitlines()) == 2 and "verified:github" in out
    assert run("events", "--db", str(db), "--since", "2999-01-01T00:00:00")[1].strip() == "no events"


def test_show_prints_the_event_and_its_runs(populated: tuple[Path | str, list[Any]]) -> None:
    db, responses = populated
    event_id = responses[0].json()["event_id"]
    code, out, _ = run("show", event_id, "--db", str(db))
    assert code == 0
    assert f"event        {event_id}" in out
    assert "deploy-preview" in out and "queued" in out
    detail = json.loads(run("show", event_id, "--db", str(db), "--json")[1])
    assert detail["payload"]["repository"] == {"full_name": "o/r"}
    assert sorted(r["task"] for r in detail["runs"]) == ["deploy-preview", "record-payment"]
    assert "_text" not in detail


def test_rejections_are_listed(populated: tuple[Path | str, list[Any]]) -> None:
    db, _ = populated
    rows = json.loads(run("rejections", "--db", str(db), "--json")[1])["data"]
    assert [(r["source"], r["reason"]) for r in rows] == [("github", "bad_signature")]


def test_read_commands_report_bad_input(tmp_path: Path, populated: tuple[Path | str, list[Any]]) -> None:
    db, _ = populated
    assert run("show", "evt_nope", "--db", str(db))[:3:2] == (
        1,
        "gateway show: no event with id 'evt_nope'\n",
    )
    code, _, err = run("events", "--db", str(db), "--cursor", "garbage")
    assert (code, err.strip()) == (
        2,
        "gateway events: --cursor: not a cursor this gateway handed out "
        "(pass the previous page's `next` as it is)",
    )
    assert run("events", "--db", str(db), "--limit", "0")[:3:2] == (
        2,
        "gateway events: --limit: expected a whole number from 1 to 500, got 0\n",
    )
    code, _, err = run("events", "--db", str(tmp_path / "none.db"))
    assert code == 1 and err.startswith(f"no database at {tmp_path / 'none.db'}")
    code, _, err = run("events", "--db", str(db), "--since", "yesterday")
    assert (code, err.strip()) == (
        2,
        "gateway events: --since: expected a duration like 30m, 24h, 7d or an ISO time, got 'yesterday'",
    )
    assert run("events", "--status", "weird")[0] == 2
    assert run()[0] == 2


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


CRAFTED = {
    "a number past a float": _cursor("[1" + "0" * 400 + ', "x"]'),
    "not base64": "!!!",
    "base64 of no JSON": _cursor("nope"),
    "a list of three": _cursor('[1, "x", 2]'),
    "a boolean time": _cursor('[true, "x"]'),
    "NaN": _cursor('[NaN, "x"]'),
    "nested deep": _cursor("[" * 5000),
}
REJECTION_IDS = {
    "a superscript two": _cursor('[1, "\u00b2"]'),
    "4,301 digits": _cursor('[1, "' + "9" * 4301 + '"]'),
    "past a database integer": _cursor('[1, "' + "9" * 19 + '"]'),
    "not a number": _cursor('[1, "evt_1"]'),
}


@pytest.mark.parametrize("command", ["events", "runs", "rejections"])
@pytest.mark.parametrize("cursor", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_cursor_is_a_usage_error_on_every_listing(
    populated: tuple[Path | str, list[Any]], command: str, cursor: str
) -> None:
    db, _ = populated
    code, out, err = run(command, "--db", str(db), "--cursor", cursor)
    assert (code, out) == (2, "")
    assert err.startswith(f"gateway {command}: --cursor: not a cursor"), err
    assert "Traceback" not in err


@pytest.mark.parametrize("cursor", REJECTION_IDS.values(), ids=REJECTION_IDS.keys())
def test_a_rejections_cursor_must_hold_an_id_the_database_can(
    populated: tuple[Path | str, list[Any]], cursor: str
) -> None:
    db, _ = populated
    code, _, err = run("rejections", "--db", str(db), "--cursor", cursor)
    assert code == 2  # 4,301 digits is past any cursor's length; the others name the listing
    assert err.strip() in (
        "gateway rejections: --cursor: not a cursor of the rejections listing",
        "gateway rejections: --cursor: not a cursor this gateway handed out "
        "(pass the previous page's `next` as it is)",
    )


def test_the_cursor_a_listing_hands_out_is_taken(populated: tuple[Path | str, list[Any]]) -> None:
    db, _ = populated
    page = json.loads(run("events", "--db", str(db), "--json", "--limit", "1")[1])
    assert page["next_cursor"] is not None
    code, out, _ = run("events", "--db", str(db), "--json", "--limit", "1", "--cursor", page["next_cursor"])
    assert code == 0 and json.loads(out)["data"] != page["data"]


def execute(config: config_mod.Config, db: Path | str) -> None:
    from gateway.execution.executor import Executor

    async def go() -> None:
        store = await open_store(db)
        try:
            await Executor(store.runs, config.tasks).run_once()
        finally:
            await store.close()

    asyncio.run(go())


FAILING_TASKS = """
from gateway import task

@task(id="deploy-preview", retry={"max_attempts": 1})
async def deploy_preview(payload, ctx):
    ctx.log.info("deploying %s", payload["repo"])
    raise RuntimeError("deploy API answered 500")

@task(id="record-payment")
async def record_payment(payload, ctx):
    return {"ok": True}

@task(id="sync-subscription")
def sync_subscription(payload, ctx):
    return payload
"""


def test_runs_show_and_cancel(write_routes: Callable[..., Path], database: Path | str) -> None:
    routes = write_routes(ROUTES, FAILING_TASKS)
    config = config_mod.load(routes, {})
    db = database
    body = b'{"ref": "refs/heads/main", "after": "1", "repository": {"full_name": "o/r"}}'
    headers = github_headers(body, delivery="d1")
    [response] = deliver(config, db, [("/hooks/github", body, headers)])
    runs = {r["task"]: r["id"] for r in response.json()["runs"]}

    # Before execution: both queued; one is canceled.
    code, out, _ = run("runs", "--db", str(db), "--status", "queued", "--json")
    assert code == 0 and {r["status"] for r in json.loads(out)["data"]} == {"queued"}
    assert run("cancel", runs["record-payment"], "--db", str(db))[:2] == (
        0,
        f"run {runs['record-payment']} canceled\n",
    )
    execute(config, db)

    rows = json.loads(run("runs", "--db", str(db), "--json")[1])["data"]
    assert {r["task"]: r["status"] for r in rows} == {
        "deploy-preview": "failed",
        "record-payment": "canceled",
    }
    assert run("runs", "--db", str(db), "--task", "nope")[1].strip() == "no runs"
    table = run("runs", "--db", str(db), "--status", "failed")[1].splitlines()
    assert table[0].split()[:4] == ["ID", "CREATED_AT", "TASK", "STATUS"] and len(table) == 2

    code, text, _ = run("show", runs["deploy-preview"], "--db", str(db))
    assert code == 0
    assert "status       failed" in text
    assert "error        RuntimeError: deploy API answered 500" in text
    assert "info    deploying o/r" in text
    assert "RuntimeError: deploy API answered 500" in text.split("attempt 1")[1]  # the traceback is shown
    detail = json.loads(run("show", runs["deploy-preview"], "--db", str(db), "--json")[1])
    [attempt] = detail["attempt_history"]
    assert (attempt["outcome"], attempt["error_type"], attempt["logs"][0]["message"]) == (
        "failed",
        "RuntimeError",
        "deploying o/r",
    )
    assert detail["input"] == {"repo": "o/r", "sha": "1"}

    code, _, err = run("cancel", runs["deploy-preview"], "--db", str(db))
    assert (code, err) == (
        1,
        f"gateway cancel: run {runs['deploy-preview']} is failed: "
        "only queued or retrying runs can be canceled\n",
    )
    assert run("cancel", "run_nope", "--db", str(db))[::2] == (
        1,
        "gateway cancel: no run with id 'run_nope'\n",
    )
    assert run("show", "run_nope", "--db", str(db))[::2] == (1, "gateway show: no run with id 'run_nope'\n")
    assert run("runs", "--db", str(db), "--status", "weird")[0] == 2

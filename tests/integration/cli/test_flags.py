"""What each command needs of routes.yaml (cli/flags.py's load_config): serve and check every source's secret,
sign its own source's, the commands on stored records none; and the warnings each shows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.routes import load as config_mod
from tests.support.cli import deliver, run
from tests.support.deliveries import github_headers, push
from tests.support.routes import ROUTES

# acme's secret comes from a variable that is not set where the commands below run.
UNSET = ROUTES.replace("sources:\n", "retention: 1h\nsources:\n", 1).replace(
    "secret: acme-secret", "secret: ${ACME_SECRET}"
)
MISSING = (
    "routes.yaml:16:5: sources.acme.secret: environment variable ACME_SECRET is not set "
    "(set it, or write ${ACME_SECRET:-default})"
)


@pytest.fixture
def stored(write_routes: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path, str]:
    """routes.yaml with acme's secret unset, and a database with one GitHub push: (routes, db, event id)."""
    routes = write_routes(UNSET)
    config = config_mod.load(routes, {"ACME_SECRET": "acme-secret"})  # as the gateway that recorded it had
    db = tmp_path / "gw.db"
    [response] = deliver(config, db, [("/hooks/github", push(), github_headers(push(), delivery="d-1"))])
    assert response.status_code == 202
    return routes, db, response.json()["event_id"]


def _run_id(db: Path) -> str:
    [first, *_] = json.loads(run("runs", "--db", str(db), "--json")[1])["data"]
    return str(first["id"])


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["replay", "{event}"], "replayed"),
        (["replay", "--source", "github"], "completed: 1 item(s)"),
        (["rerun", "{run}"], "reran"),
        (["routes", "test"], "routes this 1 event exactly as it was routed"),
        (["prune", "--dry-run"], "would remove 0 event(s)"),
    ],
)
def test_the_commands_on_stored_records_need_no_secret(
    stored: tuple[Path, Path, str], argv: list[str], shown: str
) -> None:
    routes, db, event = stored
    ids = {"{event}": event, "{run}": _run_id(db)}
    argv = [ids.get(a, a) for a in argv]
    code, out, err = run(*argv, "--routes", str(routes), "--db", str(db))
    assert code == 0, err
    assert shown in out
    assert "ACME_SECRET" not in err and "WARNING" not in err


def test_jobs_resume_needs_no_secret(stored: tuple[Path, Path, str]) -> None:
    routes, db, _ = stored
    # It gets past routes.yaml to the job itself.
    assert run("jobs", "job_nope", "--resume", "--routes", str(routes), "--db", str(db))[::2] == (
        1,
        "gateway jobs: no job with id 'job_nope'\n",
    )


def test_sign_needs_only_the_secret_of_its_source(stored: tuple[Path, Path, str], tmp_path: Path) -> None:
    routes, _, _ = stored
    body = tmp_path / "push.json"
    body.write_bytes(push())
    code, out, err = run("sign", "github", "--body", str(body), "--event", "push", "--routes", str(routes))
    assert (code, err) == (0, "")
    headers = dict(line.split(": ", 1) for line in out.splitlines())
    config = config_mod.load(routes, {"ACME_SECRET": "acme-secret"})
    [response] = deliver(config, tmp_path / "other.db", [("/hooks/github", body.read_bytes(), headers)])
    assert response.status_code == 202


def test_sign_for_the_source_whose_secret_is_unset_names_the_variable_and_prints_no_header(
    stored: tuple[Path, Path, str], tmp_path: Path
) -> None:
    routes, _, _ = stored
    body = tmp_path / "b.json"
    body.write_bytes(b"{}")
    # stdout stays empty, so `gateway sign acme ... > headers.txt` is not left with some of the headers
    assert run("sign", "acme", "--body", str(body), "--routes", str(routes)) == (1, "", MISSING + "\n")


def test_check_still_needs_every_secret(stored: tuple[Path, Path, str]) -> None:
    routes, _, _ = stored
    code, out, err = run("check", "--routes", str(routes))
    assert (code, out) == (1, "")
    assert err.splitlines() == [MISSING]


def test_sign_warns_only_about_its_own_source_and_check_about_every_one(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    routes = write_routes(
        ROUTES.replace("secret: gh-secret", "secret: ${GH_SECRET:-dev}").replace(
            "secret: acme-secret", "secret: ${ACME_SECRET:-dev}"
        )
    )
    body = tmp_path / "b.json"
    body.write_bytes(b"{}")
    github = (
        "WARNING: routes.yaml: sources.github.secret (${GH_SECRET}): using the development default; "
        "set the variable before real traffic"
    )
    acme = github.replace("github", "acme").replace("GH_SECRET", "ACME_SECRET")
    unverified = "WARNING: routes.yaml: sources.open: verify: none, deliveries are NOT verified"
    assert run("sign", "github", "--body", str(body), "--routes", str(routes))[2].splitlines() == [github]
    assert run("sign", "stripe", "--body", str(body), "--routes", str(routes))[2] == ""
    assert run("check", "--routes", str(routes))[2].splitlines() == [github, acme, unverified]

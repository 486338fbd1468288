"""`gateway replay --rejection ID` and `--rejections`, called as ``main(argv)``: a delivery signed with a
new secret is rejected, routes.yaml is fixed, and the replay stores and routes it once; a forgery stays
rejected."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from gateway.routes import load as config_mod
from tests.support.cli import deliver, run
from tests.support.database import rows
from tests.support.deliveries import PUSH, github_headers

ROUTES = """
tasks: [{module}]
sources:
  github: {verify: github, secret: SECRET}
routes:
  - id: deploy-on-push
    source: github
    event: push
    task: deploy-preview
"""


def test_a_rejected_delivery_is_stored_and_routed_once_after_the_secret_is_fixed(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    db = tmp_path / "gw.db"
    routes = write_routes(ROUTES.replace("SECRET", "gh-secret-before-the-rotation"))
    answers = deliver(
        config_mod.load(routes, {}),
        db,
        [
            ("/hooks/github", PUSH, github_headers(PUSH, delivery="d-1")),  # GitHub signs with gh-secret now
            ("/hooks/github", PUSH, github_headers(PUSH, secret="forged", delivery="d-2")),
        ],
    )
    assert [a.status_code for a in answers] == [401, 401]
    listed = json.loads(run("rejections", "--db", str(db), "--json")[1])["data"]
    genuine, forged = sorted(listed, key=lambda r: r["id"])
    assert genuine["replayable"] and forged["replayable"] and genuine["recovered_as"] is None
    assert "REPLAYABLE" in run("rejections", "--db", str(db))[1]
    base = ("--routes", str(routes), "--db", str(db))

    write_routes(ROUTES.replace("SECRET", "gh-secret"))  # the secret is fixed
    code, out, err = run("replay", "--rejections", "--source", "github", "--dry-run", *base)
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "would recover 1 of 2 kept rejection(s)"
    assert rows(db, "SELECT count(*) FROM events") == [(0,)]

    code, out, err = run("replay", "--rejection", str(genuine["id"]), *base)
    assert (code, err) == (0, ""), err
    [(event_id, dedupe_key)] = rows(db, "SELECT id, dedupe_key FROM events")
    [(task,)] = rows(db, "SELECT task_id FROM runs")
    assert out.startswith(f"rejection {genuine['id']}: verified (verified:github) and stored as {event_id}: ")
    assert (dedupe_key, task) == ("d-1", "deploy-preview")

    code, out, _ = run("replay", "--rejection", str(genuine["id"]), *base)  # once only
    assert code == 1 and "cannot be tried again: recovered already, at " in out and event_id in out
    code, out, _ = run("replay", "--rejection", str(forged["id"]), *base, "--json")
    assert code == 1
    assert json.loads(out) | {"detail": ""} == {
        "rejection_id": forged["id"],
        "source": "github",
        "outcome": "rejected",
        "event_id": None,
        "runs": [],
        "reason": "bad_signature",
        "detail": "",
    }
    code, out, _ = run("replay", "--rejections", *base)
    assert (
        code == 0 and out.splitlines()[-1] == "recovered 0 of 1 kept rejection(s): 0 stored, 0 duplicate(s)"
    )
    assert rows(db, "SELECT count(*) FROM events") == [(1,)]
    [shown] = [
        r
        for r in json.loads(run("rejections", "--db", str(db), "--json")[1])["data"]
        if r["id"] == genuine["id"]
    ]
    assert (shown["recovered_as"], shown["recovery"], shown["replayable"]) == (event_id, "stored", False)


def test_replay_refuses_event_flags_with_rejections_and_names_an_unknown_one(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    db = tmp_path / "gw.db"
    routes = write_routes(ROUTES.replace("SECRET", "gh-secret"))
    deliver(config_mod.load(routes, {}), db, [])
    base = ("--routes", str(routes), "--db", str(db))
    code, _, err = run("replay", "--rejections", "--type", "push", *base)
    assert code == 2 and "--type: not for rejected deliveries; leave it out" in err
    code, _, err = run("replay", "--rejection", "3", "--rejections", *base)
    assert code == 2 and "give --rejection ID or --rejections with filters, not both" in err
    code, _, err = run("replay", "--rejection", "77", *base)
    assert (code, err) == (1, "gateway replay: no rejection with id 77\n")

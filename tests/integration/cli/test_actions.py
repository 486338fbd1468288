"""The CLI's acting commands, called as ``main(argv)``: replay, rerun, jobs, routes test, prune, token."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.model import Headers, Inbound, Verdict
from gateway.routes import load as config_mod
from gateway.routes.ingest import admit
from gateway.store.open import open_store
from gateway.web import auth
from tests.support.cli import run
from tests.support.database import at as db_rows
from tests.support.routes import ROUTES

SECRET = "s" * 40
pytestmark = pytest.mark.both_stores
Setup = tuple[Path, Path | str, config_mod.Config]  # routes.yaml, the database (a file or an address), config


def populate(config: config_mod.Config, db: Path | str, n: int, *, at: float | None = None) -> list[str]:
    """Record ``n`` GitHub pushes to main (each routed to deploy-on-push and audit-pushes); their ids."""

    async def go() -> list[str]:
        store = await open_store(db)
        ids = []
        try:
            for i in range(n):
                body = json.dumps(
                    {"ref": "refs/heads/main", "after": str(i), "repository": {"full_name": "o/r"}}
                )
                request = Inbound(
                    "POST",
                    "http://gw/hooks/github",
                    Headers([("X-GitHub-Event", "push"), ("Content-Type", "application/json")]),
                    body.encode(),
                )
                now = (at or time.time()) + i * 0.001
                admission = admit(config, config.sources["github"], request, Verdict(True, "github"), now)
                ids.append((await store.record(admission.event, admission.runs)).event_id)
        finally:
            await store.close()
        return ids

    return asyncio.run(go())


@pytest.fixture
def setup(write_routes: Callable[..., Path], database: Path | str) -> Setup:
    routes = write_routes(ROUTES)
    config = config_mod.load(routes, {})
    return routes, database, config


def test_replay_one_event_links_both_ways(setup: Setup) -> None:
    routes, db, config = setup
    [event_id] = populate(config, db, 1)
    code, out, err = run("replay", event_id, "--routes", str(routes), "--db", str(db), "--json")
    assert (code, err) == (0, "")
    replayed = json.loads(out)
    assert replayed["replay_of"] == event_id
    assert sorted(r["task"] for r in replayed["runs"]) == ["deploy-preview", "record-payment"]
    shown = json.loads(run("show", replayed["event_id"], "--db", str(db), "--json")[1])
    assert shown["replay_of"] == event_id
    original = json.loads(run("show", event_id, "--db", str(db), "--json")[1])
    assert [r["id"] for r in original["replays"]] == [replayed["event_id"]]
    assert f"replays\n  {replayed['event_id']}  routed" in run("show", event_id, "--db", str(db))[1]


def test_bulk_replay_dry_run_then_real_replays_each_event_once(
    setup: Setup,
) -> None:
    routes, db, config = setup
    ids = populate(config, db, 7)
    code, out, _ = run("replay", "--source", "github", "--dry-run", "--routes", str(routes), "--db", str(db))
    assert code == 0
    assert out.splitlines() == ["would replay 7 event(s)", *[f"  {i}" for i in ids[:5]], "  … and 2 more"]
    assert db_rows(db, "SELECT count(*) FROM events") == [(7,)]  # a dry run writes nothing

    code, out, err = run("replay", "--source", "github", "--routes", str(routes), "--db", str(db))
    assert code == 0, err
    assert out.startswith("job job_") and out.strip().endswith("completed: 7 item(s), 14 run(s) queued")
    per_original = db_rows(
        db, "SELECT replay_of, count(*) FROM events WHERE replay_of IS NOT NULL GROUP BY 1"
    )
    assert sorted(per_original) == sorted((i, 1) for i in ids)
    [job] = json.loads(run("jobs", "--db", str(db), "--json")[1])
    assert (job["status"], job["done"], job["total"], job["created"]) == ("completed", 7, 7, 14)
    assert job["requested_by"].startswith("cli:")


def test_bulk_replay_leaves_out_replays_unless_asked_and_says_so(
    setup: Setup,
) -> None:
    routes, db, config = setup
    [pushed] = populate(config, db, 1)
    base = ("--source", "github", "--since", "1h", "--routes", str(routes), "--db", str(db))
    replayed = json.loads(run("replay", pushed, "--routes", str(routes), "--db", str(db), "--json")[1])

    code, out, _ = run("replay", *base, "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        "would replay 1 event(s), leaving out 1 replay(s) (--include-replays takes them too)",
        f"  {pushed}",
    ]
    dry = json.loads(run("replay", *base, "--dry-run", "--json")[1])
    assert dry == {"kind": "replay", "count": 1, "sample": [pushed], "replays_left_out": 1}
    taken = run("replay", *base, "--dry-run", "--include-replays")[1].splitlines()
    assert taken == ["would replay 2 event(s)", f"  {pushed}", f"  {replayed['event_id']}"]

    code, out, err = run("replay", *base)
    assert code == 0, err
    assert "replay of 1 event(s), leaving out 1 replay(s) (--include-replays takes them too)" in err
    assert out.strip().endswith("completed: 1 item(s), 2 run(s) queued")
    # One push, replayed once by hand and once in bulk: nothing replayed a replay.
    assert db_rows(db, "SELECT replay_of, count(*) FROM events WHERE replay_of IS NOT NULL GROUP BY 1") == [
        (pushed, 2)
    ]
    [job] = json.loads(run("jobs", "--db", str(db), "--json")[1])
    assert job["filter"]["include_replays"] is False

    code, _, err = run("replay", pushed, "--include-replays", "--routes", str(routes), "--db", str(db))
    assert code == 2 and "give an EVENT_ID or filters (a bulk replay), not both" in err


def test_events_lists_replays_with_their_originals(setup: Setup) -> None:
    routes, db, config = setup
    [pushed] = populate(config, db, 1)
    replayed = json.loads(run("replay", pushed, "--routes", str(routes), "--db", str(db), "--json")[1])
    listed = json.loads(run("events", "--db", str(db), "--json")[1])["data"]
    assert [(e["id"], e["replay_of"]) for e in listed] == [(replayed["event_id"], pushed), (pushed, None)]
    assert "REPLAY_OF" in run("events", "--db", str(db))[1]


def test_bulk_replay_filters_by_run_status(setup: Setup) -> None:
    routes, db, config = setup
    populate(config, db, 3)
    base = ("--routes", str(routes), "--db", str(db), "--dry-run")
    assert run("replay", "--status", "failed", *base)[1].splitlines()[0] == "would replay 0 event(s)"
    assert run("replay", "--status", "queued", *base)[1].splitlines()[0] == "would replay 3 event(s)"
    assert run("replay", "--status", "routed", "--type", "pull_request", *base)[1].startswith(
        "would replay 0 event(s)"
    )
    code, _, err = run("replay", "--status", "bogus", *base)
    assert code == 2 and "--status: expected routed, unrouted or a run status" in err


def test_rerun_with_an_edited_payload_and_bulk_rerun(setup: Setup, tmp_path: Path) -> None:
    routes, db, config = setup
    [event_id] = populate(config, db, 1)
    [run_id] = [r[0] for r in db_rows(db, "SELECT id FROM runs WHERE task_id = 'deploy-preview'")]
    edited = tmp_path / "edited.json"
    edited.write_text('{"repo": "o/r", "sha": "fixed"}')
    code, out, err = run("rerun", run_id, "--payload", str(edited), "--routes", str(routes), "--db", str(db))
    assert code == 0, err
    new_id = out.split()[3]
    assert out == f"reran {run_id} as {new_id} (deploy-preview), queued\n"
    assert db_rows(db, f"SELECT event_id, input, rerun_of FROM runs WHERE id = '{new_id}'") == [
        (event_id, '{"repo":"o/r","sha":"fixed"}', run_id)
    ]
    code, out, _ = run("rerun", "--task", "record-payment", "--routes", str(routes), "--db", str(db))
    assert code == 0 and out.strip().endswith("completed: 1 item(s), 1 run(s) queued")
    assert db_rows(db, "SELECT count(*) FROM runs WHERE rerun_of IS NOT NULL") == [(2,)]


def test_bad_replay_and_rerun_input_is_refused(setup: Setup, tmp_path: Path) -> None:
    routes, db, config = setup
    [event_id] = populate(config, db, 1)
    base = ("--routes", str(routes), "--db", str(db))
    code, _, err = run("replay", event_id, "--source", "github", *base)
    assert (code, err.strip()) == (2, "gateway replay: give an EVENT_ID or filters (a bulk replay), not both")
    code, _, err = run("rerun", "--payload", "x.json", *base)
    assert (code, err.strip()) == (2, "gateway rerun: --payload edits one run's input: give its RUN_ID")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    code, _, err = run("rerun", "run_x", "--payload", str(bad), *base)
    assert code == 2 and err.startswith(f"gateway rerun: --payload: {bad} is not JSON")
    assert run("replay", "evt_nope", *base)[::2] == (1, "gateway replay: no event with id 'evt_nope'\n")
    assert run("rerun", "run_nope", *base)[::2] == (1, "gateway rerun: no run with id 'run_nope'\n")
    code, _, err = run("replay", "--since", "soon", *base)
    assert (code, err.strip()) == (
        2,
        "gateway replay: --since: expected a duration like 30m, 24h, 7d or an ISO time, got 'soon'",
    )


def test_jobs_show_and_refuse_to_cancel_a_finished_job(
    setup: Setup,
) -> None:
    routes, db, config = setup
    populate(config, db, 2)
    run("replay", "--source", "github", "--routes", str(routes), "--db", str(db))
    [job] = json.loads(run("jobs", "--db", str(db), "--json")[1])
    code, out, _ = run("jobs", job["id"], "--db", str(db))
    assert code == 0 and f"id           {job['id']}" in out and "status       completed" in out
    assert run("jobs", job["id"], "--cancel", "--db", str(db))[::2] == (
        1,
        f"gateway jobs: job {job['id']} is completed: only running jobs can be canceled\n",
    )
    assert run("jobs", "job_nope", "--db", str(db))[::2] == (1, "gateway jobs: no job with id 'job_nope'\n")
    assert run("jobs", "--cancel", "--db", str(db))[0] == 2


def test_routes_test_shows_what_a_routes_change_does_to_history(
    setup: Setup,
) -> None:
    routes, db, config = setup
    populate(config, db, 3)
    unchanged = run("routes", "test", "--routes", str(routes), "--db", str(db))[1]
    assert unchanged.strip().endswith("routes these 3 events exactly as they were routed")
    text = routes.read_text()
    routes.write_text(
        text.replace(
            "  - id: audit-pushes\n    source: github\n    event: push\n    task: record-payment\n", ""
        )
    )
    code, out, _ = run("routes", "test", "--routes", str(routes), "--db", str(db), "--json")
    report = json.loads(out)
    assert code == 0 and (report["events"], report["changed"]) == (3, 3)
    lost = {line["route_id"]: line["lost"] for line in report["routes"]}
    assert lost["audit-pushes"] == 3


def test_prune_dry_run_and_prune(write_routes: Callable[..., Path], database: Path | str) -> None:
    routes = write_routes(ROUTES.replace("sources:\n", "retention: 1h\nsources:\n", 1))
    config = config_mod.load(routes, {})
    db = database
    populate(config, db, 2, at=time.time() - 7200)  # two hours old
    populate(config, db, 1)
    db_rows(db, "UPDATE runs SET status = 'completed'")
    base = ("--routes", str(routes), "--db", str(db))
    code, out, _ = run("prune", "--dry-run", *base)
    assert code == 0
    assert out.splitlines()[1] == ("would remove 2 event(s), 4 run(s), 0 attempt(s), 0 rejection(s)")
    code, out, _ = run("prune", *base)
    assert (
        out.splitlines()[1] == "removed 2 event(s), 4 run(s), 0 attempt(s), 0 rejection(s), 0 finished job(s)"
    )
    assert db_rows(db, "SELECT count(*) FROM events") == [(1,)]
    no_retention = write_routes(ROUTES)
    assert run("prune", "--routes", str(no_retention), "--db", str(db))[1].endswith(
        "sets no retention: all is kept (add e.g. `retention: 30d`)\n"
    )


def test_token_create_mints_a_token_the_gateway_accepts() -> None:
    code, token, err = run(
        "token",
        "create",
        "--scope",
        "read",
        "--scope",
        "replay",
        "--ttl",
        "2h",
        "--subject",
        "ops",
        env={"GATEWAY_ADMIN_SECRET": SECRET},
    )
    assert (code, err) == (0, "")
    key = auth.admin_key(SECRET, None)
    assert key is not None
    principal = auth.authenticate(f"Bearer {token.strip()}", key, now=time.time())
    assert (principal.subject, principal.scopes) == ("ops", frozenset({"read", "replay"}))
    assert 7100 < principal.expires_at - time.time() <= 7200
    code, _, err = run("token", "create", "--scope", "read")
    assert code == 1 and err.startswith("gateway token: set GATEWAY_ADMIN_SECRET")
    code, _, err = run(
        "token", "create", "--scope", "read", "--ttl", "forever", env={"GATEWAY_ADMIN_SECRET": SECRET}
    )
    assert code == 1 and err.startswith("gateway token: ")
    assert run("token", "create", "--scope", "admin")[0] == 2
    assert SECRET not in err


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_token_create_signs_with_a_private_key_whose_type_picks_the_algorithm(
    tmp_path: Path, kind: str
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    private = (
        rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    )
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public = tmp_path / "pub.pem"
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    code, token, err = run(
        "token", "create", "--scope", "trigger", "--subject", "bot", "--private-key", str(pem)
    )
    assert (code, err) == (0, "")
    key = auth.admin_key(None, str(public))
    assert key is not None and key.algorithm == ("RS256" if kind == "rsa" else "ES256")
    assert auth.authenticate(f"Bearer {token.strip()}", key, now=time.time()).scopes == {"trigger"}


def test_token_create_refuses_a_file_that_is_not_a_private_key(tmp_path: Path) -> None:
    bad = tmp_path / "key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n")
    code, _, err = run("token", "create", "--scope", "read", "--private-key", str(bad))
    assert (code, err) == (
        1,
        "gateway token: --private-key: not a PEM private key without a passphrase "
        "(-----BEGIN PRIVATE KEY-----)\n",
    )
    assert run("token", "create", "--scope", "read", "--private-key", str(tmp_path / "none.pem"))[0] == 1

"""routes.yaml loading: every problem reported at once, each with its path; secrets never shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.routes import load as config_mod
from tests.support.repo import REPO

MINIMAL = """
tasks: [{module}]
sources:
  github:
    verify: github
    secret: s3cr3t-value-github
routes:
  - id: r1
    source: github
    task: deploy-preview
"""


def problems_of(load: Callable[..., Any], routes: str, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(routes, **kwargs)
    return str(info.value).splitlines()


def test_the_sample_routes_file_loads_and_warns_about_development_secrets() -> None:
    loaded = config_mod.load(REPO / "routes.yaml", {})
    assert set(loaded.sources) == {"github", "stripe", "billing", "acme"}
    assert {r.task for r in loaded.routes} <= set(loaded.tasks)
    assert any("sources.github.secret (${GITHUB_WEBHOOK_SECRET})" in w for w in loaded.warnings)


def test_the_sample_routes_file_has_no_warning_once_secrets_are_set() -> None:
    env = {
        name: "x" * 32
        for name in (
            "GITHUB_WEBHOOK_SECRET",
            "STRIPE_SECRET",
            "STRIPE_SECRET_OLD",
            "BILLING_SECRET",
            "ACME_SECRET",
        )
    }
    env["BILLING_SECRET"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert config_mod.load(REPO / "routes.yaml", env).warnings == ()


def test_a_minimal_file_builds_sources_and_routes(load_config: Callable[..., Any]) -> None:
    loaded = load_config(MINIMAL)
    github = loaded.sources["github"]
    assert github.path == "/hooks/github"
    assert github.dedupe == "headers.X-GitHub-Delivery"
    assert github.event_type == "headers.X-GitHub-Event"
    assert github.max_body == 10 * 1024 * 1024
    assert [r.id for r in loaded.routes] == ["r1"]


def test_unknown_keys_are_reported_with_a_suggestion(load_config: Callable[..., Any]) -> None:
    routes = MINIMAL.replace("routes:", "routse:") + "\n"
    assert problems_of(load_config, routes) == [
        "routes.yaml:7:1: routse: unknown key 'routse' (did you mean 'routes'?)"
    ]


def test_every_problem_is_reported_together_with_its_path(load_config: Callable[..., Any]) -> None:
    routes = """
    tasks: [{module}]
    sources:
      github:
        verify: github
        secert: oops
      stripe:
        verify: stripe
    routes:
      - id: a
        source: github
        task: deploy-previwe
      - id: a
        source: gitlab
        task: deploy-preview
      - source: github
        task: deploy-preview
        retry: {max_attempts: 0}
    """
    assert problems_of(load_config, routes) == [
        "routes.yaml:6:5: sources.github.secert: unknown key 'secert' (did you mean 'secret'?)",
        "routes.yaml:4:3: sources.github.secret: verify: github needs a secret (or secrets: [...])",
        "routes.yaml:7:3: sources.stripe.secret: verify: stripe needs a secret (or secrets: [...])",
        "routes.yaml:12:5: routes[0].task: unknown task 'deploy-previwe' (did you mean 'deploy-preview'?)",
        "routes.yaml:14:5: routes[1].source: unknown source 'gitlab' (did you mean 'github'?)",
        "routes.yaml:13:5: routes[1].id: duplicate route id 'a' (first used at routes[0])",
        "routes.yaml:16:5: routes[2].id: missing (every route needs id, source and task)",
        "routes.yaml:18:13: routes[2].retry.max_attempts: expected a whole number >= 1, got 0",
    ]


def test_an_unset_variable_without_default_is_an_error_naming_it(load_config: Callable[..., Any]) -> None:
    # a variable that is not a secret is needed by every command: the file does not load without it
    assert problems_of(load_config, MINIMAL + "    queue: ${QUEUE}\n") == [
        "routes.yaml:11:5: routes[0].queue: environment variable QUEUE is not set "
        "(set it, or write ${QUEUE:-default})"
    ]


TWO_SOURCES = MINIMAL.replace(
    "routes:",
    """  stripe:
    verify: stripe
    secret: ${STRIPE_SECRET}
routes:""",
)


def test_an_unset_secret_variable_is_deferred_to_the_commands_that_use_that_source(
    load_config: Callable[..., Any],
) -> None:
    loaded = load_config(TWO_SOURCES)  # loads: replay, rerun, routes test and prune use no secret
    assert set(loaded.sources) == {"github", "stripe"} and loaded.sources["stripe"].secrets == ()
    loaded.require_secrets(["github"])  # `gateway sign github` needs only github's
    loaded.require_secrets([])
    missing = [
        "routes.yaml:9:5: sources.stripe.secret: environment variable STRIPE_SECRET is not set "
        "(set it, or write ${STRIPE_SECRET:-default})"
    ]
    for sources in (None, ["stripe"], ["github", "stripe"]):  # serve and check need every one
        with pytest.raises(ConfigError) as info:
            loaded.require_secrets(sources)
        assert str(info.value).splitlines() == missing
    assert (
        load_config(TWO_SOURCES, environ={"STRIPE_SECRET": "x"}).sources["stripe"].secrets[0].reveal() == "x"
    )


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("verify: stripe\n    secrets: ['${NEW}', '${OLD}']", ["NEW", "OLD"]),
        ("verify: standard-webhooks\n    secret: whsec_${KEY}", ["KEY"]),  # not judged as base64 either
        ("verify: jwt\n    algorithms: [HS256]\n    audience: a\n    secret: ${JWT}", ["JWT"]),  # has a key
        ("verify: discord\n    public_key: ${PUBLIC}", ["PUBLIC"]),
        ("verify: discord\n    public_key: {public}\n    signing_key: ${SIGNING}", ["SIGNING"]),
    ],
)
def test_every_kind_of_secret_is_deferred_without_follow_on_problems(
    load_config: Callable[..., Any], spec: str, names: list[str]
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    public = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    spec = spec.replace("{public}", public)
    loaded = load_config(TWO_SOURCES.replace("verify: stripe\n    secret: ${STRIPE_SECRET}", spec))
    with pytest.raises(ConfigError) as info:
        loaded.require_secrets()
    assert [
        line.split(": environment variable ")[1].split()[0] for line in str(info.value).splitlines()
    ] == names


def test_other_problems_still_fail_the_load_and_list_the_missing_secret_too(
    load_config: Callable[..., Any],
) -> None:
    routes = TWO_SOURCES.replace("    task: deploy-preview", "    task: deploy-preview\n    tsk: x")
    assert problems_of(load_config, routes) == [
        "routes.yaml:9:5: sources.stripe.secret: environment variable STRIPE_SECRET is not set "
        "(set it, or write ${STRIPE_SECRET:-default})",
        "routes.yaml:14:5: routes[0].tsk: unknown key 'tsk' (did you mean 'task'?)",
    ]


def test_warnings_are_told_apart_by_source(load_config: Callable[..., Any]) -> None:
    routes = (
        TWO_SOURCES.replace("${STRIPE_SECRET}", "${STRIPE_SECRET:-dev}")
        + "  - {id: r2, source: open, task: deploy-preview}\n"
    )
    routes = routes.replace("routes:", "  open: {verify: none}\nroutes:", 1)
    loaded = load_config(routes)
    stripe = (
        "routes.yaml: sources.stripe.secret (${STRIPE_SECRET}): using the development default; "
        "set the variable before real traffic"
    )
    unverified = "routes.yaml: sources.open: verify: none, deliveries are NOT verified"
    assert loaded.warnings == (stripe, unverified)
    assert loaded.warnings_for() == (stripe, unverified)
    assert loaded.warnings_for(["stripe"]) == (stripe,)
    assert loaded.warnings_for(["github"]) == loaded.warnings_for([]) == ()


def test_variables_come_from_the_environment_given(load_config: Callable[..., Any]) -> None:
    routes = MINIMAL.replace("s3cr3t-value-github", "${GH_SECRET:-dev}")
    loaded = load_config(routes, environ={"GH_SECRET": "from-env"})
    assert loaded.sources["github"].secrets[0].reveal() == "from-env"
    assert loaded.warnings == ()
    defaulted = load_config(routes)
    assert defaulted.sources["github"].secrets[0].reveal() == "dev"
    assert defaulted.warnings == (
        "routes.yaml: sources.github.secret (${GH_SECRET}): using the development default; "
        "set the variable before real traffic",
    )


def test_secrets_never_appear_in_errors_or_reprs(load_config: Callable[..., Any]) -> None:
    routes = MINIMAL.replace("task: deploy-preview", "task: nope\n    tolerance: 5")
    text = "\n".join(problems_of(load_config, routes))
    assert "s3cr3t-value-github" not in text
    loaded = load_config(MINIMAL)
    assert "s3cr3t-value-github" not in repr(loaded)
    assert "s3cr3t-value-github" not in repr(loaded.sources["github"])


def test_invalid_yaml_reports_line_and_column(load_config: Callable[..., Any]) -> None:
    assert problems_of(load_config, "sources:\n  github: [unclosed\n") == [
        "routes.yaml:3:1: not valid YAML: expected ',' or ']', but got '<stream end>'"
    ]


def test_duplicate_yaml_keys_are_refused(load_config: Callable[..., Any]) -> None:
    routes = MINIMAL.replace("sources:", "sources:\n  github:\n    verify: none")
    assert problems_of(load_config, routes) == ["routes.yaml:6:3: not valid YAML: duplicate key 'github'"]


def test_a_task_module_that_fails_to_import_is_reported(load_config: Callable[..., Any]) -> None:
    lines = problems_of(load_config, MINIMAL, tasks_code="raise RuntimeError('boom')\n")
    assert lines[0].startswith("routes.yaml:2:9: tasks[0]: importing 'tasks_")
    assert "failed: RuntimeError: boom (" in lines[0]


def test_bad_task_arguments_are_reported_at_import(load_config: Callable[..., Any]) -> None:
    code = "from gateway import task\n@task(id='deploy-preview', timeout=-1)\nasync def f(p, c): ...\n"
    lines = problems_of(load_config, MINIMAL, tasks_code=code)
    assert lines[0].endswith("@task(id='deploy-preview'): timeout: expected seconds > 0 or None, got -1")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1024", 1024), ("512KiB", 512 * 1024), ("10MiB", 10 * 1024 * 1024), ("2MB", 2_000_000)],
)
def test_max_body_accepts_sizes(load_config: Callable[..., Any], value: str, expected: int) -> None:
    routes = MINIMAL.replace("    secret: s3cr3t-value-github", f"    secret: x\n    max_body: {value}")
    assert load_config(routes).sources["github"].max_body == expected


def test_a_bad_size_is_an_error(load_config: Callable[..., Any]) -> None:
    routes = MINIMAL.replace("    secret: s3cr3t-value-github", "    secret: x\n    max_body: ten")
    assert problems_of(load_config, routes) == [
        "routes.yaml:7:5: sources.github.max_body: expected a size like 1048576, '512KiB' or '10MiB', "
        "got 'ten'"
    ]


def test_tolerance_overrides_the_scheme_default_and_null_disables_it(load_config: Callable[..., Any]) -> None:
    base = MINIMAL.replace("verify: github", "verify: stripe")
    assert load_config(base).sources["github"].tolerance == 300
    assert (
        load_config(base.replace("secret: s3", "tolerance: 60\n    secret: s3")).sources["github"].tolerance
        == 60
    )
    assert (
        load_config(base.replace("secret: s3", "tolerance: null\n    secret: s3")).sources["github"].tolerance
        is None
    )
    assert problems_of(load_config, base.replace("secret: s3", "tolerance: -1\n    secret: s3")) == [
        "routes.yaml:6:5: sources.github.tolerance: expected seconds >= 0 or null, got -1"
    ]


def test_verify_none_is_allowed_without_a_secret_but_warned(load_config: Callable[..., Any]) -> None:
    loaded = load_config(MINIMAL.replace("verify: github\n    secret: s3cr3t-value-github", "verify: none"))
    assert loaded.warnings == ("routes.yaml: sources.github: verify: none, deliveries are NOT verified",)


def test_paths_must_be_absolute_and_unique(load_config: Callable[..., Any]) -> None:
    routes = MINIMAL.replace(
        "    secret: s3cr3t-value-github",
        "    secret: x\n    path: /in\n"
        "  other:\n    verify: none\n    path: /in\n  third:\n    verify: none\n    path: in",
    )
    assert problems_of(load_config, routes) == [
        "routes.yaml:13:5: sources.third.path: expected a URL path starting with '/', got 'in'",
        "routes.yaml:10:5: sources.other.path: /in is already used by github",
    ]


def test_route_overrides_are_validated(load_config: Callable[..., Any]) -> None:
    routes = MINIMAL + "    timeout: 0\n    queue: ''\n    concurrency: 0\n    priority: high\n"
    assert problems_of(load_config, routes) == [
        "routes.yaml:11:5: routes[0].timeout: expected seconds > 0 or null, got 0",
        "routes.yaml:12:5: routes[0].queue: expected a queue name, got ''",
        "routes.yaml:13:5: routes[0].concurrency: expected a whole number >= 1, got 0",
        "routes.yaml:14:5: routes[0].priority: expected a whole number, got 'high'",
    ]


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config_mod.load(tmp_path / "nope.yaml", {})
    assert str(info.value) == (
        f"{tmp_path / 'nope.yaml'}: cannot read the file: No such file or directory "
        "(set --routes or GATEWAY_ROUTES)"
    )


def test_the_top_level_must_be_a_mapping(load_config: Callable[..., Any]) -> None:
    assert problems_of(load_config, "- just\n- a list\n") == [
        "routes.yaml: expected a mapping with tasks, sources and routes"
    ]


def test_an_unusable_secret_is_reported_without_showing_it(load_config: Callable[..., Any]) -> None:
    routes = MINIMAL.replace("verify: github", "verify: standard-webhooks").replace(
        "s3cr3t-value-github", "whsec_%%%not-base64%%%"
    )
    [line] = problems_of(load_config, routes)
    assert line.startswith("routes.yaml:6:5: sources.github.secret: ")
    assert "%%%not-base64%%%" not in line


def test_queue_limits_are_read_and_checked(load_config: Callable[..., Any]) -> None:
    routes = MINIMAL.replace("routes:", "queues:\n  emails: {concurrency: 3}\nroutes:")
    assert load_config(routes).queues == {"emails": 3}
    bad = MINIMAL.replace("routes:", "queues:\n  emails: {concurency: 0}\n  slow: 2\nroutes:")
    assert problems_of(load_config, bad) == [
        "routes.yaml:8:12: queues.emails.concurency: unknown key 'concurency' (did you mean 'concurrency'?)",
        "routes.yaml:8:3: queues.emails.concurrency: expected a whole number >= 1, got None",
        "routes.yaml:9:3: queues.slow: expected a mapping like {concurrency: 5}",
    ]


def test_a_non_mapping_route_retry_is_a_problem_not_a_crash(load_config: Callable[..., Any]) -> None:
    assert problems_of(load_config, MINIMAL + "    retry: 5\n") == [
        "routes.yaml:11:5: routes[0].retry: expected a mapping with keys max_attempts, factor, min_timeout, "
        "max_timeout, jitter"
    ]


def test_a_route_retry_override_is_checked_against_its_tasks_policy(load_config: Callable[..., Any]) -> None:
    code = (
        "from gateway import task\n"
        "@task(id='deploy-preview', retry={'max_timeout': 600})\n"
        "async def f(p, c): ...\n"
    )
    ok = load_config(MINIMAL + "    retry: {min_timeout: 120}\n", tasks_code=code)
    assert ok.routes[0].options["retry"] == {"min_timeout": 120.0}
    assert problems_of(load_config, MINIMAL + "    retry: {max_timeout: 0.5}\n") == [
        "routes.yaml:11:5: routes[0].retry: merged with the policy of task 'deploy-preview', "
        "min_timeout (1.0) would be larger than max_timeout (0.5)"
    ]


def test_public_keys_and_tolerance_are_refused_where_they_mean_nothing(
    load_config: Callable[..., Any],
) -> None:
    routes = MINIMAL.replace(
        "    secret: s3cr3t-value-github", "    secret: x\n    public_key: whpk_abc\n    tolerance: 60"
    )
    assert problems_of(load_config, routes) == [
        "routes.yaml:7:5: sources.github.public_key: verify: github uses shared secrets, not public keys "
        "(public keys are for standard-webhooks/svix v1a, discord and sendgrid)",
        "routes.yaml:8:5: sources.github.tolerance: verify: github signs no timestamp, so there is no "
        "freshness to check; remove tolerance",
    ]


def test_an_empty_variable_takes_the_default_like_the_shell(load_config: Callable[..., Any]) -> None:
    routes = MINIMAL.replace("s3cr3t-value-github", "${GH_SECRET:-dev}")
    assert load_config(routes, environ={"GH_SECRET": ""}).sources["github"].secrets[0].reveal() == "dev"


@pytest.mark.parametrize("preset", ["gitlab", "mailgun", "basic"])
def test_presets_that_do_not_sign_the_body_are_labelled_so(
    load_config: Callable[..., Any], preset: str
) -> None:
    secret = "user:pass" if preset == "basic" else "s3cr3t-value-github"
    routes = MINIMAL.replace("verify: github", f"verify: {preset}").replace("s3cr3t-value-github", secret)
    assert load_config(routes).warnings == (
        f"routes.yaml: sources.github: verify: {preset} does not sign the body "
        "(it proves who sent a delivery, not that its content is unchanged)",
    )


def test_trust_anchor_files_are_read_relative_to_routes_yaml(
    load_config: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Root")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "root.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the gateway may be started from any folder
    routes = """
    tasks: [{module}]
    sources:
      paypal:
        verify: paypal
        webhook_id: WH-1
        trust_anchors: [certs/root.pem]
    """
    loaded = load_config(routes)
    assert loaded.sources["paypal"].remote.trust_anchors == (cert.public_bytes(serialization.Encoding.PEM),)


def test_retention_is_read_at_the_top_level_and_per_source(load_config: Callable[..., Any]) -> None:
    routes = MINIMAL.replace("sources:", "retention: 30d\nsources:").replace(
        "    secret: s3cr3t-value-github", "    secret: x\n    retention: forever"
    )
    loaded = load_config(routes)
    assert loaded.retention.default == 30 * 86400
    assert (loaded.sources["github"].retention, loaded.sources["github"].retention_set) == (None, True)
    assert load_config(MINIMAL).retention.default is None


def test_a_misspelt_retention_key_gets_a_suggestion(load_config: Callable[..., Any]) -> None:
    routes = MINIMAL.replace("sources:", "retension: 30d\nsources:").replace(
        "    secret: s3cr3t-value-github", "    secret: x\n    retension: 7d"
    )
    assert problems_of(load_config, routes) == [
        "routes.yaml:3:1: retension: unknown key 'retension' (did you mean 'retention'?)",
        "routes.yaml:8:5: sources.github.retension: unknown key 'retension' (did you mean 'retention'?)",
    ]


def test_sender_timeout_defaults_to_the_presets_and_a_number_overrides_it(
    load_config: Callable[..., Any],
) -> None:
    assert load_config(MINIMAL).sources["github"].sender_timeout == 10.0
    slack = MINIMAL.replace("verify: github", "verify: slack")
    assert load_config(slack).sources["github"].sender_timeout == 3.0
    override = MINIMAL.replace("    secret: s3cr3t-value-github", "    secret: x\n    sender_timeout: 2.5")
    assert load_config(override).sources["github"].sender_timeout == 2.5


def test_an_unverified_source_has_no_sender_timeout_unless_set(load_config: Callable[..., Any]) -> None:
    unverified = MINIMAL.replace("verify: github\n    secret: s3cr3t-value-github", "verify: none")
    assert load_config(unverified).sources["github"].sender_timeout is None
    given = unverified.replace("verify: none", "verify: none\n    sender_timeout: 30")
    timeout = load_config(given).sources["github"].sender_timeout
    assert (timeout, type(timeout)) == (30.0, float)


def test_a_null_sender_timeout_means_no_budget(load_config: Callable[..., Any]) -> None:
    off = MINIMAL.replace("    secret: s3cr3t-value-github", "    secret: x\n    sender_timeout: null")
    assert load_config(off).sources["github"].sender_timeout is None


@pytest.mark.parametrize(
    ("value", "shown"),
    [("0", "0"), ("-1", "-1"), ("4000", "4000"), ("10s", "'10s'"), ("true", "True"), ("[1]", "[1]")],
)
def test_a_malformed_sender_timeout_is_one_problem_naming_the_value(
    load_config: Callable[..., Any], value: str, shown: str
) -> None:
    routes = MINIMAL.replace("    secret: s3cr3t-value-github", f"    secret: x\n    sender_timeout: {value}")
    assert problems_of(load_config, routes) == [
        "routes.yaml:7:5: sources.github.sender_timeout: expected the sender's delivery timeout in seconds "
        f"(e.g. 10; at most 3600), got {shown}"
    ]


BROKEN_TASKS = {
    "syntax": "from gateway import task\n@task(id='charge')\nasync def charge(p, c:\n    ...\n",
    "import": "from gateway import task\nimport no_such_dependency\n"
    "@task(id='charge')\nasync def charge(p, c): ...\n",
}


@pytest.mark.parametrize("kind", sorted(BROKEN_TASKS))
def test_a_broken_task_module_leaves_the_others_and_says_why_its_tasks_are_unknown(
    tmp_path: Path, kind: str
) -> None:
    import uuid

    good, broken = (f"{name}_{uuid.uuid4().hex[:10]}" for name in ("good", "billing"))
    (tmp_path / f"{good}.py").write_text(
        "from gateway import task\n@task(id='deploy-preview')\nasync def f(p, c): ...\n"
    )
    (tmp_path / f"{broken}.py").write_text(BROKEN_TASKS[kind])
    routes = MINIMAL.replace("[{module}]", f"[{good}, {broken}]") + (
        "  - {id: r2, source: github, task: charge}\n  - {id: r3, source: github, task: chrage}\n"
    )
    (tmp_path / "routes.yaml").write_text(routes)
    with pytest.raises(ConfigError) as info:
        config_mod.load(tmp_path / "routes.yaml", {})
    first, *others = str(info.value).splitlines()
    assert first.startswith(f"routes.yaml:2:26: tasks[1]: importing {broken!r} failed: ")
    assert f"({tmp_path / broken}.py:{'3:17' if kind == 'syntax' else '2'})" in first
    # the good module's task is known (routes[0] has no problem); charge is unknown for what it is
    assert others == [
        f"routes.yaml:11:30: routes[1].task: unknown task 'charge' (its module {broken} failed to import, "
        "see tasks[1])",
        "routes.yaml:12:30: routes[2].task: unknown task 'chrage' (known: deploy-preview; not counting the "
        f"tasks of {broken}, which failed to import, see tasks[1])",
    ]

"""gateway/telemetry/logs.py: the request and attempt lines, both formats, redaction, setup."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.report import AttemptReport, Delivery
from gateway.telemetry import logs

SECRET = "whsec_abcdefghijklmnop"


@pytest.fixture(autouse=True)
def _restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    others = {name: logging.getLogger(name).level for name in (*logs.NOISY, *logs.FOLLOW_ROOT)}
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, number in others.items():
        logging.getLogger(name).setLevel(number)


@pytest.fixture
def lines() -> Callable[..., Callable[[], list[dict[str, Any]]]]:
    """``read = lines(level=..., secrets=...)``: JSON logs to a StringIO; ``read()`` parses its lines."""

    def make(**kwargs: Any) -> Callable[[], list[dict[str, Any]]]:
        stream = io.StringIO()
        logs.setup(stream=stream, **kwargs)
        return lambda: [json.loads(line) for line in stream.getvalue().splitlines()]

    return make


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def request(d: Delivery, path: str = "/hooks/github", seconds: float = 0.00184, **seen: str) -> None:
    logs.delivery(
        d, method="POST", path=path, seconds=seconds, trace_id=seen.get("trace_id"), remote=seen.get("remote")
    )


def report(**kwargs: Any) -> AttemptReport:
    args: dict[str, Any] = dict(
        run_id="run_X", event_id="evt_1", task_id="sync", queue="default", attempt=2, seconds=0.25
    )
    return AttemptReport(**{**args, **kwargs})


def test_accepted_request_line_has_its_fields_at_info(lines: Any) -> None:
    read = lines()
    d = Delivery(202, "accepted", source="github", event_id="evt_1", event_type="push", runs=2)
    request(d, trace_id="4bf92f3577b34da6a3ce929d0e0e4736", remote="10.0.0.7", path="/hooks/github?token=t0p")
    [line] = read()
    ts = line.pop("ts")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts)
    assert line == {
        "level": "info",
        "logger": "gateway.request",
        "message": "POST /hooks/github 202 accepted",
        "method": "POST",
        "path": "/hooks/github",
        "status": 202,
        "outcome": "accepted",
        "source": "github",
        "event_id": "evt_1",
        "event_type": "push",
        "runs": 2,
        "ms": 1.84,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "remote": "10.0.0.7",
    }


@pytest.mark.parametrize(
    ("d", "level", "message"),
    [
        (Delivery(200, "duplicate", source="github", event_id="evt_1"), "info", "POST /p 200 duplicate"),
        (
            Delivery(401, "rejected", source="github", reason="stale_timestamp"),
            "info",
            "POST /p 401 rejected (stale_timestamp)",
        ),
        (Delivery(503, "store_unavailable", source="github"), "warning", "POST /p 503 store_unavailable"),
    ],
)
def test_request_level_is_warning_only_for_5xx(lines: Any, d: Delivery, level: str, message: str) -> None:
    read = lines()
    request(d, path="/p")
    [line] = read()
    assert (line["level"], line["message"], line["outcome"]) == (level, message, d.outcome)
    assert line.get("reason") == d.reason


def test_budget_pct_is_ms_as_a_percentage_of_the_senders_timeout(lines: Any) -> None:
    read = lines()
    request(Delivery(202, "accepted", source="github", budget=10.0), seconds=0.4567)
    request(Delivery(202, "accepted", source="github"))
    with_budget, without = read()
    assert (with_budget["ms"], with_budget["budget_pct"]) == (456.7, 5)
    assert "budget_pct" not in without


def test_request_line_is_skipped_below_the_configured_level(lines: Any) -> None:
    read = lines(level="WARNING")
    request(Delivery(202, "accepted", source="github"))
    request(Delivery(503, "store_unavailable", source="github"))
    assert [line["status"] for line in read()] == [503]


def test_completed_attempt_is_logged_at_info(lines: Any) -> None:
    read = lines()
    logs.attempt(report(outcome="completed", status="completed", trace_id="abc"))
    [line] = read()
    assert line["level"] == "info"
    assert line["message"] == "run run_X attempt 2 of task sync completed"
    assert {k: line[k] for k in ("run_id", "event_id", "task", "queue", "attempt", "ms", "trace_id")} == {
        "run_id": "run_X",
        "event_id": "evt_1",
        "task": "sync",
        "queue": "default",
        "attempt": 2,
        "ms": 250.0,
        "trace_id": "abc",
    }
    assert "retry_in" not in line and "error_type" not in line


def test_retrying_attempt_is_a_warning_with_retry_in(lines: Any) -> None:
    read = lines()
    logs.attempt(report(outcome="failed", status="retrying", error_type="HTTPError", retry_in=4.04))
    [line] = read()
    assert line["level"] == "warning"
    assert line["message"] == "run run_X attempt 2 of task sync failed; retrying in 4.0 s"
    assert (line["retry_in"], line["error_type"], line["status"]) == (4.0, "HTTPError", "retrying")


@pytest.mark.parametrize(
    ("outcome", "status", "level", "message"),
    [
        ("failed", "failed", "error", "run run_X attempt 2 of task sync failed; run failed"),
        ("timed_out", "timed_out", "error", "run run_X attempt 2 of task sync timed out; run timed out"),
        (
            "interrupted",
            "queued",
            "warning",
            "run run_X attempt 2 of task sync interrupted; run queued again",
        ),
    ],
)
def test_attempt_that_does_not_retry_says_what_happens_to_its_run(
    lines: Any, outcome: str, status: str, level: str, message: str
) -> None:
    read = lines()
    logs.attempt(report(outcome=outcome, status=status, retry_in=9.0))
    [line] = read()
    assert (line["level"], line["message"]) == (level, message)
    assert "retry_in" not in line


def test_plain_format_on_a_terminal_says_the_message_then_new_fields() -> None:
    stream = Terminal()
    logs.setup(stream=stream)
    d = Delivery(202, "accepted", source="github", event_id="evt_1", event_type="pull request", runs=2)
    request(d, trace_id="t1")
    line = stream.getvalue()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO gateway\.request: POST /hooks/github 202 accepted "
        r'source=github event_id=evt_1 event_type="pull request" runs=2 ms=1.84 trace_id=t1\n',
        line,
    )


def test_ordinary_module_lines_come_out_formatted_with_extra_fields(lines: Any) -> None:
    read = lines()
    logging.getLogger("gateway.x").warning("a %s", "b", extra={"batch": 3})
    [line] = read()
    assert [line[k] for k in ("level", "logger", "message", "batch")] == ["warning", "gateway.x", "a b", 3]


def test_secret_is_redacted_from_message_extra_and_exception(lines: Any) -> None:
    read = lines(secrets=[SECRET, "abcd"])
    log = logging.getLogger("gateway.x")
    log.info("using %s for abcd", SECRET, extra={"header": f"v1={SECRET}"})
    try:
        raise ValueError(f"bad key {SECRET}")
    except ValueError:
        log.exception("verification broke")
    first, second = read()
    assert first["message"] == "using [redacted] for abcd"  # a 4-character secret is left alone
    assert first["header"] == "v1=[redacted]"
    assert second["message"] == "verification broke"
    assert second["exception"].startswith("Traceback (most recent call last):")
    assert second["exception"].endswith("ValueError: bad key [redacted]")
    assert SECRET not in json.dumps([first, second])


def test_plain_format_redacts_the_exception_too() -> None:
    stream = Terminal()
    logs.setup(stream=stream, secrets=[SECRET])
    try:
        raise RuntimeError(SECRET)
    except RuntimeError:
        logging.getLogger("gateway.x").error("failed", exc_info=True)
    assert stream.getvalue().endswith("RuntimeError: [redacted]\n")
    assert SECRET not in stream.getvalue()


def test_redact_does_not_raise_on_arguments_that_do_not_fit(lines: Any) -> None:
    read = lines(secrets=[SECRET])
    record = logging.LogRecord("gateway.x", logging.INFO, __file__, 1, "%d", ("x",), None)
    assert logs.Redact([SECRET]).filter(record) is True
    assert (record.getMessage(), record.args) == ("%d (log arguments that did not fit: ('x',))", ())
    # Through the handler alone: pytest's own capture handler on the root logger would raise on it first.
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h.formatter, logs.JsonLineFormatter)]
    handler.handle(logging.LogRecord("gateway.x", logging.INFO, __file__, 1, "%d %s", ("x", SECRET), None))
    assert [line["message"] for line in read()] == [
        "%d %s (log arguments that did not fit: ('x', '[redacted]'))"
    ]


def test_setup_twice_leaves_one_handler_and_keeps_others() -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    first, second = io.StringIO(), io.StringIO()
    logs.setup(stream=first)
    logs.setup(stream=second, level="debug")
    logging.getLogger("gateway.x").debug("once")
    assert len(root.handlers) == before + 1
    assert (first.getvalue(), json.loads(second.getvalue())["message"]) == ("", "once")


def test_setup_quiets_noisy_libraries_and_keeps_the_server_at_the_root_level() -> None:
    logs.setup(stream=io.StringIO(), level="debug")
    assert logging.getLogger("hpack").level == logging.WARNING
    assert logging.getLogger("hypercorn.error").getEffectiveLevel() == logging.DEBUG
    logs.setup(stream=io.StringIO(), level="error")
    assert logging.getLogger("urllib3").level == logging.ERROR


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": "verbose"}, "unknown log level 'verbose' (choose one of: debug, info, warning, error)"),
        ({"fmt": "xml"}, "unknown log format 'xml' (choose one of: json, plain, auto)"),
    ],
)
def test_bad_level_or_format_is_refused_with_the_choices(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        logs.setup(stream=io.StringIO(), **kwargs)
    assert str(caught.value) == message

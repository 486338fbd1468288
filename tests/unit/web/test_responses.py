"""web/responses: the one table of HTTP statuses, and the exception tree mapped onto it."""

from __future__ import annotations

import json

import pytest

from gateway.errors import (
    AccessDenied,
    ConfigError,
    Conflict,
    Invalid,
    NotFound,
    StoreError,
    StoreUnavailable,
    TaskError,
    TooLarge,
)
from gateway.report import DELIVERY_OUTCOMES
from gateway.web.responses import STATUS, Answer, code_of, error, status_of


def test_every_delivery_outcome_has_its_status_in_the_table_but_handshakes_and_rejections() -> None:
    # A handshake answers what the provider's challenge asks (Slack, Zoom, Discord): the reply's status.
    # "rejected" is every failed signature check: its reason is the code, and unlisted codes are 401.
    listed = {o for o in DELIVERY_OUTCOMES if o in STATUS}
    assert set(DELIVERY_OUTCOMES) - listed == {"handshake", "rejected"}
    assert status_of("bad_signature") == status_of("repeated_header") == status_of("replayed_token") == 401
    assert (status_of("accepted"), status_of("duplicate"), status_of("slow_body")) == (202, 200, 408)


@pytest.mark.parametrize(
    ("exc", "code", "status"),
    [
        (NotFound("no run"), "not_found", 404),
        (Invalid("bad filter"), "invalid", 400),
        (Conflict("run is completed"), "conflict", 409),  # an Invalid, more specific
        (TooLarge("over 1 MiB"), "too_large", 413),
        (StoreError("disk"), "store_unavailable", 503),
        (StoreUnavailable("disk full"), "store_unavailable", 503),
    ],
)
def test_each_kind_of_error_has_one_code_and_status(exc: Exception, code: str, status: int) -> None:
    assert code_of(exc) == code  # type: ignore[arg-type]
    assert status_of(code) == status


def test_access_denied_keeps_its_own_reason_and_status() -> None:
    denied = AccessDenied(403, "missing_scope", "needs replay")
    assert code_of(denied) == "missing_scope"
    answer = error(code_of(denied) or "", denied.detail, status=denied.status)
    assert (answer.status_code, json.loads(answer.body)) == (
        403,
        {"error": "missing_scope", "detail": "needs replay"},
    )


@pytest.mark.parametrize("exc", [ConfigError([]), TaskError("bad decorator")])
def test_errors_no_request_should_meet_have_no_code(exc: Exception) -> None:
    assert code_of(exc) is None  # type: ignore[arg-type]


def test_a_503_tells_the_sender_when_to_come_back_and_other_answers_do_not() -> None:
    assert error("store_unavailable", "retry later").headers["retry-after"] == "5"
    assert "retry-after" not in error("not_found", "no run").headers


def test_an_answer_holding_nan_or_a_lone_surrogate_is_still_json() -> None:
    body = Answer({"output": float("nan"), "text": "\ud800", "n": [float("inf"), 1]}).body
    assert json.loads(body) == {"output": None, "text": "\ud800", "n": [None, 1]}

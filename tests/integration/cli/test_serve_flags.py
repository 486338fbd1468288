"""`gateway serve` flags that are read before anything opens: a bad value is exit 2 with the flag named."""

from __future__ import annotations

import pytest

from gateway.cli.main import main


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf"])
def test_a_body_timeout_that_is_not_positive_seconds_is_refused(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--body-timeout", value], env={}) == 2
    assert f"--body-timeout: expected seconds > 0, got {value!r}" in capsys.readouterr().err


def test_the_body_timeout_falls_back_to_the_environment_and_task_logs_name_theirs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"GATEWAY_BODY_TIMEOUT": "5", "GATEWAY_TASK_LOGS": "on"}
    assert main(["serve", "--help"], env=env) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "(env GATEWAY_BODY_TIMEOUT; now: 5)" in shown and "env GATEWAY_TASK_LOGS=on" in shown

"""Tracing as the standard OTEL_* variables configure it: on, off, and the errors that name the fix."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator

import pytest

from gateway.errors import GatewayError
from gateway.telemetry.exporter import OncePerMinute, from_env
from gateway.telemetry.tracing import SERVICE_NAME, Tracing


@pytest.fixture
def tracings() -> Iterator[list[Tracing]]:
    made: list[Tracing] = []
    yield made
    for tracing in made:
        tracing.shutdown()


def configured(made: list[Tracing], env: dict[str, str]) -> Tracing:
    tracing = from_env(env)
    made.append(tracing)
    return tracing


def test_without_otel_variables_tracing_is_off(tracings: list[Tracing]) -> None:
    tracing = configured(tracings, {})
    assert not tracing.enabled
    assert tracing.describe().startswith("traces off: set OTEL_EXPORTER_OTLP_ENDPOINT")


def test_an_otlp_endpoint_turns_export_on(tracings: list[Tracing]) -> None:
    tracing = configured(tracings, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.enabled
    assert tracing.describe() == "traces to http://collector:4318 (OTLP)"


def test_the_console_exporter_and_none(tracings: list[Tracing]) -> None:
    assert configured(tracings, {"OTEL_TRACES_EXPORTER": "console"}).describe() == "traces to stdout"
    off = {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert not configured(tracings, off).enabled


def test_otel_sdk_disabled_wins(tracings: list[Tracing]) -> None:
    env = {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert not configured(tracings, env).enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"OTEL_TRACES_EXPORTER": "zipkin"},
            "OTEL_TRACES_EXPORTER=zipkin: unknown exporter 'zipkin'; use otlp, console or none",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/json: not supported; use http/protobuf (the default) or grpc",
        ),
    ],
)
def test_an_unknown_exporter_or_protocol_is_refused_with_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        from_env(env)
    assert str(caught.value) == message


def test_grpc_without_its_exporter_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    with pytest.raises(GatewayError, match=r"pip install opentelemetry-exporter-otlp-proto-grpc"):
        from_env(env)


def test_an_endpoint_without_the_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if the otel extra were missing
    with pytest.raises(GatewayError) as caught:
        from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert str(caught.value) == (
        "OpenTelemetry export is configured (OTEL_*), but its SDK is not installed: "
        "pip install 'hookgate[otel]', or unset the OTEL_* variables to run without traces"
    )


def _service_name(tracing: Tracing) -> object:
    provider = tracing._provider
    assert provider is not None
    return provider.resource.attributes.get("service.name")


def test_the_service_name_defaults_to_the_gateways_and_otel_service_name_overrides(
    tracings: list[Tracing], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert _service_name(configured(tracings, {"OTEL_TRACES_EXPORTER": "console"})) == SERVICE_NAME
    monkeypatch.setenv("OTEL_SERVICE_NAME", "hooks-eu")
    assert (
        _service_name(configured(tracings, {**os.environ, "OTEL_TRACES_EXPORTER": "console"})) == "hooks-eu"
    )


def test_the_sdks_own_export_errors_are_let_through_once_a_minute() -> None:
    now = [0.0]
    quiet = OncePerMinute(clock=lambda: now[0])
    record = logging.LogRecord("opentelemetry.exporter.otlp.common.http", logging.ERROR, "", 0, "x", (), None)
    seen = []
    for t in (0.0, 1.0, 59.9, 60.0, 61.0, 130.0):
        now[0] = t
        seen.append(quiet.filter(record))
    assert seen == [True, False, False, True, False, True]

"""Where spans go: the exporters the standard ``OTEL_*`` variables ask for, each behind a wrapper that counts
and logs failed exports. Exports run on the SDK's background thread (I/O), never on a request's path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError
from gateway.telemetry.tracing import SERVICE_NAME, Tracing, chosen_ids

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("gateway.tracing")
_FAILURE_LOG_EVERY = 60.0  # seconds between two "could not export" warnings
# The SDK's own loggers that speak on every failed or dropped batch while a collector is down.
_CHATTY = (
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.sdk._shared_internal",
)


class OncePerMinute(logging.Filter):
    """Let one record a minute through: a collector that is down must not flood the log. Every failure is
    still counted (gateway_trace_export_failures_total) and summed up in the gateway's own warning."""

    def __init__(
        self, every: float = _FAILURE_LOG_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.every, self.clock, self.last = every, clock, -every

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        if now - self.last < self.every:
            return False
        self.last = now
        return True


def from_env(env: Mapping[str, str], version: str = "") -> Tracing:
    """Tracing as the ``OTEL_*`` environment configures it; off unless an exporter is configured. ``version``
    (gateway.__version__) is the resource's ``service.version``.

    ``OTEL_TRACES_EXPORTER`` (otlp, console, none; default otlp once an OTLP endpoint is set),
    ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` / ``_PROTOCOL`` (http/protobuf, or grpc with its exporter
    installed) / ``_HEADERS`` / ``_TIMEOUT``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
    ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ``OTEL_SDK_DISABLED``. Raises GatewayError naming the fix when
    they ask for something that is not installed or does not exist.
    """
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return Tracing.off()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names:
        names = ["otlp"] if endpoint else ["none"]
    if names == ["none"]:
        return Tracing.off()
    unknown = [n for n in names if n not in ("otlp", "console", "none")]
    if unknown:
        raise GatewayError(
            f"OTEL_TRACES_EXPORTER={env['OTEL_TRACES_EXPORTER']}: unknown exporter {unknown[0]!r}; "
            "use otlp, console or none"
        )
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise GatewayError(
            "OpenTelemetry export is configured (OTEL_*), but its SDK is not installed: "
            "pip install 'hookgate[otel]', or unset the OTEL_* variables to run without traces"
        ) from None
    attributes = {"service.version": version}
    if not env.get("OTEL_SERVICE_NAME") and "service.name=" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attributes["service.name"] = SERVICE_NAME
    for name in _CHATTY:
        chatty = logging.getLogger(name)
        if not any(isinstance(f, OncePerMinute) for f in chatty.filters):
            chatty.addFilter(OncePerMinute())
    provider = TracerProvider(resource=Resource.create(attributes), id_generator=chosen_ids())
    exporters = [
        (name, _otlp(env) if name == "otlp" else ConsoleSpanExporter())
        for name in dict.fromkeys(names)
        if name != "none"
    ]
    destinations = [
        "stdout" if name == "console" else f"{endpoint or 'http://localhost:4318'} (OTLP)"
        for name, _ in exporters
    ]
    tracing = Tracing(provider, destinations, version)
    for (_, exporter), where in zip(exporters, destinations, strict=True):
        provider.add_span_processor(BatchSpanProcessor(_reporting(exporter, where, tracing.export_failed)))
    return tracing


def _otlp(env: Mapping[str, str]) -> SpanExporter:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "http/protobuf":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise GatewayError(
                "OTLP over HTTP is configured, but its exporter is not installed: "
                "pip install 'hookgate[otel]'"
            ) from None
        return OTLPSpanExporter()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise GatewayError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc, but the gRPC exporter is not installed: "
                "pip install opentelemetry-exporter-otlp-proto-grpc, or use http/protobuf (the default; "
                "port 4318)"
            ) from None
        return GrpcExporter()  # type: ignore[no-any-return]
    raise GatewayError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: not supported; use http/protobuf (the default) or grpc"
    )


def _reporting(exporter: SpanExporter, where: str, on_failure: Callable[[int], None]) -> SpanExporter:
    """Wrap an exporter so that a failed export is counted and logged (at most once a minute), never raised:
    a collector that is down must be visible, and must not cost ingest or a run anything."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Reporting(SpanExporter):
        def __init__(self) -> None:
            self.failed = 0
            self.last_warning = -_FAILURE_LOG_EVERY

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            try:
                result = exporter.export(spans)
                problem = (
                    None if result is SpanExportResult.SUCCESS else "the collector refused or did not answer"
                )
            except Exception as exc:  # an exporter bug must not kill the export thread
                result, problem = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
            if problem is not None:
                self.failed += len(spans)
                on_failure(len(spans))
                now = time.monotonic()
                if now - self.last_warning >= _FAILURE_LOG_EVERY:
                    self.last_warning = now
                    log.warning(
                        "traces: could not export %d span(s) to %s (%s); %d lost since start. "
                        "Ingest and runs are not affected",
                        len(spans),
                        where,
                        problem,
                        self.failed,
                    )
            return result

        def shutdown(self) -> None:
            exporter.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return exporter.force_flush(timeout_millis)

    return Reporting()

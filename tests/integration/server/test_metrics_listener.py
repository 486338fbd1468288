"""`serve()` with /metrics on its own listener (--metrics-port, what production setups use): every delivery on
the hooks listener is still counted, timed against its sender's budget and traced."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from gateway.routes import load as config_mod
from gateway.server import ServeOptions, serve
from gateway.telemetry.tracing import Tracing
from tests.support.deliveries import PUSH, github_headers
from tests.support.process import free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_requests_on_the_hooks_listener_are_counted_timed_and_traced_when_metrics_listen_apart(
    load_config: Callable[..., config_mod.Config], tmp_path: Path
) -> None:
    options = ServeOptions(db=tmp_path / "gateway.db", port=free_port(), metrics_port=free_port())
    spans = InMemorySpanExporter()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(load_config(), options, stop, tracing=Tracing.to(spans)))
    url, metrics = f"http://127.0.0.1:{options.port}", f"http://127.0.0.1:{options.metrics_port}/metrics"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    if (await client.get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.025)
            accepted = await client.post(
                f"{url}/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="m-1")
            )
            scraped = samples((await client.get(metrics)).text)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert accepted.status_code == 202
    github = (("source", "github"),)
    accepted_labels = (("outcome", "accepted"), ("reason", ""), ("source", "github"))
    assert scraped[("gateway_requests_total", accepted_labels)] == 1
    assert scraped[("gateway_ack_seconds_count", github)] == 1
    assert scraped[("gateway_acks_within_budget_total", (("fraction", "1"), ("source", "github")))] == 1
    ingest = [s for s in spans.get_finished_spans() if s.name == "POST /hooks/github"]
    assert len(ingest) == 1 and ingest[0].attributes is not None
    assert ingest[0].attributes["gateway.outcome"] == "accepted"

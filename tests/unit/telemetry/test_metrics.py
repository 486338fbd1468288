"""Metrics: scripted deliveries, attempts, commits and snapshots, read back with the real text parser."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.report import DELIVERY_OUTCOMES, AckBudget, AttemptReport, Delivery, Gauges, QueueDepth
from gateway.telemetry.metrics import Metrics

NOW = 1_700_000_000.0


def samples(m: Metrics, gauges: Gauges | None = None) -> list[tuple[str, dict[str, str], float]]:
    text = m.render(gauges or Gauges(now=NOW)).decode()
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def value(m: Metrics, name: str, gauges: Gauges | None = None, **labels: str) -> float | None:
    """The value of the one sample with exactly these labels, or None when the series does not exist."""
    found = [v for n, ls, v in samples(m, gauges) if n == name and ls == labels]
    assert len(found) <= 1
    return found[0] if found else None


def series(m: Metrics, name: str, gauges: Gauges | None = None) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(ls.items())): v for n, ls, v in samples(m, gauges) if n == name}


def ack(m: Metrics, outcome: str, seconds: float = 0.01, **fields: Any) -> None:
    status = {"accepted": 202, "duplicate": 200, "rejected": 401, "unknown_source": 404}.get(outcome, 503)
    fields.setdefault("source", None if outcome == "unknown_source" else "github")
    m.delivery(Delivery(status=status, outcome=outcome, **fields), seconds)


def test_deliveries_are_counted_per_source_outcome_and_reason() -> None:
    m = Metrics(process=False)
    for _ in range(3):
        ack(m, "accepted")
    ack(m, "accepted", source="stripe")
    ack(m, "duplicate")
    ack(m, "rejected", reason="bad_signature")
    ack(m, "rejected", reason="bad_signature")
    ack(m, "rejected", reason="stale_timestamp")
    ack(m, "too_large")
    ack(m, "store_unavailable")
    ack(m, "unknown_source")
    ack(m, "unknown_source")

    def key(source: str, outcome: str, reason: str = "") -> tuple[tuple[str, str], ...]:
        return (("outcome", outcome), ("reason", reason), ("source", source))

    assert series(m, "gateway_requests_total") == {
        key("github", "accepted"): 3,
        key("stripe", "accepted"): 1,
        key("github", "duplicate"): 1,
        key("github", "rejected", "bad_signature"): 2,
        key("github", "rejected", "stale_timestamp"): 1,
        key("github", "too_large"): 1,
        key("github", "store_unavailable"): 1,
        key("", "unknown_source"): 2,
    }


def test_ack_latency_is_observed_per_source_but_not_for_unknown_paths() -> None:
    m = Metrics(process=False)
    ack(m, "accepted", seconds=0.003)
    ack(m, "rejected", seconds=0.02, reason="bad_signature")
    ack(m, "unknown_source", seconds=0.001)
    assert value(m, "gateway_ack_seconds_count", source="github") == 2
    assert value(m, "gateway_ack_seconds_sum", source="github") == pytest.approx(0.023)
    assert value(m, "gateway_ack_seconds_bucket", source="github", le="0.0025") == 0
    assert value(m, "gateway_ack_seconds_bucket", source="github", le="0.005") == 1
    assert value(m, "gateway_ack_seconds_bucket", source="github", le="+Inf") == 2
    assert {ls.get("source") for n, ls, _ in samples(m) if n == "gateway_ack_seconds_count"} == {"github"}


def test_acks_are_counted_cumulatively_against_the_budget() -> None:
    m = Metrics({"github": 10.0}, process=False)
    for seconds in (0.5, 3.0, 8.0, 15.0):  # 5 %, 30 %, 80 %, 150 % of 10 s
        ack(m, "accepted", seconds=seconds, budget=10.0)
    assert series(m, "gateway_acks_within_budget_total") == {
        (("fraction", "0.1"), ("source", "github")): 1,
        (("fraction", "0.5"), ("source", "github")): 2,
        (("fraction", "1"), ("source", "github")): 3,
    }
    assert value(m, "gateway_acks_over_budget_total", source="github") == 1


def test_an_ack_exactly_at_the_budget_is_within_it() -> None:
    m = Metrics(process=False)
    ack(m, "accepted", seconds=10.0, budget=10.0)
    assert value(m, "gateway_acks_within_budget_total", source="github", fraction="1") == 1
    assert value(m, "gateway_acks_over_budget_total", source="github") == 0


def test_budget_series_exist_at_zero_before_any_traffic() -> None:
    m = Metrics({"github": 10.0, "shopify": 5.0}, process=False)
    assert value(m, "gateway_sender_timeout_seconds", source="github") == 10.0
    assert value(m, "gateway_sender_timeout_seconds", source="shopify") == 5.0
    assert value(m, "gateway_acks_over_budget_total", source="shopify") == 0
    for fraction in ("0.1", "0.5", "1"):
        assert value(m, "gateway_acks_within_budget_total", source="shopify", fraction=fraction) == 0


def test_a_source_without_a_budget_gets_no_budget_series() -> None:
    m = Metrics({"github": 10.0}, process=False)
    ack(m, "accepted", source="custom", seconds=50.0)
    budget_names = ("gateway_acks_within_budget_total", "gateway_acks_over_budget_total")
    sources = {ls["source"] for n, ls, _ in samples(m) if n in budget_names}
    assert sources == {"github"}
    assert value(m, "gateway_sender_timeout_seconds", source="custom") is None


def test_acks_reads_each_sources_answers_against_its_budget_back_from_the_registry() -> None:
    m = Metrics({"github": 10.0, "shopify": 5.0}, process=False)
    for seconds in (0.5, 3.0, 15.0):
        ack(m, "accepted", seconds=seconds, budget=10.0)
    ack(m, "rejected", seconds=0.2, reason="bad_signature", budget=10.0)
    ack(m, "accepted", source="custom", seconds=50.0)
    ack(m, "unknown_source")  # no source: not counted for anyone
    assert m.acks() == {
        "custom": AckBudget(budget=None, acks=1, within=0, over=0),
        "github": AckBudget(budget=10.0, acks=4, within=3, over=1),
        "shopify": AckBudget(budget=5.0, acks=0, within=0, over=0),
    }
    assert Metrics(process=False).acks() == {}


@pytest.mark.parametrize("outcome", DELIVERY_OUTCOMES)
def test_every_delivery_outcome_is_counted(outcome: str) -> None:
    m = Metrics(process=False)
    ack(m, outcome, source="github", budget=1.0)
    assert value(m, "gateway_requests_total", source="github", outcome=outcome, reason="") == 1


def test_an_unknown_delivery_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^unknown delivery outcome 'acepted' \(one of accepted, "):
        ack(Metrics(process=False), "acepted")


def test_queue_gauges_follow_each_snapshot() -> None:
    m = Metrics(process=False)
    first = Gauges(
        now=NOW,
        queues=(
            QueueDepth("default", 4, NOW - 12.5),
            QueueDepth("slow", 2, NOW + 30),  # only a retrying run, waiting for its backoff
            QueueDepth("idle", 0, None),
        ),
    )
    assert series(m, "gateway_queue_depth", first) == {
        (("queue", "default"),): 4,
        (("queue", "slow"),): 2,
        (("queue", "idle"),): 0,
    }
    assert series(m, "gateway_queue_oldest_ready_age_seconds", first) == {
        (("queue", "default"),): 12.5,
        (("queue", "slow"),): 0,
        (("queue", "idle"),): 0,
    }
    second = Gauges(now=NOW + 1, queues=(QueueDepth("default", 1, NOW),))
    assert series(m, "gateway_queue_depth", second) == {(("queue", "default"),): 1}
    assert series(m, "gateway_queue_oldest_ready_age_seconds", second) == {(("queue", "default"),): 1}


def test_executor_gauges_follow_each_snapshot() -> None:
    m = Metrics(process=False)
    busy = Gauges(now=NOW, slots=8, busy={"default": 3, "slow": 2})
    assert value(m, "gateway_executor_slots", busy) == 8
    assert value(m, "gateway_executor_slots_busy", busy) == 5
    assert series(m, "gateway_executor_busy", busy) == {(("queue", "default"),): 3, (("queue", "slow"),): 2}
    idle = Gauges(now=NOW, slots=8, busy={"default": 1})
    assert series(m, "gateway_executor_busy", idle) == {(("queue", "default"),): 1}
    assert value(m, "gateway_executor_slots_busy", idle) == 1


def test_runs_and_attempts_are_counted_by_task() -> None:
    m = Metrics(process=False)

    def report(outcome: str, status: str, seconds: float) -> AttemptReport:
        return AttemptReport("run_1", "evt_1", "deploy", "default", 1, outcome, status, seconds)

    m.attempt(report("failed", "retrying", 0.2))
    m.attempt(report("timed_out", "retrying", 30.0))
    m.attempt(report("completed", "completed", 1.5))
    m.run_final("deploy", "completed")
    m.run_final("deploy", "failed")
    m.run_final("sync", "failed")
    assert series(m, "gateway_attempts_total") == {
        (("outcome", "failed"), ("task", "deploy")): 1,
        (("outcome", "timed_out"), ("task", "deploy")): 1,
        (("outcome", "completed"), ("task", "deploy")): 1,
    }
    assert value(m, "gateway_attempt_duration_seconds_count", task="deploy") == 3
    assert value(m, "gateway_attempt_duration_seconds_bucket", task="deploy", le="2.5") == 2
    assert series(m, "gateway_runs_total") == {
        (("status", "completed"), ("task", "deploy")): 1,
        (("status", "failed"), ("task", "deploy")): 1,
        (("status", "failed"), ("task", "sync")): 1,
    }


def test_a_run_status_that_is_not_final_is_refused() -> None:
    msg = "run status 'retrying' is not final (one of canceled, completed, crashed, failed, timed_out)"
    with pytest.raises(ValueError) as caught:
        Metrics(process=False).run_final("deploy", "retrying")
    assert str(caught.value) == msg


def test_commit_batches_are_observed_and_rollbacks_counted() -> None:
    m = Metrics(process=False)
    m.commit(1, 0.0004, ok=True)
    m.commit(12, 0.003, ok=True)
    m.commit(40, 0.2, ok=False)
    assert value(m, "gateway_commit_batch_size_count") == 3
    assert value(m, "gateway_commit_batch_size_sum") == 53
    assert value(m, "gateway_commit_batch_size_bucket", le="16.0") == 2
    assert value(m, "gateway_commit_seconds_count") == 3
    assert value(m, "gateway_commit_seconds_bucket", le="0.005") == 2
    assert value(m, "gateway_commit_failures_total") == 1


def test_trace_export_failures_count_spans_and_build_info_names_the_version() -> None:
    m = Metrics(process=False, version="1.2.3")
    m.trace_export_failed(5)
    m.trace_export_failed(0)
    m.trace_export_failed(1)
    assert value(m, "gateway_trace_export_failures_total") == 6
    assert value(m, "gateway_build_info", version="1.2.3") == 1


def test_two_metrics_objects_do_not_share_counters() -> None:
    a, b = Metrics(process=False), Metrics(process=False)
    ack(a, "accepted")
    a.commit(3, 0.001, ok=False)
    assert value(a, "gateway_requests_total", source="github", outcome="accepted", reason="") == 1
    assert value(b, "gateway_requests_total", source="github", outcome="accepted", reason="") is None
    assert value(b, "gateway_commit_failures_total") == 0


def test_process_metrics_are_present_only_when_asked_for() -> None:
    with_process = {n for n, _, _ in samples(Metrics(process=True))}
    without = {n for n, _, _ in samples(Metrics(process=False))}
    assert "python_info" in with_process
    if sys.platform == "linux":  # ProcessCollector reads /proc
        assert "process_resident_memory_bytes" in with_process
    assert not {n for n in without if n.startswith(("process_", "python_"))}
    assert Metrics.content_type.startswith("text/plain; version=")

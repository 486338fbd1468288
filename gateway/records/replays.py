"""New records made from stored ones: a replay routes a stored event again through the current routes.yaml, a
rerun runs a stored run's task again; each in a span of its own, linked to the original. No I/O: the caller
stores what they return (one at a time, or a bulk job's chunk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import Invalid
from gateway.model import Event, Run
from gateway.routes.ingest import new_run, readmit
from gateway.routes.load import Config
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.traceparent import run_traceparent, stamp, stamp_run


@dataclass(frozen=True, slots=True)
class Replayer:
    """Replays and reruns under ``routes`` (None when the caller loaded no routes.yaml: reads need none)."""

    routes: Config | None
    telemetry: Telemetry

    @property
    def config(self) -> Config:
        """routes.yaml, for whatever routes or runs tasks; Invalid, naming the fix, when none was loaded."""
        if self.routes is None:
            raise Invalid("this needs routes.yaml: pass --routes (or set GATEWAY_ROUTES)")
        return self.routes

    def replay(self, event: Event, now: float) -> tuple[Event, tuple[Run, ...]]:
        """A new event (``replay_of`` the original) with a new run per route that matches it now, in a new
        trace linked to the original event's."""
        attributes = {"gateway.replay_of": event.id, "gateway.source": event.source}
        with self.telemetry.tracing.linked("replay", event.traceparent, attributes) as span:
            admission = readmit(self.config, event, now)
            span.set_attributes({"gateway.event.id": admission.event.id, "gateway.runs": len(admission.runs)})
            return stamp(admission.event, admission.runs, span.get_span_context())

    def rerun(self, run: Run, payload: Any, *, edited: bool, now: float) -> Run:
        """A new run of ``run``'s task on the same event, ``rerun_of`` it, with the task's current options. A
        rerun with the original input keeps the original's idempotency key; an ``edited`` one gets its own."""
        config = self.config
        route = next((r for r in config.routes if r.id == run.route_id and r.task == run.task_id), None)
        key = None if edited else (run.idempotency_key or run.id)
        attributes = {"gateway.rerun_of": run.id, "gateway.task": run.task_id, "gateway.edited": edited}
        with self.telemetry.tracing.linked("rerun", run_traceparent(run), attributes) as span:
            rerun = new_run(
                config,
                run.task_id,
                payload,
                run.event_id,
                now,
                route=route,
                rerun_of=run.id,
                idempotency_key=key,
            )
            span.set_attribute("gateway.run.id", rerun.id)
            return stamp_run(rerun, span.get_span_context())

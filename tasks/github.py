"""GitHub tasks: a preview deploy on push to main, and issue triage."""

from typing import Any

from gateway import task


@task(
    id="deploy-preview",
    retry={"max_attempts": 3, "factor": 2, "min_timeout": 1, "max_timeout": 60},
    timeout=3600,
)
async def deploy_preview(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    # A real task would call your deploy API here (with ctx's idempotency key).
    return {"deployed": payload["repo"], "sha": payload["sha"]}


@task(id="triage-issue", timeout=30)
async def triage_issue(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    labels = ["bug"] if "bug" in (payload.get("title") or "").lower() else ["needs-triage"]
    return {"repo": payload["repo"], "issue": payload["number"], "labels": labels}

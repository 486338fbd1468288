"""GitHub tasks: a preview deploy on push to main, and issue triage."""

from typing import Any

from gateway import AbortRun, Context, task


@task(
    id="deploy-preview",
    retry={"max_attempts": 3, "factor": 2, "min_timeout": 1, "max_timeout": 60},
    timeout=3600,
)
async def deploy_preview(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    if not payload.get("sha"):
        raise AbortRun("the push has no head commit (a branch deletion?): nothing to deploy")
    ctx.log.info("deploying %s at %s", payload["repo"], payload["sha"][:7])
    # A real task calls your deploy API here, passing ctx.idempotency_key so a retry deploys once.
    return {"deployed": payload["repo"], "sha": payload["sha"], "idempotency_key": ctx.idempotency_key}


@task(id="triage-issue", timeout=30)
async def triage_issue(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    labels = ["bug"] if "bug" in (payload.get("title") or "").lower() else ["needs-triage"]
    ctx.log.info("issue #%s gets %s", payload["number"], ", ".join(labels))
    return {"repo": payload["repo"], "issue": payload["number"], "labels": labels}

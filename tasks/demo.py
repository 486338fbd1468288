"""A demonstration task: it fails its first two attempts, so `gateway show` has retries to display."""

from typing import Any

from gateway import Context, task


@task(id="flaky-demo", retry={"max_attempts": 3, "min_timeout": 1, "factor": 2})
async def flaky_demo(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    ctx.log.info("calling the (pretend) upstream, attempt %d", ctx.attempt)
    if ctx.attempt < 3:
        raise ConnectionError(f"upstream unavailable (simulated outage, attempt {ctx.attempt})")
    return {"order": payload.get("order"), "synced_on_attempt": ctx.attempt}

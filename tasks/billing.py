"""Billing tasks: record Stripe payments and sync subscription events."""

from typing import Any

from gateway import Context, task


@task(id="record-payment", retry={"max_attempts": 5}, concurrency_key="payload.customer")
async def record_payment(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    # concurrency_key: one customer's payments are recorded one at a time, in the order they arrived.
    ctx.log.info("recording %s %s for %s", payload["amount"], payload["currency"], payload["customer"])
    return {"invoice": payload["invoice"], "amount": payload["amount"], "currency": payload["currency"]}


@task(id="sync-subscription", concurrency=2)
def sync_subscription(payload: Any, ctx: Context) -> dict[str, Any]:
    # A synchronous task: it runs in a worker thread of its own pool, so it never blocks ingest.
    kind = (payload.get("type") or payload.get("event")) if isinstance(payload, dict) else None
    ctx.log.info("syncing %s (attempt %d)", kind, ctx.attempt)
    return {"synced": kind}

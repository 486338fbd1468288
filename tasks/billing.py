"""Billing tasks: record Stripe payments and sync subscription events."""

from typing import Any

from gateway import task


@task(id="record-payment", retry={"max_attempts": 5})
async def record_payment(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"invoice": payload["invoice"], "amount": payload["amount"], "currency": payload["currency"]}


@task(id="sync-subscription", concurrency=2)
def sync_subscription(payload: Any, ctx: Any) -> dict[str, Any]:
    # A synchronous task: it runs in a worker thread, so it never blocks ingest.
    kind = payload.get("type") or payload.get("event") if isinstance(payload, dict) else None
    return {"synced": kind}

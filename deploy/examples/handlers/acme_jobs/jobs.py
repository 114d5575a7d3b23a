"""Handlers of a fictional shop: ``--app acme_jobs.jobs:worker``.

Replace with your own. Each handler gets the job id as ``ctx.idempotency_key``: pass it to the
systems you call so that a retried attempt never repeats an effect.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from jobline_worker import JobContext, NonRetryable, Worker

worker = Worker()


class Receipt(BaseModel):
    order_id: str = Field(min_length=1)
    email: str
    total_cents: int = Field(ge=0)


@worker.job("send-receipt", queue="emails", timeout=30, max_attempts=8, model=Receipt)
async def send_receipt(ctx: JobContext, payload: Receipt) -> dict[str, str]:
    """Render and send an order receipt (here: only validated and acknowledged)."""
    if not payload.email or "@" not in payload.email:
        raise NonRetryable(f"order {payload.order_id}: no usable e-mail address")
    ctx.logger.info("receipt sent", extra={"order_id": payload.order_id})
    return {"order_id": payload.order_id, "message_id": f"receipt-{ctx.idempotency_key}"}


class Reindex(BaseModel):
    sku: str = Field(min_length=1)


@worker.job("reindex-product", queue="default", timeout=60, model=Reindex)
def reindex_product(ctx: JobContext, payload: Reindex) -> dict[str, str]:
    """A blocking handler: plain functions run in a thread pool, off the event loop."""
    return {"sku": payload.sku, "indexed": "ok"}

"""A worker's start: record its job types and the queues it serves in PostgreSQL.

The gateway admits only registered types (their payloads checked against the handler's
model's JSON Schema) on declared queues, and the relay publishes only to declared queues'
topics; so a worker declares what it serves before it consumes. Deploying a worker is an
operator's act: its queues are declared with the deployment's default partitions unless an
operator declared them first (their partitions are kept). The last registration of a type
wins: the handler deployed last is the one that runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from jobline.core import topics
from jobline.pg import registry
from jobline.pg.db import Database
from jobline_worker.registry import Worker

log = logging.getLogger("jobline.worker")


async def register(
    db: Database, app: Worker, served: Sequence[str], worker_id: str
) -> dict[str, int | None]:
    """Declare the queues and record the job types; return the partitions of each served
    queue's topic (None: the deployment's default), to create the topics with."""
    records = [spec.record() for spec in app]
    async with db.transaction() as conn:
        declared = await registry.declare_missing_queues(
            conn, [*served, *(r.queue for r in records)], f"worker:{worker_id}"
        )
        written = await registry.register_job_types(
            conn, records, source="worker", registered_by=worker_id
        )
        stored = await registry.load(conn)
    if declared or written:
        log.info("registered", extra={"declared_queues": declared, "registered_types": written})
    partitions = {q.declaration.name: q.declaration.partitions for q in stored.queues}
    return {q: partitions.get(q) for q in served}


def work_topic_sizes(prefix: str, sizes: dict[str, int | None]) -> dict[str, int | None]:
    """The served queues' work topics (every priority lane) and their partition counts."""
    return {topic: count for queue, count in sizes.items() for topic in topics.lanes(prefix, queue)}

"""The publisher with tenant fairness (jobline_relay.fairness) against real PostgreSQL and
the broker: what it parks, and a batch whose every message is parked."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from jobline.core import messages
from jobline.pg import jobrows, outbox
from jobline_relay.fairness import Fairness
from jobline_relay.publisher import Publisher
from tests.support import fresh_queue, new_tenant, outbox_rows_of, submit_many


async def parked_of(db, ids) -> int:
    async with db.connection() as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM outbox_parked WHERE job_id = ANY($1::uuid[])", ids
            )
        )


async def test_past_its_window_a_tenants_work_is_parked_and_its_events_still_go(
    db, kafka_settings, producer
):
    tenant, queue = await new_tenant(db), fresh_queue()
    ids = await submit_many(db, tenant, queue, 30)
    fairness = Fairness(db, window=10, interval=0.1)
    publisher = Publisher(
        db, producer, kafka_settings, batch_size=100, publish_timeout=10, fairness=fairness
    )
    result = await publisher.publish_batch()
    assert result.rows == 30
    # 10 work messages and 30 "queued" events went out; 20 work messages wait in PostgreSQL.
    assert result.messages == 40
    assert await parked_of(db, ids) == 20
    assert await outbox_rows_of(db, ids) == 0


async def test_a_batch_of_work_messages_that_are_all_parked_commits(db, kafka_settings, producer):
    """Rows of a work message alone (as the healer writes them) for a tenant at its window:
    nothing is left to send, and the batch must still commit (it once failed forever)."""
    tenant, queue = await new_tenant(db), fresh_queue()
    ids = await submit_many(db, tenant, queue, 5)
    fairness = Fairness(db, window=1, interval=0.1)
    publisher = Publisher(
        db, producer, kafka_settings, batch_size=100, publish_timeout=10, fairness=fairness
    )
    await publisher.publish_batch()  # the submissions: one published, four parked
    assert await parked_of(db, ids) == 4
    async with db.transaction() as conn:
        rows = await conn.fetch("SELECT * FROM jobs WHERE id = ANY($1::uuid[])", ids)
        jobs = [jobrows.job_from_row(row) for row in rows]
        healed = [j for j in jobs if j.id not in await _parked_ids(conn, ids)]
        await outbox.write(
            conn, [(messages.work(job, datetime.now(UTC)), job.id) for job in healed]
        )
    result = await publisher.publish_batch()
    assert (result.rows, result.messages) == (1, 0)
    assert await parked_of(db, ids) == 5
    assert await outbox_rows_of(db, ids) == 0


async def _parked_ids(conn, ids) -> set[UUID]:
    rows = await conn.fetch("SELECT job_id FROM outbox_parked WHERE job_id = ANY($1::uuid[])", ids)
    return {r["job_id"] for r in rows}

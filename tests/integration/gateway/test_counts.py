"""``GET /v1/queues``, ``/v1/stats`` and ``/v1/dlq/groups`` against real PostgreSQL: each
counts the calling tenant's jobs only, every state present."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.gateway.conftest import bearer
from tests.support import fresh_queue, insert_jobs, make_job


async def _kill(db, ids, error_class: str, message: str, *, ago: float = 0) -> None:
    """Dead, as a worker leaves a job whose last attempt failed (written directly: these
    routes only read)."""
    error = {"attempt": 3, "error_class": error_class, "message": message}
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET state = 'dead', finished_at = $2, last_error = $3 WHERE id = ANY($1)",
            list(ids),
            datetime.now(UTC) - timedelta(seconds=ago),
            error,
        )


async def test_queues_stats_and_dlq_groups_count_the_callers_jobs(client, make_api_key, db):
    tenant = f"t-{datetime.now(UTC):%H%M%S%f}"
    key = await make_api_key(tenant=tenant)
    other = await make_api_key()
    mail, reports = fresh_queue(), fresh_queue()
    queued = await insert_jobs(db, [make_job(tenant, "mail.send", mail) for _ in range(3)])
    timeouts = await insert_jobs(db, [make_job(tenant, "mail.send", mail) for _ in range(2)])
    crashes = await insert_jobs(db, [make_job(tenant, "report", reports) for _ in range(1)])
    await _kill(db, timeouts[:1], "TimeoutError", "slow smtp", ago=7200)
    await _kill(db, timeouts[1:], "TimeoutError", "slower smtp")
    await _kill(db, crashes, "KeyError", "'x'")

    queues = (await client.get("/v1/queues", headers=bearer(key))).json()["queues"]
    assert [q["name"] for q in queues] == sorted([mail, reports])
    by_name = {q["name"]: q for q in queues}
    assert by_name[mail]["counts"]["queued"] == len(queued)
    assert by_name[mail]["counts"]["dead"] == 2
    assert set(by_name[mail]["counts"]) == {
        "scheduled",
        "queued",
        "running",
        "retrying",
        "succeeded",
        "dead",
        "cancelled",
    }
    assert by_name[mail]["oldest_queued_at"] is not None
    assert by_name[reports]["oldest_queued_at"] is None  # nothing waits there

    stats = (await client.get("/v1/stats?window_seconds=3600", headers=bearer(key))).json()
    assert (stats["counts"]["queued"], stats["counts"]["dead"]) == (3, 3)
    assert stats["finished"] == {"succeeded": 0, "dead": 2, "cancelled": 0}  # one is older

    groups = (await client.get("/v1/dlq/groups", headers=bearer(key))).json()["groups"]
    assert [(g["type"], g["error_class"], g["count"]) for g in groups] == [
        ("mail.send", "TimeoutError", 2),
        ("report", "KeyError", 1),
    ]
    assert groups[0]["sample_job_id"] == str(timeouts[1])  # the newest of the group
    assert groups[0]["sample_message"] == "slower smtp"
    only = await client.get(f"/v1/dlq/groups?queue={reports}", headers=bearer(key))
    assert [g["type"] for g in only.json()["groups"]] == ["report"]

    # Another tenant sees none of it.
    assert (await client.get("/v1/queues", headers=bearer(other))).json()["queues"] == []
    assert (await client.get("/v1/dlq/groups", headers=bearer(other))).json()["groups"] == []
    bad = await client.get("/v1/stats?window_seconds=0", headers=bearer(key))
    assert bad.status_code == 422

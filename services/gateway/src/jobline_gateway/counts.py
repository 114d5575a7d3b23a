"""What is counted over a tenant's jobs: ``GET /v1/queues`` (depth and lag per queue),
``GET /v1/stats`` (jobs per state, finished within a window) and ``GET /v1/dlq/groups`` (dead
jobs by type, queue and error class). Read-only aggregates (statements in ``queries.sql``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query

from jobline.api.dlq import DlqGroup, DlqGroupList
from jobline.api.fields import QUEUE_PATTERN, TYPE_PATTERN
from jobline.api.jobs import JobState
from jobline.api.queues import QueueList, QueueStats, Stats
from jobline.web.problems import responses
from jobline_gateway.deps import Db, KnownQuery, Reader
from jobline_gateway.store import SQL

router = APIRouter(prefix="/v1", tags=["jobs"], dependencies=[KnownQuery])

DEFAULT_WINDOW: Final = 3600
MAX_WINDOW: Final = 30 * 86400
MAX_GROUPS: Final = 1000


def _every_state(found: dict[str, int]) -> dict[JobState, int]:
    return {state: found.get(state.value, 0) for state in JobState}


@router.get(
    "/queues", operation_id="listQueueStats", response_model=QueueList, responses=responses()
)
async def list_queues(principal: Reader, db: Db) -> Any:
    """Each queue the tenant has jobs in: jobs per state and the oldest waiting job."""
    async with db.connection() as conn:
        rows = await SQL.fetch(conn, "queue_counts", tenant_id=principal.tenant_id)
    by_queue: dict[str, dict[str, int]] = {}
    oldest: dict[str, datetime | None] = {}
    for row in rows:
        by_queue.setdefault(row["queue"], {})[row["state"]] = int(row["n"])
        if row["oldest_queued_at"] is not None:
            oldest[row["queue"]] = row["oldest_queued_at"]
    return QueueList(
        queues=[
            QueueStats(name=name, counts=_every_state(counts), oldest_queued_at=oldest.get(name))
            for name, counts in sorted(by_queue.items())
        ]
    )


@router.get("/stats", operation_id="getStats", response_model=Stats, responses=responses())
async def get_stats(
    principal: Reader,
    db: Db,
    window_seconds: Annotated[
        int,
        Query(ge=1, le=MAX_WINDOW, description="Count jobs finished within this many seconds."),
    ] = DEFAULT_WINDOW,
) -> Any:
    """The tenant's jobs per state now, and those that finished within the window."""
    since = datetime.now(UTC) - timedelta(seconds=window_seconds)
    async with db.connection() as conn:
        now = await SQL.fetch(conn, "state_counts", tenant_id=principal.tenant_id)
        finished = await SQL.fetch(
            conn, "finished_counts", tenant_id=principal.tenant_id, since=since
        )
    done = {row["state"]: int(row["n"]) for row in finished}
    return Stats(
        counts=_every_state({row["state"]: int(row["n"]) for row in now}),
        window_seconds=window_seconds,
        finished={s: done.get(s.value, 0) for s in JobState if s.terminal},
    )


@router.get(
    "/dlq/groups", operation_id="listDlqGroups", response_model=DlqGroupList, responses=responses()
)
async def dlq_groups(
    principal: Reader,
    db: Db,
    type: Annotated[
        str | None, Query(pattern=TYPE_PATTERN, description="Only this job type.")
    ] = None,
    queue: Annotated[
        str | None, Query(pattern=QUEUE_PATTERN, description="Only this queue.")
    ] = None,
) -> Any:
    """The tenant's dead jobs grouped by type, queue and error class, largest group first
    (at most 1,000 groups); redrive them with ``POST /v1/jobs/{id}/redrive``."""
    async with db.connection() as conn:
        rows = await SQL.fetch(
            conn,
            "dlq_groups",
            tenant_id=principal.tenant_id,
            type=type,
            queue=queue,
            limit=MAX_GROUPS,
        )
    return DlqGroupList(
        groups=[
            DlqGroup(
                type=row["type"],
                queue=row["queue"],
                error_class=row["error_class"],
                count=int(row["n"]),
                first_dead_at=row["first_dead_at"],
                last_dead_at=row["last_dead_at"],
                sample_job_id=row["sample_job_id"],
                sample_message=row["sample_message"],
            )
            for row in rows
        ]
    )

"""The transactional outbox: write messages with the state change, claim and drain them.

Writers (gateway, worker, relay, scheduler) call :func:`write` inside the transaction that
changes job state. The relay calls :func:`claim` and :func:`delete` in one transaction that
stays open while it publishes, so a crash before the delete re-publishes (a duplicate the
worker's guarded claim absorbs) and never loses a message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from jobline.core.states import OutboxMessage
from jobline.pg.queries import q


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    key: str | None
    value: bytes
    job_id: UUID | None


async def write(
    conn: AsyncConnection, messages: Iterable[OutboxMessage], job_id: UUID | None = None
) -> int:
    """Insert the messages of one or more transitions; returns how many."""
    return await write_many(
        conn, [(m, job_id if job_id is not None else _job_id(m.key)) for m in messages]
    )


async def write_many(
    conn: AsyncConnection, messages: Sequence[tuple[OutboxMessage, UUID | None]]
) -> int:
    """Insert ``(message, job_id)`` pairs in order, in one statement; returns how many.

    One multi-row INSERT from arrays rather than an executemany of ``insert_outbox``: a
    single execution of the statement (the NOTIFY trigger runs once) and one prepared
    statement for any number of rows.
    """
    if not messages:
        return 0
    await conn.execute(q("insert_outbox_rows"), columns(messages))
    return len(messages)


def columns(messages: Sequence[tuple[OutboxMessage, UUID | None]]) -> dict[str, list[Any]]:
    """The array parameters of ``insert_outbox_rows`` (and of ``insert_jobs``'s outbox part)."""
    return {
        "topics": [m.topic for m, _ in messages],
        "keys": [m.key for m, _ in messages],
        "msg_values": [m.value for m, _ in messages],
        "available_ats": [m.available_at for m, _ in messages],
        "job_ids": [job_id for _, job_id in messages],
    }


async def claim(conn: AsyncConnection, limit: int) -> list[OutboxRow]:
    """Lock up to ``limit`` due rows no other relay holds (oldest first)."""
    result = await conn.execute(q("claim_outbox"), {"limit": limit})
    return [OutboxRow(r.id, r.topic, r.key, bytes(r.value), r.job_id) for r in result]


async def delete(conn: AsyncConnection, ids: Sequence[int]) -> None:
    if ids:
        await conn.execute(q("delete_outbox"), {"ids": list(ids)})


async def backlog(conn: AsyncConnection) -> tuple[int, float]:
    """Rows due now and the age in seconds of the oldest (0 when none)."""
    row = (await conn.execute(q("outbox_backlog"))).one()
    return int(row.due), float(row.oldest_age_seconds or 0.0)


def _job_id(key: str | None) -> UUID | None:
    try:
        return UUID(key) if key else None
    except ValueError:
        return None

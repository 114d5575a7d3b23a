"""The transactional outbox: write messages with the state change, take them to publish.

Writers (gateway, worker, relay, scheduler) add the messages of a transition in the
transaction (or statement) that changes the job. Consecutive messages of one job that fall
due together share one row, so a submission writes one row (its "queued" event and its work
message) where it used to write two. The relay takes due rows (:func:`take`) in a transaction
that stays open while it publishes, so a crash before the commit re-publishes (a duplicate
the worker's guarded claim absorbs) and never loses a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from jobline.core import topics
from jobline.core.envelope import InvalidEnvelope, WorkEnvelope
from jobline.core.messages import OutboxMessage
from jobline.pg.db import Conn
from jobline.pg.queries import SQL


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A taken row: its messages as (logical topic, value), in the order written."""

    id: int
    job_id: UUID | None
    key: str | None
    available_at: datetime
    due_attempt: int | None
    messages: tuple[tuple[str, bytes], ...]


def columns(messages: Sequence[tuple[OutboxMessage, UUID]]) -> dict[str, list[Any]]:
    """The array parameters of ``insert_outbox`` (and of ``insert_jobs``'s outbox part).

    Messages of one job with the same ``available_at``, one after the other, form one row.
    A row of lifecycle events only is quiet: it does not wake the relays (migration 0004).
    """
    rows: dict[str, list[Any]] = {
        "row_job_ids": [],
        "row_keys": [],
        "row_available_ats": [],
        "row_due_attempts": [],
        "row_quiets": [],
    }
    flat: dict[str, list[Any]] = {"msg_rows": [], "msg_topics": [], "msg_payloads": []}
    last: tuple[UUID, datetime] | None = None
    for message, job_id in messages:
        group = (job_id, message.available_at)
        quiet = message.topic == topics.EVENTS
        if group != last:
            rows["row_job_ids"].append(job_id)
            rows["row_keys"].append(message.key)
            rows["row_available_ats"].append(message.available_at)
            rows["row_due_attempts"].append(message.due_attempt)
            rows["row_quiets"].append(quiet)
            last = group
        else:
            rows["row_quiets"][-1] = rows["row_quiets"][-1] and quiet
            if message.due_attempt is not None:
                rows["row_due_attempts"][-1] = message.due_attempt
        flat["msg_rows"].append(len(rows["row_job_ids"]))  # 1-based, as WITH ORDINALITY
        flat["msg_topics"].append(message.topic)
        flat["msg_payloads"].append(message.value)
    return rows | flat


async def write(conn: Conn, messages: Sequence[tuple[OutboxMessage, UUID]]) -> None:
    """Insert ``(message, job_id)`` pairs in order, in one statement."""
    if messages:
        await SQL.execute(conn, "insert_outbox", **columns(messages))


async def take(conn: Conn, limit: int) -> list[OutboxRow]:
    """Delete and return up to ``limit`` due rows no other relay holds, oldest first.

    Only inside a transaction: its rollback puts the rows back.
    """
    records = await SQL.fetch(conn, "take_outbox", limit=limit)
    rows = []
    for r in records:
        messages = tuple(zip(r["topics"], map(bytes, r["payloads"]), strict=True))
        due_attempt = r["due_attempt"]
        if r["legacy"]:
            due_attempt = _legacy_due_attempt(messages)
        rows.append(
            OutboxRow(r["id"], r["job_id"], r["key"], r["available_at"], due_attempt, messages)
        )
    rows.sort(key=lambda row: (row.available_at, row.id))
    return rows


def _legacy_due_attempt(messages: tuple[tuple[str, bytes], ...]) -> int | None:
    """A row of the previous version carries no ``due_attempt``: a work message may make its
    job due, as that version's relay decided (the state machine's ``Due`` refuses it if not)."""
    (logical, value), *_ = messages
    if not topics.is_work(logical):
        return None
    try:
        return WorkEnvelope.decode(value).attempt
    except InvalidEnvelope:
        return None


async def hold(conn: Conn, rows: Sequence[OutboxRow], available_at: datetime) -> None:
    """Put taken ``rows`` back (same ids, so each job's order holds), due at
    ``available_at``. Only in the transaction that took them."""
    if not rows:
        return
    columns: dict[str, list[Any]] = {
        "row_ids": [],
        "row_job_ids": [],
        "row_keys": [],
        "row_due_attempts": [],
        "msg_rows": [],
        "msg_topics": [],
        "msg_payloads": [],
    }
    for n, row in enumerate(rows, start=1):
        columns["row_ids"].append(row.id)
        columns["row_job_ids"].append(row.job_id)
        columns["row_keys"].append(row.key)
        columns["row_due_attempts"].append(row.due_attempt)
        for logical, value in row.messages:
            columns["msg_rows"].append(n)
            columns["msg_topics"].append(logical)
            columns["msg_payloads"].append(value)
    await SQL.execute(conn, "hold_outbox", available_at=available_at, **columns)


async def backlog(conn: Conn) -> tuple[int, float]:
    """Rows due now and the age in seconds of the oldest (0 when none)."""
    row = await SQL.fetchrow(conn, "outbox_backlog")
    assert row is not None
    return int(row["due"]), float(row["oldest_age_seconds"] or 0.0)


async def seconds_until_next(conn: Conn) -> float | None:
    """Seconds until the earliest row not yet due; None when there is none."""
    seconds = await SQL.fetchval(conn, "outbox_next_due")
    return float(seconds) if seconds is not None else None

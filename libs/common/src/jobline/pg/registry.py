"""Declared queues and registered job types in PostgreSQL (tables of migration 0005).

The gateway and the relay read both tables whole (:func:`load`) and keep the result until
the ``jobline_catalog`` NOTIFY says a row changed. Workers register their types at start
(:func:`register_job_types`); operators declare queues and types through the gateway's admin
routes. Writers compare with what is stored first and write only what differs, because the
tables' statement triggers notify every gateway and relay even for a write that changes
nothing, and a fleet of workers starts often.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobline.core.registry import JobTypeRecord, QueueDeclaration, Registry
from jobline.pg.db import Conn
from jobline.pg.queries import SQL


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A declared queue as stored: the declaration and who made it when."""

    declaration: QueueDeclaration
    declared_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class JobTypeRow:
    """A registered job type as stored: the record and who registered it when."""

    record: JobTypeRecord
    source: str
    registered_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Stored:
    """Both tables as read."""

    queues: list[QueueRow]
    types: list[JobTypeRow]

    def registry(self) -> Registry:
        """The pure view the decisions take."""
        return Registry.of((q.declaration for q in self.queues), (t.record for t in self.types))


def _queue(row: Mapping[str, Any]) -> QueueRow:
    return QueueRow(
        QueueDeclaration(row["name"], row["partitions"]),
        row["declared_by"],
        row["created_at"],
        row["updated_at"],
    )


def _job_type(row: Mapping[str, Any]) -> JobTypeRow:
    tenants = row["allowed_tenants"]
    return JobTypeRow(
        JobTypeRecord(
            row["name"],
            row["queue"],
            row["payload_schema"],
            frozenset(tenants) if tenants is not None else None,
        ),
        row["source"],
        row["registered_by"],
        row["created_at"],
        row["updated_at"],
    )


async def load(conn: Conn) -> Stored:
    """Every declared queue and registered type.

    Queues are read first: a type's queue is declared before the type (foreign key), so a
    type read here always finds its queue unless the queue was declared in between, which
    only makes the type look unknown until the next read.
    """
    queues = await SQL.fetch(conn, "registry_queues")
    types = await SQL.fetch(conn, "registry_job_types")
    return Stored([_queue(r) for r in queues], [_job_type(r) for r in types])


async def load_queues(conn: Conn) -> list[QueueRow]:
    """Every declared queue, by name."""
    return [_queue(r) for r in await SQL.fetch(conn, "registry_queues")]


async def declare_queue(conn: Conn, queue: QueueDeclaration, declared_by: str) -> QueueRow:
    """Declare ``queue`` or change its partitions."""
    row = await SQL.fetchrow(
        conn,
        "declare_queue",
        name=queue.name,
        partitions=queue.partitions,
        declared_by=declared_by,
    )
    assert row is not None
    return _queue(row)


async def declare_missing_queues(conn: Conn, names: Iterable[str], declared_by: str) -> list[str]:
    """Declare those of ``names`` not declared yet (default partitions); return them."""
    wanted = [QueueDeclaration(n).name for n in dict.fromkeys(names)]  # validates each name
    existing = {r["name"] for r in await SQL.fetch(conn, "registry_queues")}
    missing = [n for n in wanted if n not in existing]
    if missing:
        await SQL.execute(conn, "declare_missing_queues", names=missing, declared_by=declared_by)
    return missing


async def register_job_types(
    conn: Conn, records: Sequence[JobTypeRecord], *, source: str, registered_by: str
) -> list[str]:
    """Record ``records`` (their queues must be declared); return the names written.

    Unchanged types are not written (see the module's docstring). Call in a transaction.
    """
    stored = {t.record.name: t for t in (await load_types(conn))}
    written = []
    for record in records:
        old = stored.get(record.name)
        if old is not None and old.record == record and old.source == source:
            continue
        await SQL.execute(
            conn,
            "register_job_type",
            name=record.name,
            queue=record.queue,
            payload_schema=dict(record.payload_schema) if record.payload_schema else None,
            allowed_tenants=sorted(record.allowed_tenants)
            if record.allowed_tenants is not None
            else None,
            source=source,
            registered_by=registered_by,
        )
        written.append(record.name)
    return written


async def load_types(conn: Conn) -> list[JobTypeRow]:
    """Every registered type, by name."""
    return [_job_type(r) for r in await SQL.fetch(conn, "registry_job_types")]


async def job_type(conn: Conn, name: str) -> JobTypeRow | None:
    """One registered type, or None."""
    return next((t for t in await load_types(conn) if t.record.name == name), None)

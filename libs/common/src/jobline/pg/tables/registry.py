"""Declared queues and registered job types (migration 0005).

Both tables are small (one row per queue, one per job type) and read whole: each gateway and
relay keeps a copy, dropped on the ``jobline_catalog`` NOTIFY their triggers send.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, Integer, Table, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from jobline.pg.tables.conventions import created_at, metadata, one_of, updated_at

TYPE_SOURCES: Final = ("worker", "operator")

queues: Final = Table(
    "queues",
    metadata,
    Column("name", Text, primary_key=True),
    # The work topic's partition count when the relay (or a worker) creates it; NULL: the
    # deployment's JOBLINE_TOPIC_PARTITIONS. An existing topic is never resized.
    Column("partitions", Integer),
    Column("declared_by", Text, nullable=False),  # "migration", "operator", "worker:<id>"
    created_at(),
    updated_at(),
    CheckConstraint("name ~ '^[a-z0-9_-]{1,64}$' AND name <> 'dlq'", name="name_valid"),
    CheckConstraint(
        "partitions IS NULL OR partitions BETWEEN 1 AND 10000", name="partitions_range"
    ),
)

job_types: Final = Table(
    "job_types",
    metadata,
    Column("name", Text, primary_key=True),
    # A type's queue must be declared: no type can route jobs to a topic nobody declared.
    Column("queue", Text, ForeignKey("queues.name"), nullable=False),
    # The JSON Schema of the payload (from the handler's pydantic model); NULL: any object.
    Column("payload_schema", JSONB),
    # NULL: every tenant may submit the type.
    Column("allowed_tenants", ARRAY(Text)),
    Column("source", Text, nullable=False),
    Column("registered_by", Text, nullable=False),  # the worker's id, or "operator"
    created_at(),
    updated_at(),
    CheckConstraint(one_of("source", TYPE_SOURCES), name="source_valid"),
    # The foreign key's lookup when a queue row changes.
    Index("ix_job_types_queue", "queue"),
)

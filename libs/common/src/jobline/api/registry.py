"""Declared queues and registered job types: ``/v1/job-types`` (any tenant, the types it may
submit) and ``/v1/admin/queues``, ``/v1/admin/job-types`` (the operator, ``admin`` scope).

A job may only name a declared queue and a registered type, and its payload must satisfy the
type's schema; otherwise the submission is refused (422, naming the field).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from jobline.api.fields import Answer, JsonNumber, JsonObject, QueueName, Request
from jobline.api.keys import TenantId

MAX_PARTITIONS = 10_000


class QueueIn(Request):
    """A queue to declare (or a new partition count for a declared one)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"partitions": 8}]})

    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS), JsonNumber] | None = Field(
        default=None,
        description="Partitions of the queue's topic when it is created; null: the "
        "deployment's default. An existing topic is not resized.",
    )


class QueueOut(Answer):
    """A declared queue."""

    name: str
    partitions: int | None
    declared_by: str = Field(description="`migration`, `operator` or `worker:<id>`.")
    created_at: datetime
    updated_at: datetime


class QueueDeclarations(Answer):
    """Every declared queue, by name."""

    queues: list[QueueOut]


class JobTypeIn(Request):
    """A job type to declare before any worker registers it (a worker's registration at
    start replaces it with what its handler says)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "queue": "emails",
                    "payload_schema": {
                        "type": "object",
                        "properties": {"to": {"type": "string"}},
                        "required": ["to"],
                    },
                    "allowed_tenants": ["acme"],
                }
            ]
        }
    )

    queue: QueueName = Field(default="default", description="A declared queue.")
    payload_schema: JsonObject | None = Field(
        default=None, description="JSON Schema (2020-12 unless `$schema` says) of the payload."
    )
    allowed_tenants: Annotated[list[TenantId], Field(max_length=10_000)] | None = Field(
        default=None, description="Only these tenants may submit the type; null: every tenant."
    )


class JobTypeOut(Answer):
    """A registered job type, as a tenant that may submit it sees it."""

    name: str
    queue: str = Field(description="Where its jobs go when a submission names no queue.")
    payload_schema: dict[str, Any] | None = Field(
        description="Submitted payloads must satisfy this JSON Schema; null: any object."
    )
    source: str = Field(description="`worker` (registered at start) or `operator`.")
    updated_at: datetime


class JobTypeList(Answer):
    """The job types the caller may submit, by name."""

    job_types: list[JobTypeOut]


class JobTypeAdminOut(JobTypeOut):
    """A registered job type with who may submit it and who registered it."""

    allowed_tenants: list[str] | None
    registered_by: str
    created_at: datetime


class JobTypeAdminList(Answer):
    """Every registered job type, by name."""

    job_types: list[JobTypeAdminOut]

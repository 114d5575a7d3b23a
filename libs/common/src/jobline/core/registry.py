"""Declared queues and registered job types: what a submission may name. Pure: no I/O.

A queue exists only once it is declared (migration 0005 declares ``default``; an operator
declares more through ``PUT /v1/admin/queues/{name}``; a worker declares the queues it
serves). Only declared queues get a Kafka topic: a tenant naming a queue can no longer create
one. A job type is registered by the workers that run it (name, queue, payload schema,
allowed tenants), or declared ahead of them by an operator so deploy order does not matter.

:func:`admit` is the gateway's decision for one submitted job; the gateway turns its typed
errors into a 422 problem, and the relay uses :func:`undeclared_queues` before it publishes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from jobline.core import topics
from jobline.core.errors import JoblineError

MAX_PARTITIONS: Final = 10_000


class RegistryError(JoblineError):
    """The submission names something the registry does not allow."""

    field: str = ""


class UnknownJobType(RegistryError):
    """No worker registered this job type and no operator declared it."""

    field = "type"


class UndeclaredQueue(RegistryError):
    """The queue is not declared."""

    field = "queue"


@dataclass(frozen=True, slots=True)
class QueueDeclaration:
    """A declared queue. ``partitions`` None: the deployment's ``JOBLINE_TOPIC_PARTITIONS``."""

    name: str
    partitions: int | None = None

    def __post_init__(self) -> None:
        topics.validate_queue_name(self.name)
        if self.partitions is not None and not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ValueError(f"partitions must be 1..{MAX_PARTITIONS}, not {self.partitions}")


@dataclass(frozen=True, slots=True)
class JobTypeRecord:
    """A registered job type. ``allowed_tenants`` None: every tenant may submit it."""

    name: str
    queue: str
    payload_schema: Mapping[str, Any] | None = None
    allowed_tenants: frozenset[str] | None = None

    def allows(self, tenant_id: str) -> bool:
        """Whether ``tenant_id`` may submit (and see) this type."""
        return self.allowed_tenants is None or tenant_id in self.allowed_tenants


@dataclass(frozen=True, slots=True)
class Registry:
    """One consistent reading of the declared queues and the registered job types."""

    queues: Mapping[str, QueueDeclaration] = field(default_factory=dict)
    types: Mapping[str, JobTypeRecord] = field(default_factory=dict)

    @classmethod
    def of(cls, queues: Iterable[QueueDeclaration], types: Iterable[JobTypeRecord]) -> Registry:
        return cls({q.name: q for q in queues}, {t.name: t for t in types})

    def visible_types(self, tenant_id: str) -> list[JobTypeRecord]:
        """The types ``tenant_id`` may submit, by name."""
        return sorted((t for t in self.types.values() if t.allows(tenant_id)), key=_name)


def _name(record: JobTypeRecord) -> str:
    return record.name


@dataclass(frozen=True, slots=True)
class Admission:
    """What the registry says of one job: the queue it goes to and the type's record
    (None only when unregistered types are accepted: then nothing validates its payload)."""

    queue: str
    record: JobTypeRecord | None


def admit(
    registry: Registry,
    tenant_id: str,
    job_type: str,
    queue: str | None,
    *,
    accept_undeclared: bool = False,
) -> Admission:
    """Decide one submitted job: its type must be registered for the tenant and its queue
    declared. ``queue`` None means the request named none: the type's own queue.

    A type whose allowed tenants exclude the caller is answered exactly like an unknown type,
    as another tenant's job answers like one that never existed: the registry does not tell
    a tenant which types other tenants have. ``accept_undeclared`` (tests and local
    experiments only, never in production) lets unknown types and queues through.
    """
    record = registry.types.get(job_type)
    if record is not None and not record.allows(tenant_id):
        record = None
    if record is None and not accept_undeclared:
        raise UnknownJobType(f"unknown job type {job_type!r}: no worker registered it")
    resolved = queue if queue is not None else (record.queue if record else "default")
    if resolved not in registry.queues and not accept_undeclared:
        raise UndeclaredQueue(f"queue {resolved!r} is not declared")
    return Admission(resolved, record)


def undeclared_queues(logical_topics: Iterable[str], declared: Collection[str]) -> set[str]:
    """The queues of the work topics in ``logical_topics`` that are not in ``declared``.

    The dead-letter, events and insights topics are the platform's own: always allowed.
    """
    return {
        topics.queue_of(logical)
        for logical in logical_topics
        if topics.is_work(logical) and topics.queue_of(logical) not in declared
    }

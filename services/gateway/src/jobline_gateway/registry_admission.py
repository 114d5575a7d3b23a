"""Admitting submitted jobs against the registry: known type, declared queue, valid payload.

Every job of a request is checked and every refusal named (``jobs.3.payload.to`` with the
pointer ``/jobs/3/payload/to``), in one 422 problem, so a batch is fixed in one round. The
decisions are :func:`jobline.core.registry.admit` and the type's compiled payload schema;
this module only gathers them and re-reads the registry once when a name was not found.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from jobline.api.jobs import JobSpec
from jobline.core import registry
from jobline.core.payloads import MAX_VIOLATIONS
from jobline.pg import registry as pg_registry
from jobline.web.problems import FieldError, ProblemError
from jobline_gateway.registry_cache import RegistryCache, Snapshot

MAX_ERRORS: Final = 100
"""Field errors in one problem: a batch of 1,000 bad jobs is named, not echoed whole."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """What admission reads of a job to be: ``queue`` None when the request named none."""

    type: str
    queue: str | None
    payload: Any
    at: str  # where it sits in the body, as a JSON pointer ("" for the whole body)

    @classmethod
    def of(cls, spec: JobSpec, at: str = "") -> Candidate:
        # A submission that names no queue goes to the type's own queue.
        given = spec.queue if "queue" in spec.model_fields_set else None
        return cls(spec.type, given, spec.payload, at)


def check(
    snapshot: Snapshot,
    tenant_id: str,
    candidates: Sequence[Candidate],
    *,
    accept_undeclared: bool,
) -> tuple[list[str], list[FieldError], bool]:
    """The queue of each candidate, the refusals, and whether any was a name not found (a
    type or queue a fresher reading might know)."""
    queues: list[str] = []
    errors: list[FieldError] = []
    missed = False
    for c in candidates:
        try:
            admitted = registry.admit(
                snapshot.registry,
                tenant_id,
                c.type,
                c.queue,
                accept_undeclared=accept_undeclared,
            )
        except registry.RegistryError as exc:
            missed = True
            errors.append(_error(f"{c.at}/{exc.field}", str(exc)))
            queues.append(c.queue or "default")
            continue
        queues.append(admitted.queue)
        schema = snapshot.schemas.get(c.type) if admitted.record is not None else None
        if schema is not None:
            errors += [
                _error(f"{c.at}/payload{v.pointer}", v.message)
                for v in schema.violations(c.payload)[:MAX_VIOLATIONS]
            ]
    return queues, errors, missed


def _error(pointer: str, message: str) -> FieldError:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    return FieldError(field=".".join(parts), location="body", pointer=pointer, message=message)


async def admit(
    cache: RegistryCache,
    tenant_id: str,
    candidates: Sequence[Candidate],
    *,
    accept_undeclared: bool,
) -> list[str]:
    """The queue of each candidate, or a 422 problem naming every refused field."""
    started = time.monotonic()
    snapshot = await cache.get()
    queues, errors, missed = check(
        snapshot, tenant_id, candidates, accept_undeclared=accept_undeclared
    )
    if missed:
        # Registered or declared a moment ago, perhaps: read once more before refusing.
        snapshot = await cache.since(started)
        queues, errors, _ = check(
            snapshot, tenant_id, candidates, accept_undeclared=accept_undeclared
        )
    if errors:
        named = ", ".join(dict.fromkeys(e.field for e in errors[:5]))
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise ProblemError(
            422,
            f"The request is invalid: {named}{more}.",
            kind="validation",
            title="Invalid request",
            errors=errors[:MAX_ERRORS],
        )
    if accept_undeclared:
        await _declare(cache, queues)
    return queues


async def _declare(cache: RegistryCache, queues: list[str]) -> None:
    # Only with gateway_accept_undeclared: the relay publishes to declared queues only, so
    # a queue named here is declared before a job is written to it.
    known = (await cache.get()).registry.queues
    if any(q not in known for q in queues):
        async with cache.db.connection() as conn:
            await pg_registry.declare_missing_queues(conn, queues, "gateway:accept-undeclared")
        cache.changed("queues")

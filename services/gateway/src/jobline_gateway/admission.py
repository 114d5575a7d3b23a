"""Admitting submitted jobs against the registry: known type, declared queue, valid payload.

Every job of a request is checked and every refusal named (``jobs.3.payload.to`` with the
pointer ``/jobs/3/payload/to``), in one 422 problem, so a batch is fixed in one round. The
decisions are :func:`jobline.core.registry.admit` and the type's compiled payload schema;
this module only gathers them and re-reads the registry once when a name was not found.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

from jobline.api.jobs import JobSpec
from jobline.core import registry
from jobline.core.payloads import MAX_VIOLATIONS
from jobline.web.problems import FieldError, ProblemError
from jobline_gateway.registry_cache import RegistryCache, Snapshot

MAX_ERRORS: Final = 100
"""Field errors in one problem: a batch of 1,000 bad jobs is named, not echoed whole."""


def check(
    snapshot: Snapshot,
    tenant_id: str,
    specs: Sequence[JobSpec],
    *,
    batch: bool,
    accept_undeclared: bool,
) -> tuple[list[str], list[FieldError], bool]:
    """The queue of each spec, the refusals, and whether any was a name not found (a type
    or queue a fresher reading might know)."""
    queues: list[str] = []
    errors: list[FieldError] = []
    missed = False
    for i, spec in enumerate(specs):
        base = f"/jobs/{i}" if batch else ""
        # A request that names no queue goes to the type's own queue.
        given = spec.queue if "queue" in spec.model_fields_set else None
        try:
            admitted = registry.admit(
                snapshot.registry,
                tenant_id,
                spec.type,
                given,
                accept_undeclared=accept_undeclared,
            )
        except registry.RegistryError as exc:
            missed = True
            errors.append(_error(f"{base}/{exc.field}", str(exc)))
            queues.append(spec.queue)
            continue
        queues.append(admitted.queue)
        schema = snapshot.schemas.get(spec.type) if admitted.record is not None else None
        if schema is not None:
            errors += [
                _error(f"{base}/payload{v.pointer}", v.message)
                for v in schema.violations(spec.payload)[:MAX_VIOLATIONS]
            ]
    return queues, errors, missed


def _error(pointer: str, message: str) -> FieldError:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    return FieldError(field=".".join(parts), location="body", pointer=pointer, message=message)


async def admit(
    cache: RegistryCache,
    tenant_id: str,
    specs: Sequence[JobSpec],
    *,
    batch: bool,
    accept_undeclared: bool,
) -> list[str]:
    """The queue of each spec, or a 422 problem naming every refused field."""
    started = time.monotonic()
    snapshot = await cache.get()
    queues, errors, missed = check(
        snapshot, tenant_id, specs, batch=batch, accept_undeclared=accept_undeclared
    )
    if missed:
        # Registered or declared a moment ago, perhaps: read once more before refusing.
        snapshot = await cache.since(started)
        queues, errors, _ = check(
            snapshot, tenant_id, specs, batch=batch, accept_undeclared=accept_undeclared
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
    return queues

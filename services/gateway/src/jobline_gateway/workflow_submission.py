"""Accepting a workflow: validate the graph, build its nodes, insert all in one transaction.

The graph is validated as a unit by the pure :func:`jobline.core.workflows.validate` (a 422
names each offending entry by its JSON pointer), every node passes the same admission as a
job (known type, declared queue, valid payload), then one transaction inserts the nodes with
their outbox rows and the Idempotency-Key claim (the jobs' own statement), and the workflow's
row, edges and ``started`` event. Only the roots get a work message; a node with parents is
stored ``scheduled``, waiting, with none (docs/workflows.md).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from starlette.datastructures import State

from jobline.api.workflows import WorkflowIn, WorkflowOut
from jobline.core import states, workflows
from jobline.core.job import Job
from jobline.core.workflows import FailurePolicy, InvalidGraph, Node
from jobline.pg import jobstore, workflowstore
from jobline.pg.keystore import KeyRecord
from jobline.web.problems import FieldError, ProblemError, quota_problem
from jobline_gateway import registry_admission
from jobline_gateway.admission import QuotaExceeded
from jobline_gateway.deps import revoked
from jobline_gateway.idempotency import claim, replay
from jobline_gateway.submission import build_job
from jobline_gateway.workflow_render import NodeRow, render


def graph_problem(exc: InvalidGraph) -> ProblemError:
    """The 422 of an invalid graph, each error with its pointer into the body."""
    return ProblemError(
        422,
        f"Invalid workflow graph: {exc}.",
        kind="validation",
        title="Invalid request",
        errors=[
            FieldError(
                field=e.pointer.strip("/").replace("/", "."),
                location="body",
                pointer=e.pointer,
                message=e.message,
            )
            for e in exc.errors
        ],
    )


async def submit(
    state: State,
    principal: KeyRecord,
    body: WorkflowIn,
    *,
    now: datetime,
    idempotency_key: str | None,
    fingerprint: str | None,
) -> tuple[dict[str, Any], bool]:
    """Insert the workflow; returns its answer and whether it is a replay of the key's."""
    try:
        workflows.validate([Node(n.ref, tuple(n.depends_on)) for n in body.jobs])
    except InvalidGraph as exc:
        raise graph_problem(exc) from None
    tenant_id = principal.tenant_id
    try:
        await state.admission.admit(tenant_id, len(body.jobs))
    except QuotaExceeded as exc:
        raise quota_problem(exc) from None
    specs = [node.job() for node in body.jobs]
    queues = await registry_admission.admit(
        state.registry,
        tenant_id,
        [registry_admission.Candidate.of(s, f"/jobs/{i}") for i, s in enumerate(specs)],
        accept_undeclared=state.settings.gateway_accept_undeclared,
    )
    open_types = {s.type for s in specs if s.max_attempts is None or s.backoff is None}
    policies = await state.catalog.policies(tenant_id, open_types) if open_types else {}
    workflow_id = uuid4()
    jobs: list[Job] = [
        replace(
            build_job(
                spec,
                tenant_id,
                now,
                policy=policies.get(spec.type),
                defaults=state.settings.job_defaults,
                traceparent=None,
                at=f"jobs.{i}",
                queue=queues[i],
            ),
            workflow_id=workflow_id,
        )
        for i, spec in enumerate(specs)
    ]
    ids = {spec.ref: job.id for spec, job in zip(body.jobs, jobs, strict=True)}
    submitted = [
        states.submit_waiting(job, now) if spec.depends_on else states.submit(job, now)
        for spec, job in zip(body.jobs, jobs, strict=True)
    ]
    new = workflowstore.NewWorkflow(
        id=workflow_id,
        tenant_id=tenant_id,
        on_failure=FailurePolicy(body.on_failure.value),
        metadata=body.metadata,
        refs={ids[s.ref]: s.ref for s in body.jobs},
        pendings={ids[s.ref]: len(s.depends_on) for s in body.jobs},
        edges=[(ids[p], ids[s.ref], p) for s in body.jobs for p in s.depends_on],
    )
    answer = _answer(new, body, [t.job for t in submitted], now)
    retention = timedelta(seconds=state.settings.idempotency_retention_seconds)
    key_claim = claim(tenant_id, idempotency_key, fingerprint, [answer], now + retention)
    async with state.db.transaction() as conn:
        inserted = await jobstore.insert(
            conn, submitted, idempotency=key_claim, api_key_id=principal.id
        )
        if not inserted.authorized:
            state.catalog.forget_key(principal.id)
            raise revoked()
        if not inserted.inserted:
            assert idempotency_key is not None
            assert fingerprint is not None
            replayed = await replay(conn, tenant_id, idempotency_key, fingerprint)
            return dict(replayed.jobs[0]), True
        await workflowstore.insert(conn, new, now)
    return answer, False


def _answer(
    new: workflowstore.NewWorkflow, body: WorkflowIn, jobs: list[Job], now: datetime
) -> dict[str, Any]:
    row = {
        "id": new.id,
        "state": "running",
        "on_failure": new.on_failure.value,
        "metadata": new.metadata,
        "nodes": len(jobs),
        "unfinished": len(jobs),
        "failed": 0,
        "created_at": now,
        "finished_at": None,
    }
    nodes: list[NodeRow] = [
        (job, spec.ref, list(spec.depends_on), job.metadata)
        for spec, job in zip(body.jobs, jobs, strict=True)
    ]
    out: WorkflowOut = render(row, nodes)
    return out.model_dump(mode="json")

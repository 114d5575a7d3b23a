"""Workflows: the graph's coordination state (jobline.core.workflows; docs/workflows.md).

- ``workflows``: one row per submitted graph, its state, failure policy and two counters the
  nodes' terminal transitions move (``unfinished``, ``failed``), so the workflow's own end is
  decided by the transaction that ends its last node, without counting the nodes.
- ``job_dependencies``: one row per edge (parent -> child). ``outcome`` is set once, by the
  transaction that ends the parent (a guarded ``UPDATE ... WHERE outcome IS NULL``): that is
  what makes a parent's decrement of its child's ``jobs.pending_parents`` happen exactly once.

The nodes themselves are ``jobs`` rows with ``workflow_id``, ``workflow_ref`` and
``pending_parents`` (see :mod:`jobline.pg.tables.jobs`).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from jobline.core.job import JobState
from jobline.core.workflows import FailurePolicy, WorkflowState
from jobline.pg.tables.conventions import (
    EMPTY_OBJECT,
    created_at,
    metadata,
    one_of,
    tenant_fk,
    updated_at,
)

WORKFLOW_STATES: Final = tuple(s.value for s in WorkflowState)
FAILURE_POLICIES: Final = tuple(p.value for p in FailurePolicy)
EDGE_OUTCOMES: Final = (JobState.SUCCEEDED.value, JobState.DEAD.value, JobState.CANCELLED.value)

workflows: Final = Table(
    "workflows",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Text, tenant_fk(), nullable=False),
    Column("state", Text, nullable=False),
    Column("on_failure", Text, nullable=False),
    Column("metadata", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("nodes", Integer, nullable=False),
    Column("unfinished", Integer, nullable=False),  # nodes not in a terminal state
    Column("failed", Integer, nullable=False, server_default=text("0")),  # dead or cancelled
    Column("sequence", Integer, nullable=False, server_default=text("0")),  # events written
    created_at(),
    updated_at(),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint(one_of("state", WORKFLOW_STATES), name="state"),
    CheckConstraint(one_of("on_failure", FAILURE_POLICIES), name="on_failure"),
    CheckConstraint("unfinished >= 0 AND failed >= 0", name="counters_nonnegative"),
    # A tenant's workflows newest first (and the tenant cascade).
    Index("ix_workflows_tenant_created", "tenant_id", text("created_at DESC"), text("id DESC")),
    # The purge: finished workflows, oldest first. Running ones are not in it.
    Index(
        "ix_workflows_finished_at",
        "finished_at",
        postgresql_where=text("finished_at IS NOT NULL"),
    ),
)

job_dependencies: Final = Table(
    "job_dependencies",
    metadata,
    Column("parent_id", Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("child_id", Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("parent_ref", Text, nullable=False),
    Column("outcome", Text),  # the parent's terminal state, once it ended
    # Leads with parent_id: a parent's end finds its dependants through it.
    PrimaryKeyConstraint("parent_id", "child_id"),
    CheckConstraint(f"outcome IS NULL OR {one_of('outcome', EDGE_OUTCOMES)}", name="outcome"),
    # A claimed child loads its parents' results; the cascade from a purged child.
    Index("ix_job_dependencies_child_id", "child_id"),
)

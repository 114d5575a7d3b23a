-- Workflows (jobline/pg/workflowstore.py; docs/workflows.md): the graph's rows, the fan-in
-- that runs in the transaction that ends a node, and the reads of GET /v1/workflows/{id}.
-- Loaded like queries.sql (":name" parameters become asyncpg's $n).

-- name: insert_workflow
-- A submitted workflow, in the transaction that inserted its nodes (insert_jobs, with the
-- Idempotency-Key claim): its row, the nodes' workflow columns (a node with parents starts
-- with pending_parents = their number and no work message), and one row per edge.
WITH wf AS (
    INSERT INTO workflows (id, tenant_id, state, on_failure, metadata, nodes, unfinished,
                           sequence, created_at, updated_at)
    VALUES (:id, :tenant_id, 'running', :on_failure, :metadata, :nodes, :nodes, 1, :now, :now)
    RETURNING 1
),
marked AS (
    UPDATE jobs AS j SET workflow_id = :id, workflow_ref = v.ref, pending_parents = v.pending
    FROM unnest(CAST(:ids AS uuid[]), CAST(:refs AS text[]), CAST(:pendings AS int[]))
        AS v(id, ref, pending)
    WHERE j.id = v.id
    RETURNING 1
),
edges AS (
    INSERT INTO job_dependencies (parent_id, child_id, parent_ref)
    SELECT * FROM unnest(
        CAST(:parent_ids AS uuid[]), CAST(:child_ids AS uuid[]), CAST(:parent_refs AS text[])
    )
    RETURNING 1
)
SELECT (SELECT count(*) FROM wf) AS workflows, (SELECT count(*) FROM marked) AS nodes,
       (SELECT count(*) FROM edges) AS edges

-- name: resolve_edges
-- The fan-in, in the transaction that ends the parents (:ids, ended in :states):
-- * Each edge's outcome is set once (WHERE outcome IS NULL): the parent's terminal
--   transition is itself guarded, and this guard makes the decrement once per edge even so.
-- * The children's rows are locked in id order (as lock_jobs does), so two transactions
--   ending parents of the same children queue instead of deadlocking; the decrement then
--   reads the newest row version: of N parents ending concurrently exactly one sees 0.
-- * Only a child still waiting (scheduled) counts down; one the policy already cancelled
--   keeps its count (its edges are still resolved, for the record).
-- Served by the primary key (parent_id, child_id) and ix_job_dependencies_child_id.
WITH v AS (
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:states AS text[])) AS v(id, state)
),
resolved AS (
    UPDATE job_dependencies AS d SET outcome = v.state
    FROM v
    WHERE d.parent_id = v.id AND d.outcome IS NULL
    RETURNING d.child_id, d.parent_ref, d.outcome
),
per_child AS (
    SELECT child_id, count(*) AS n,
           array_agg(parent_ref ORDER BY parent_ref)
               FILTER (WHERE outcome <> 'succeeded') AS failed_refs,
           array_agg(outcome ORDER BY parent_ref)
               FILTER (WHERE outcome <> 'succeeded') AS failed_states
    FROM resolved GROUP BY child_id
),
locked AS (
    SELECT j.id FROM jobs AS j JOIN per_child AS p ON p.child_id = j.id
    ORDER BY j.id
    FOR UPDATE OF j
),
counted AS (
    UPDATE jobs AS j SET pending_parents = j.pending_parents - p.n
    FROM per_child AS p
    WHERE j.id = p.child_id AND j.id IN (SELECT id FROM locked)
      AND j.state = 'scheduled' AND j.pending_parents >= p.n
    RETURNING j.id, j.pending_parents, j.workflow_id, p.failed_refs, p.failed_states
)
SELECT c.id, c.pending_parents, c.failed_refs, c.failed_states, w.on_failure
FROM counted AS c JOIN workflows AS w ON w.id = c.workflow_id

-- name: note_parent_cancel
-- Why the CANCEL policy cancelled a waiting node (its metadata, shown by the API), and the
-- mark a redrive of that parent looks for to bring the node back (revivable_children).
UPDATE jobs SET metadata = metadata || jsonb_build_object(
    'cancel_reason', CAST(v.reason AS text), 'cancelled_by_parent', CAST(v.parent AS text))
FROM unnest(CAST(:ids AS uuid[]), CAST(:reasons AS text[]), CAST(:parents AS text[]))
    AS v(id, reason, parent)
WHERE jobs.id = v.id

-- name: revivable_children
-- A redriven (or revived) node's dependants that the CANCEL policy cancelled, and that no
-- other failed parent holds back: their edge from this node is reopened, their count is
-- the edges not yet resolved, and the policy's mark goes. The caller then applies Revive
-- to each (cancelled -> scheduled, waiting again) through the state machine.
WITH candidates AS (
    SELECT d.child_id FROM job_dependencies AS d JOIN jobs AS c ON c.id = d.child_id
    WHERE d.parent_id = :id AND c.state = 'cancelled' AND c.attempt = 0
      AND c.metadata ? 'cancelled_by_parent'
      AND NOT EXISTS (
          SELECT 1 FROM job_dependencies AS o
          WHERE o.child_id = d.child_id AND o.parent_id <> :id
            AND o.outcome IN ('dead', 'cancelled')
      )
    ORDER BY d.child_id
    FOR UPDATE OF c
),
reopened AS (
    UPDATE job_dependencies AS d SET outcome = NULL
    FROM candidates WHERE d.parent_id = :id AND d.child_id = candidates.child_id
    RETURNING d.child_id
)
UPDATE jobs AS j SET
    pending_parents = (
        SELECT count(*) FROM job_dependencies AS o
        WHERE o.child_id = j.id AND (o.outcome IS NULL OR o.parent_id = :id)
    ),
    metadata = j.metadata - 'cancel_reason' - 'cancelled_by_parent'
FROM reopened WHERE j.id = reopened.child_id
RETURNING j.id

-- name: count_nodes
-- The workflow's counters move with its nodes' transitions into (and, on redrive, out of)
-- a terminal state, in the same transaction: the workflow ends in the transaction that ends
-- its last node, without counting rows. Row lock on the workflow: its nodes' ends serialise
-- here for the moment of this statement (one statement per transaction, grouped by workflow).
UPDATE workflows AS w SET
    unfinished = w.unfinished + v.unfinished, failed = w.failed + v.failed, updated_at = now()
FROM unnest(CAST(:ids AS uuid[]), CAST(:unfinished AS int[]), CAST(:failed AS int[]))
    AS v(id, unfinished, failed)
WHERE w.id = v.id
RETURNING w.id, w.tenant_id, w.state, w.nodes, w.unfinished, w.failed, w.sequence,
          w.created_at, w.finished_at

-- name: set_workflow_state
-- A workflow's own transition (decided by jobline.core.workflows), guarded on the state it
-- was decided from; its event number moves with it.
UPDATE workflows SET state = :state, finished_at = :finished_at, sequence = sequence + 1,
       updated_at = now()
WHERE id = :id AND state = :expected_state
RETURNING id, tenant_id, state, nodes, unfinished, failed, sequence, created_at, finished_at

-- name: finish_cancelled
-- A cancelled workflow whose last node just ended: only its end time (its event went out
-- when it was cancelled).
UPDATE workflows SET finished_at = :finished_at, updated_at = now()
WHERE id = :id AND state = 'cancelled' AND finished_at IS NULL

-- name: get_workflow
SELECT * FROM workflows WHERE id = :id AND tenant_id = :tenant_id

-- name: list_workflows
-- GET /v1/workflows and the console's list: a tenant's workflows newest first, one keyset
-- page. ix_workflows_tenant_created (tenant_id, created_at DESC, id DESC) is the order, and
-- the row-value seek always takes part (the first page passes 'infinity'), so each page is
-- an index range scan that stops after :limit rows however deep; the state filter is
-- applied on that scan. Each row counts its nodes by state (ix_jobs_workflow_id).
SELECT w.*, coalesce((
    SELECT jsonb_object_agg(s.state, s.n)
    FROM (SELECT state, count(*) AS n FROM jobs WHERE workflow_id = w.id GROUP BY state) AS s
), '{}') AS nodes_by_state
FROM workflows AS w
WHERE w.tenant_id = :tenant_id
  AND (CAST(:state AS text) IS NULL OR w.state = :state)
  AND (w.created_at, w.id) < (:before_created, :before_id)
ORDER BY w.created_at DESC, w.id DESC
LIMIT :limit

-- name: workflow_nodes
-- The nodes of a workflow with their parents' refs (ix_jobs_workflow_id, then the edges'
-- child index).
SELECT j.*, coalesce((
    SELECT array_agg(d.parent_ref ORDER BY d.parent_ref)
    FROM job_dependencies AS d WHERE d.child_id = j.id
), '{}') AS depends_on
FROM jobs AS j WHERE j.workflow_id = :id
ORDER BY j.created_at, j.workflow_ref

-- name: unfinished_nodes
-- The nodes a workflow cancel acts on.
SELECT id FROM jobs
WHERE workflow_id = :id AND state IN ('scheduled', 'queued', 'running', 'retrying')

-- name: node_by_ref
SELECT id FROM jobs WHERE workflow_id = :id AND workflow_ref = :ref

-- name: parent_results
-- What claimed workflow nodes receive: each parent's ref, end state, result and last error
-- (ix_job_dependencies_child_id, then each parent by primary key). Read at claim time,
-- only for nodes (the envelope says which job is one).
SELECT d.child_id, d.parent_ref, p.state, p.result, p.last_error
FROM job_dependencies AS d JOIN jobs AS p ON p.id = d.parent_id
WHERE d.child_id = ANY(CAST(:ids AS uuid[]))

-- name: purge_workflows
-- One batch of finished workflows whose nodes the jobs' purge has deleted already (a node is
-- purged after its own end, so a workflow's rows outlive its nodes by less than one round).
-- ix_workflows_finished_at yields them oldest first; the NOT EXISTS probes
-- ix_jobs_workflow_id; SKIP LOCKED leaves a workflow someone is writing right now.
WITH doomed AS (
    SELECT w.id FROM workflows AS w
    WHERE w.finished_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM jobs AS j WHERE j.workflow_id = w.id)
    ORDER BY w.finished_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
DELETE FROM workflows AS w USING doomed WHERE w.id = doomed.id

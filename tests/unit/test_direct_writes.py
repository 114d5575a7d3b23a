"""The direct claim and success write exactly the columns the state machine changes.

claim_jobs and succeed_jobs (jobline/pg/queries.sql) write a fixed list of columns instead of
the whole row; if a Claim or a Succeed ever changed another field, the direct way would
silently drop that change. These cases hold the lists to the machine.
"""

from dataclasses import fields
from datetime import UTC, datetime, timedelta

from jobline.core.job import Job
from jobline.core.states import Claim, Succeed, submit, transition
from jobline.pg.jobstore import CLAIM_COLUMNS, SUCCEED_COLUMNS
from tests.support import make_job


def changed(before: Job, after: Job) -> set[str]:
    return {f.name for f in fields(Job) if getattr(before, f.name) != getattr(after, f.name)}


def test_a_claim_changes_exactly_the_columns_claim_jobs_writes():
    T0 = datetime.now(UTC)  # after make_job's run_at: due at once
    queued = submit(make_job("t"), T0).job
    claimed = transition(queued, Claim(1, "w", 30), T0 + timedelta(seconds=1)).job
    assert changed(queued, claimed) == CLAIM_COLUMNS - {"finished_at"}  # None before and after
    assert "finished_at" in CLAIM_COLUMNS  # a redriven job's old finish time is cleared


def test_a_success_changes_exactly_the_columns_succeed_jobs_writes():
    T0 = datetime.now(UTC)
    queued = submit(make_job("t"), T0).job
    running = transition(queued, Claim(1, "w", 30), T0).job
    done = transition(running, Succeed(1, "w", {"ok": 1}), T0 + timedelta(seconds=2)).job
    assert changed(running, done) == SUCCEED_COLUMNS

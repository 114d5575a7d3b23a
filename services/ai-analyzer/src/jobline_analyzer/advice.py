"""Retry recommendations as the API shows them: maths from `recovery`, policy in Jobline's terms.

Attempt history comes from the analyzer's own tables (``analyzer_jobs``/``analyzer_attempts``),
built from the lifecycle events, not from ``jobs``/``job_attempts``. Reasons: the events carry
everything needed (attempt number, outcome, error type and message, timings); the history then
outlives the jobs' retention purge, follows the same dedup and replay rules as the rollups,
and the analyzer keeps no read dependency on the job path's hot tables (it could run on its own
database). The cost is a second copy of a few columns per attempt.

A recommendation's id is a uuid5 of (tenant, type, policy): the same advice keeps its id, and
applying an id writes exactly the policy that was shown under it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobline_analyzer.recovery import (
    AttemptStat,
    JobHistory,
    Recommendation,
    RecoveryTime,
    recommend,
    redrive_likely,
    time_to_recovery,
)

NAMESPACE = uuid.UUID("5b0d3f0e-8f7a-4d52-9a57-0c1a9d1e6a11")
MAX_DLQ_LISTED = 20
EXPONENT_MULTIPLIER = 2.0


@dataclass(frozen=True, slots=True)
class Advice:
    """One job type's recommendation: its id, the policy to apply and the API body."""

    id: uuid.UUID
    policy: dict[str, Any]
    body: dict[str, Any]


def policy_of(rec: Recommendation) -> dict[str, Any]:
    """The recommendation as a ``job_type_policies`` row (jobline.backoff's terms)."""
    if rec.backoff == "none":
        backoff = {"kind": "fixed", "base_seconds": 0.0, "max_seconds": 0.0}
    elif rec.backoff == "constant":
        backoff = {
            "kind": "fixed",
            "base_seconds": rec.base_seconds,
            "max_seconds": rec.cap_seconds,
        }
    else:
        backoff = {
            "kind": "exponential",
            "base_seconds": rec.base_seconds,
            "max_seconds": rec.cap_seconds,
        }
    backoff["multiplier"] = EXPONENT_MULTIPLIER
    return {
        "max_attempts": rec.max_attempts,
        "backoff": backoff,
        "non_retryable_errors": non_retryable_types(rec),
    }


def non_retryable_types(rec: Recommendation) -> list[str]:
    """Exception types to stop retrying: every observed class of the type never recovers.

    Policies name exception types (what a worker can match), while classes also carry the
    normalised message; a type is listed only if none of its classes recovers on retry.
    """
    never = set(rec.non_retryable)
    types: dict[str, bool] = {}
    for report in rec.classes:
        name = report.error_class.split(":", 1)[0].strip()
        types[name] = types.get(name, True) and report.error_class in never
    return sorted(name for name, all_never in types.items() if all_never)


def _stat(s: AttemptStat) -> dict[str, Any]:
    return {
        "attempt": s.attempt,
        "trials": s.trials,
        "successes": s.successes,
        "p": round(s.p, 4),
        "low": round(s.low, 4),
        "high": round(s.high, 4),
    }


def _ttr(t: RecoveryTime) -> dict[str, Any]:
    return {
        "jobs": t.jobs,
        "recovered": t.recovered,
        "median_seconds": t.median_seconds,
        "p90_seconds": t.p90_seconds,
    }


def advise(
    tenant: str,
    job_type: str,
    histories: Sequence[JobHistory],
    now: datetime,
    *,
    current_max_attempts: int,
) -> Advice:
    """Recommendation, per-class report and DLQ triage for one job type."""
    rec = recommend(job_type, histories, now, current_max_attempts=current_max_attempts)
    policy = policy_of(rec)
    rec_id = uuid.uuid5(
        NAMESPACE, json.dumps({"t": tenant, "type": job_type, "p": policy}, sort_keys=True)
    )
    failures = [h for h in histories if h.first_failure is not None]
    dead = sorted(
        (h for h in histories if h.final_state == "dead" and h.attempts),
        key=lambda h: h.attempts[-1].finished_at,
        reverse=True,
    )
    verdicts = [redrive_likely(d, histories, now, max_attempts=rec.max_attempts) for d in dead]
    body: dict[str, Any] = {
        "id": str(rec_id),
        "job_type": job_type,
        "jobs": len(histories),
        "current_max_attempts": current_max_attempts,
        "policy": policy,
        "explanation": rec.explanation,
        "attempts": [_stat(s) for s in rec.attempts],
        "time_to_recovery": _ttr(time_to_recovery(failures, now)),
        "error_classes": [
            {
                "error_class": c.error_class,
                "jobs": c.jobs,
                "decided": c.decided,
                "recovered": c.recovered,
                "recovery_p": round(c.recovery_p, 4),
                "recovery_low": round(c.recovery_low, 4),
                "recovery_high": round(c.recovery_high, 4),
                "attempts": [_stat(s) for s in c.attempts],
                "time_to_recovery": _ttr(c.time_to_recovery),
                "retryable": c.retryable,
            }
            for c in rec.classes
        ],
        "dlq": {
            "dead_jobs": len(dead),
            "redrive_likely": sum(v.likely for v in verdicts),
            "jobs": [
                {
                    "job_id": v.job_id,
                    "error_class": v.error_class,
                    "redrive_likely": v.likely,
                    "p_redrive": round(v.p_redrive, 4),
                    "reason": v.reason,
                }
                for v in verdicts[:MAX_DLQ_LISTED]
            ],
        },
    }
    return Advice(rec_id, policy, body)

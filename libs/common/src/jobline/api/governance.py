"""Tenant quotas (operator), job-type policies (``policies:write``) and the audit log
(operator): the bodies of ``/v1/admin/tenants/{tenant}/quotas``, ``/v1/policies`` and
``/v1/audit``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import ConfigDict, Field

from jobline.api.fields import Answer, JsonNumber, Request, Text
from jobline.api.jobs import BackoffIn


class QuotasIn(Request):
    """A tenant's quotas; a field left out (or null) takes the default from settings."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"max_schedules": 50, "submissions_per_second": 200}]},
    )

    # JsonNumber: JSON's true is not the number 1 (schemathesis found `true` taken as 1 s).
    max_schedules: Annotated[int, Field(ge=1, le=10_000_000), JsonNumber] | None = None
    min_schedule_interval_seconds: Annotated[int, Field(ge=1, le=31 * 86400), JsonNumber] | None = (
        None
    )
    max_unfinished_jobs: Annotated[int, Field(ge=1, le=2_000_000_000), JsonNumber] | None = None
    submissions_per_second: Annotated[float, Field(ge=0.001, le=1_000_000), JsonNumber] | None = (
        None
    )
    submission_burst: Annotated[int, Field(ge=1, le=100_000_000), JsonNumber] | None = None


class QuotasOut(Answer):
    """A tenant's quotas in force, and which of them the operator set (the rest are defaults)."""

    tenant: str
    max_schedules: int
    min_schedule_interval_seconds: int
    max_unfinished_jobs: int
    submissions_per_second: float
    submission_burst: int
    overridden: list[str]


class PolicyIn(Request):
    """A job type's retry defaults for the tenant (jobs that name their own still win)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "max_attempts": 8,
                    "backoff": {"kind": "exponential", "base_seconds": 2, "max_seconds": 600},
                }
            ]
        },
    )

    max_attempts: Annotated[int, Field(ge=1, le=1000), JsonNumber] | None = None
    backoff: BackoffIn | None = None
    non_retryable_errors: list[Annotated[Text, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=100
    )


class PolicyOut(Answer):
    """A job type's stored policy."""

    type: str
    max_attempts: int | None
    backoff: dict[str, Any] | None
    non_retryable_errors: list[str]
    source: str
    updated_at: datetime


class PolicyList(Answer):
    policies: list[PolicyOut]


class AuditEntryOut(Answer):
    """One audited action: who (key, tenant), what, target, when, from where."""

    id: UUID
    at: datetime
    key_id: UUID | None
    tenant: str | None
    action: str
    target: str
    address: str | None
    detail: dict[str, Any]


class AuditPage(Answer):
    entries: list[AuditEntryOut]
    next_cursor: str | None

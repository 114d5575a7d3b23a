"""The governance part of :class:`~jobline.client.Client`: job-type policies (the tenant's
retry defaults), quotas and the audit log (operator), and the registry of job types and
queues."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from jobline.api.governance import (
    AuditEntryOut,
    AuditPage,
    PolicyIn,
    PolicyOut,
    QuotasIn,
    QuotasOut,
)
from jobline.api.registry import (
    JobTypeAdminOut,
    JobTypeIn,
    JobTypeOut,
    QueueIn,
    QueueOut,
)
from jobline.api.typelimits import LimitsIn, LimitsOut
from jobline.client import _admin_calls as calls
from jobline.client import pagination
from jobline.client._calls import Id
from jobline.client._sync_base import SyncBase


class SyncGovernance(SyncBase):
    """Policies, quotas, the audit log and the registry (see :class:`~jobline.client.Client`)."""

    def list_policies(self) -> list[PolicyOut]:
        """The tenant's job-type policies."""
        return self._run(calls.list_policies()).policies

    def set_policy(self, job_type: str, policy: PolicyIn | Mapping[str, Any]) -> PolicyOut:
        """Set the tenant's retry defaults for ``job_type`` (``policies:write`` or ``admin``)."""
        return self._run(calls.set_policy(job_type, policy))

    def delete_policy(self, job_type: str) -> None:
        """Remove the tenant's policy for ``job_type``: the platform defaults apply again."""
        self._run(calls.delete_policy(job_type))

    def get_limits(self, job_type: str) -> LimitsOut:
        """The tenant's own limits of ``job_type`` (NotFound: the handler's apply)."""
        return self._run(calls.get_limits(job_type))

    def set_limits(self, job_type: str, limits: LimitsIn | Mapping[str, Any]) -> LimitsOut:
        """Set the tenant's own concurrency and rate limits of ``job_type``, replacing the
        handler's for its jobs (``policies:write`` or ``admin``)."""
        return self._run(calls.set_limits(job_type, limits))

    def delete_limits(self, job_type: str) -> None:
        """Remove the tenant's own limits of ``job_type``: the handler's apply again."""
        self._run(calls.delete_limits(job_type))

    def get_quotas(self, tenant: str) -> QuotasOut:
        """A tenant's quotas, its overrides named (operator)."""
        return self._run(calls.get_quotas(tenant))

    def set_quotas(self, tenant: str, quotas: QuotasIn | Mapping[str, Any]) -> QuotasOut:
        """Override some of a tenant's quotas (operator); unset fields keep the defaults."""
        return self._run(calls.set_quotas(tenant, quotas))

    def list_audit(
        self,
        *,
        tenant: str | None = None,
        action: str | None = None,
        key_id: Id | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AuditPage:
        """One page of the audit log, newest first (operator)."""
        return self._run(
            calls.list_audit(
                tenant=tenant,
                action=action,
                key_id=key_id,
                target=target,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor,
            )
        )

    def iter_audit(
        self,
        *,
        tenant: str | None = None,
        action: str | None = None,
        key_id: Id | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[AuditEntryOut]:
        """Every matching audit entry, newest first, fetching pages as the iteration goes."""

        def fetch(cursor: str | None) -> AuditPage:
            return self.list_audit(
                tenant=tenant,
                action=action,
                key_id=key_id,
                target=target,
                since=since,
                until=until,
                limit=page_size,
                cursor=cursor,
            )

        return pagination.iterate(fetch, lambda page: page.entries)

    def list_job_types(self) -> list[JobTypeOut]:
        """The job types the tenant may submit, with their payload schemas."""
        return self._run(calls.list_job_types()).job_types

    def list_all_job_types(self) -> list[JobTypeAdminOut]:
        """Every registered job type, with who may submit it (operator)."""
        return self._run(calls.list_all_job_types()).job_types

    def declare_job_type(
        self, name: str, job_type: JobTypeIn | Mapping[str, Any]
    ) -> JobTypeAdminOut:
        """Register or change a job type (operator)."""
        return self._run(calls.declare_job_type(name, job_type))

    def list_queue_declarations(self) -> list[QueueOut]:
        """Every declared queue (operator)."""
        return self._run(calls.list_queue_declarations()).queues

    def declare_queue(
        self, name: str, queue: QueueIn | Mapping[str, Any] | None = None
    ) -> QueueOut:
        """Declare a queue, or change its partition count (operator)."""
        return self._run(calls.declare_queue(name, queue or {}))

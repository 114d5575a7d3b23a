"""The operator's and tenant admin's routes as :class:`Call`: policies, quotas, the audit log,
the registry (job types and queues) and webhooks. The rest is in :mod:`._calls`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from jobline.api.governance import AuditPage, PolicyIn, PolicyList, PolicyOut, QuotasIn, QuotasOut
from jobline.api.registry import (
    JobTypeAdminList,
    JobTypeAdminOut,
    JobTypeIn,
    JobTypeList,
    QueueDeclarations,
    QueueIn,
    QueueOut,
)
from jobline.api.typelimits import LimitsIn, LimitsOut
from jobline.api.webhooks import (
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
    WebhookPage,
    WebhookPatch,
)
from jobline.client._calls import WEBHOOKS, Id, body
from jobline.client._transport import Call, model, nothing

# --- policies, quotas, audit --------------------------------------------------------------

POLICIES: Final = "/v1/policies"


def _segment(value: str) -> str:
    """A name as one path segment (job types may hold `/` and `:`)."""
    return quote(value, safe="")


def list_policies() -> Call[PolicyList]:
    return Call("GET", POLICIES, model(PolicyList))


def set_policy(job_type: str, policy: PolicyIn | Mapping[str, Any]) -> Call[PolicyOut]:
    return Call("PUT", f"{POLICIES}/{_segment(job_type)}", model(PolicyOut), json=body(policy))


def delete_policy(job_type: str) -> Call[None]:
    return Call("DELETE", f"{POLICIES}/{_segment(job_type)}", nothing)


def _limits_path(job_type: str) -> str:
    return f"/v1/job-types/{_segment(job_type)}/limits"


def get_limits(job_type: str) -> Call[LimitsOut]:
    return Call("GET", _limits_path(job_type), model(LimitsOut))


def set_limits(job_type: str, limits: LimitsIn | Mapping[str, Any]) -> Call[LimitsOut]:
    return Call("PUT", _limits_path(job_type), model(LimitsOut), json=body(limits))


def delete_limits(job_type: str) -> Call[None]:
    return Call("DELETE", _limits_path(job_type), nothing)


def get_quotas(tenant: str) -> Call[QuotasOut]:
    return Call("GET", f"/v1/admin/tenants/{_segment(tenant)}/quotas", model(QuotasOut))


def set_quotas(tenant: str, quotas: QuotasIn | Mapping[str, Any]) -> Call[QuotasOut]:
    path = f"/v1/admin/tenants/{_segment(tenant)}/quotas"
    return Call("PUT", path, model(QuotasOut), json=body(quotas))


def list_audit(
    *,
    tenant: str | None = None,
    action: str | None = None,
    key_id: Id | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[AuditPage]:
    params = {
        "tenant": tenant,
        "action": action,
        "key_id": key_id,
        "target": target,
        "since": since,
        "until": until,
        "limit": limit,
        "cursor": cursor,
    }
    return Call("GET", "/v1/audit", model(AuditPage), params=params)


# --- the registry: job types and queues ---------------------------------------------------


def list_job_types() -> Call[JobTypeList]:
    return Call("GET", "/v1/job-types", model(JobTypeList))


def list_all_job_types() -> Call[JobTypeAdminList]:
    return Call("GET", "/v1/admin/job-types", model(JobTypeAdminList))


def declare_job_type(name: str, job_type: JobTypeIn | Mapping[str, Any]) -> Call[JobTypeAdminOut]:
    path = f"/v1/admin/job-types/{_segment(name)}"
    return Call("PUT", path, model(JobTypeAdminOut), json=body(job_type))


def list_queue_declarations() -> Call[QueueDeclarations]:
    return Call("GET", "/v1/admin/queues", model(QueueDeclarations))


def declare_queue(name: str, queue: QueueIn | Mapping[str, Any]) -> Call[QueueOut]:
    return Call("PUT", f"/v1/admin/queues/{_segment(name)}", model(QueueOut), json=body(queue))


# --- webhooks -----------------------------------------------------------------------------

_webhook = model(WebhookOut)
_delivery = model(DeliveryOut)


def webhook_body(
    url: str, event_types: Iterable[str], description: str | None = None
) -> dict[str, Any]:
    """The JSON of a new endpoint (the gateway validates)."""
    out: dict[str, Any] = {"url": url, "event_types": list(event_types)}
    if description is not None:
        out["description"] = description
    return out


def create_webhook(webhook: WebhookIn | Mapping[str, Any]) -> Call[WebhookCreated]:
    # Not repeated on a 5xx: a second POST would make a second endpoint.
    return Call("POST", WEBHOOKS, model(WebhookCreated), json=body(webhook), planned=True)


def list_webhooks(*, limit: int | None = None, cursor: str | None = None) -> Call[WebhookPage]:
    params = {"limit": limit, "cursor": cursor}
    return Call("GET", WEBHOOKS, model(WebhookPage), params=params, planned=True)


def get_webhook(webhook_id: Id) -> Call[WebhookOut]:
    return Call("GET", f"{WEBHOOKS}/{webhook_id}", _webhook, planned=True)


def update_webhook(webhook_id: Id, changes: WebhookPatch | Mapping[str, Any]) -> Call[WebhookOut]:
    # The same patch twice leaves the same endpoint: safe to repeat.
    return Call(
        "PATCH",
        f"{WEBHOOKS}/{webhook_id}",
        _webhook,
        json=body(changes),
        idempotent=True,
        planned=True,
    )


def delete_webhook(webhook_id: Id) -> Call[None]:
    return Call("DELETE", f"{WEBHOOKS}/{webhook_id}", nothing, planned=True)


def rotate_webhook_secret(webhook_id: Id) -> Call[WebhookCreated]:
    return Call(
        "POST", f"{WEBHOOKS}/{webhook_id}/rotate-secret", model(WebhookCreated), planned=True
    )


def list_webhook_deliveries(
    webhook_id: Id,
    *,
    status: DeliveryStatus | str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[DeliveryPage]:
    params = {"status": status, "limit": limit, "cursor": cursor}
    return Call(
        "GET",
        f"{WEBHOOKS}/{webhook_id}/deliveries",
        model(DeliveryPage),
        params=params,
        planned=True,
    )


def get_webhook_delivery(webhook_id: Id, delivery_id: Id) -> Call[DeliveryOut]:
    return Call("GET", f"{WEBHOOKS}/{webhook_id}/deliveries/{delivery_id}", _delivery, planned=True)


def replay_webhook_delivery(webhook_id: Id, delivery_id: Id) -> Call[DeliveryOut]:
    # Replaying twice makes the delivery due now twice: safe to repeat.
    return Call(
        "POST",
        f"{WEBHOOKS}/{webhook_id}/deliveries/{delivery_id}/replay",
        _delivery,
        idempotent=True,
        planned=True,
    )

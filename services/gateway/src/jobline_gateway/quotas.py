"""``/v1/admin/tenants/{tenant}/quotas``: the operator reads and sets a tenant's quotas.

Defaults come from settings (``JOBLINE_QUOTA_*``); a PUT replaces the tenant's overrides
(fields left out go back to the default). Gateways pick a change up within
``quota_cache_seconds``; this one at once.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from jobline.api.governance import QuotasIn, QuotasOut
from jobline.core import quotas
from jobline.core.apikeys import TENANT_RE
from jobline.pg import audit, keystore, limits
from jobline.web.problems import responses
from jobline_gateway.deps import Db, KnownQuery, Operator, SettingsDep, actor

router = APIRouter(prefix="/v1/admin/tenants", tags=["admin"], dependencies=[KnownQuery])

TenantParam = Annotated[str, Path(pattern=TENANT_RE.pattern, description="The tenant.")]


def _out(tenant: str, defaults: quotas.Quotas, overrides: dict[str, Any]) -> QuotasOut:
    return QuotasOut(
        tenant=tenant,
        **asdict(quotas.resolve(defaults, overrides)),
        overridden=sorted(overrides),
    )


@router.get(
    "/{tenant}/quotas", operation_id="getQuotas", response_model=QuotasOut, responses=responses()
)
async def get_quotas(tenant: TenantParam, _: Operator, db: Db, settings: SettingsDep) -> Any:
    """A tenant's quotas in force (defaults and the operator's overrides)."""
    async with db.connection() as conn:
        overrides = await limits.overrides(conn, tenant)
    return _out(tenant, settings.quota_defaults, overrides)


@router.put(
    "/{tenant}/quotas", operation_id="setQuotas", response_model=QuotasOut, responses=responses()
)
async def set_quotas(  # noqa: PLR0917 - FastAPI injects each by name
    tenant: TenantParam,
    body: QuotasIn,
    principal: Operator,
    db: Db,
    settings: SettingsDep,
    request: Request,
) -> Any:
    """Replace a tenant's quota overrides (the tenant is created if it does not exist)."""
    values = body.model_dump(exclude_none=True)
    async with db.transaction() as conn:
        await keystore.ensure_tenant(conn, tenant)
        overrides = await limits.set_overrides(conn, tenant, values)
        await audit.record(conn, actor(request, principal), "quota.set", tenant, values)
    request.app.state.admission.forget(tenant)
    return _out(tenant, settings.quota_defaults, overrides)

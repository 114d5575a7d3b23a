"""API keys: ``/v1/admin/keys`` (the platform operator, ``admin`` scope) and ``/v1/keys``
(a tenant's own keys, ``keys:manage`` scope).

A key's plaintext is returned once, by the POST that creates it, and never stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Protocol
from uuid import UUID

from pydantic import ConfigDict, Field

from jobline.api.fields import TENANT_PATTERN, Answer, Request, Text, Timestamp


class Scope(StrEnum):
    """What a key may do."""

    JOBS_WRITE = "jobs:write"
    JOBS_READ = "jobs:read"
    SCHEDULES_WRITE = "schedules:write"
    KEYS_MANAGE = "keys:manage"
    POLICIES_WRITE = "policies:write"
    WEBHOOKS_MANAGE = "webhooks:manage"
    ADMIN = "admin"


TenantId = Annotated[
    str, Field(pattern=TENANT_PATTERN, description="1-63 of a-z, 0-9, `_`, `-`, e.g. `acme`.")
]


class KeyIn(Request):
    """A new API key for a tenant (the tenant is created if it does not exist).
    `expires_at`, when given, must lie in the future."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant": "acme",
                    "name": "billing-service",
                    "scopes": ["jobs:write", "jobs:read"],
                    "expires_at": "2030-01-01T00:00:00Z",
                }
            ]
        }
    )

    tenant: TenantId
    name: Annotated[Text, Field(min_length=1, max_length=200)]
    scopes: Annotated[list[Scope], Field(min_length=1)]
    expires_at: Timestamp | None = None


class KeyView(Protocol):
    """The attributes of a stored key that :meth:`KeyOut.of` reads."""

    @property
    def id(self) -> UUID: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def scopes(self) -> Iterable[str]: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def last_used_at(self) -> datetime | None: ...


class KeyOut(Answer):
    """An API key, never its secret."""

    id: UUID
    tenant: str
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, record: KeyView) -> KeyOut:
        return cls(
            id=record.id,
            tenant=record.tenant_id,
            name=record.name,
            prefix=record.prefix,
            scopes=sorted(record.scopes),
            created_at=record.created_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            last_used_at=record.last_used_at,
        )


class KeyCreated(KeyOut):
    key: str = Field(description="The API key. Shown only in this response; store it now.")


class KeyList(Answer):
    keys: list[KeyOut]


# --- a tenant's own keys ---------------------------------------------------------------------


class OwnKeyIn(Request):
    """A new key for the caller's own tenant (``POST /v1/keys``, scope ``keys:manage``): only
    scopes the calling key holds itself."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "ci", "scopes": ["jobs:read"]}]}
    )

    name: Annotated[Text, Field(min_length=1, max_length=200)]
    scopes: Annotated[list[Scope], Field(min_length=1)]
    expires_at: Timestamp | None = None

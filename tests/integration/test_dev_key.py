"""`jobline dev` mints the operator key only for the database it started itself."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from jobline.core.apikeys import ALL_SCOPES, TENANT_SCOPES, Scope
from jobline.dev import devstack
from jobline.pg import keystore
from jobline.pg.db import Database


async def test_an_external_database_gets_a_tenant_key_and_never_admin(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, db: Database, tmp_path: Path
) -> None:
    endpoints = devstack.Endpoints(database_url, kafka_bootstrap, topic_prefix)
    external = await devstack._prepare(endpoints, tmp_path, 1, operator=False)
    async with db.connection() as conn:
        record = await keystore.authenticate(conn, external, datetime.now(UTC))
    assert record is not None
    assert record.scopes == TENANT_SCOPES
    assert Scope.ADMIN not in record.scopes
    # The saved key is reused only while its scopes are what this start calls for.
    assert await devstack._prepare(endpoints, tmp_path, 1, operator=False) == external
    own = await devstack._prepare(endpoints, tmp_path, 1, operator=True)
    assert own != external
    async with db.connection() as conn:
        record = await keystore.authenticate(conn, own, datetime.now(UTC))
    assert record is not None
    assert record.scopes == ALL_SCOPES

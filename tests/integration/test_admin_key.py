"""`jobline admin-key`: a new installation's first key, minted straight in PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from jobline.core.apikeys import Scope
from jobline.pg import keystore
from jobline.pg.db import Database

JOBLINE = str(Path(sys.executable).with_name("jobline"))


def _admin_key(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBLINE, "admin-key", *args],
        env={**os.environ, "JOBLINE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_it_prints_an_admin_key_once_and_audits_its_creation(
    database_url: str, db: Database
) -> None:
    name = f"first-{uuid4().hex[:8]}"
    done = _admin_key(database_url, "--tenant", "ops", "--name", name)
    assert done.returncode == 0, done.stderr
    (key,) = done.stdout.split()  # the key alone on stdout, for `KEY=$(jobline admin-key)`
    async with db.connection() as conn:
        record = await keystore.authenticate(conn, key, datetime.now(UTC))
        assert record is not None
        assert (record.tenant_id, record.name) == ("ops", name)
        assert record.scopes == frozenset({Scope.ADMIN})
        entry = await conn.fetchrow(
            "SELECT action, address, detail->>'tenant' AS tenant FROM audit_log WHERE target = $1",
            str(record.id),
        )
    assert entry is not None
    assert dict(entry) == {
        "action": "key.create",
        "address": "cli:jobline admin-key",
        "tenant": "ops",
    }


async def test_a_bad_tenant_is_refused_in_one_line(database_url: str) -> None:
    done = _admin_key(database_url, "--tenant", "Not A Tenant")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "invalid tenant" in done.stderr

"""Every named statement prepares against the migrated schema: its SQL parses, every table,
column and parameter type resolves (tests/unit/test_queries.py checks each one is used)."""

import pytest

from jobline.pg.queries import Queries

FILES = [("jobline.pg", "queries.sql"), ("jobline_gateway", "queries.sql"),
         ("jobline_relay", "queries.sql"), ("jobline.pg", "webhooks.sql"),
         ("jobline_gateway.console", "console.sql"),
         ("jobline.pg", "workflows.sql"),
         ("jobline.pg", "gates.sql")]  # fmt: skip


@pytest.mark.parametrize(("package", "filename"), FILES)
async def test_every_named_statement_prepares(db, package, filename):
    statements = Queries.load(package, filename)
    async with db.connection() as conn:
        for name in statements.names():
            query = statements[name]
            prepared = await conn.prepare(query.sql)
            assert len(prepared.get_parameters()) == len(query.params), name

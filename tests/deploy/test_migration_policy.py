"""Migrations expand, then contract (docs/operations.md, "Upgrading without downtime").

A migration runs (Helm pre-upgrade hook, compose `init`) while the previous release still
serves, so its upgrade() may only add: tables, nullable or defaulted columns, indexes. What
removes or reshapes something the previous release reads or writes (drop, rename, a type
change, NOT NULL without a default) is a *contract* migration: it ships a release after the
code that stopped using the thing, and says so in its docstring with a line starting
``Contract:`` that names that release. This test reads every migration's upgrade() and fails
on a destructive operation in a migration that does not declare itself a contract step.
tests/e2e/test_upgrade.py then runs the previous release's worker against the new schema.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from jobline.pg.migrate import MIGRATIONS_DIR

VERSIONS = MIGRATIONS_DIR / "versions"
DESTRUCTIVE_OPS = {"drop_table", "drop_column", "rename_table", "drop_constraint"}
DESTRUCTIVE_SQL = re.compile(
    r"\b(DROP\s+(TABLE|COLUMN|TYPE|SCHEMA)|RENAME\s+(TO|COLUMN)|ALTER\s+COLUMN\s+\w+\s+"
    r"(TYPE|SET\s+NOT\s+NULL))\b",
    re.IGNORECASE,
)


def destructive_steps(source: str) -> list[str]:
    """The operations in upgrade() that the previous release may not survive."""
    tree = ast.parse(source)
    upgrade = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"), None
    )
    assert upgrade is not None, "a migration without upgrade()"
    found = []
    for node in ast.walk(upgrade):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, keywords = node.func.attr, {k.arg: k.value for k in node.keywords}
        if name in DESTRUCTIVE_OPS:
            found.append(f"op.{name} (line {node.lineno})")
        elif name == "alter_column":
            for key in ("new_column_name", "type_"):
                if key in keywords:
                    found.append(f"op.alter_column({key}=...) (line {node.lineno})")
            nullable = keywords.get("nullable")
            if isinstance(nullable, ast.Constant) and nullable.value is False:
                found.append(f"op.alter_column(nullable=False) (line {node.lineno})")
        elif name == "add_column" and len(node.args) >= 2:
            column = node.args[1]
            if isinstance(column, ast.Call):
                kw = {k.arg: k.value for k in column.keywords}
                flag = kw.get("nullable")
                not_null = isinstance(flag, ast.Constant) and flag.value is False
                if not_null and "server_default" not in kw:
                    found.append(f"op.add_column(NOT NULL, no default) (line {node.lineno})")
        elif name == "execute":
            for arg in node.args:
                sql = arg.value if isinstance(arg, ast.Constant) else None
                match = DESTRUCTIVE_SQL.search(sql) if isinstance(sql, str) else None
                if match:
                    found.append(f"op.execute({match[0]!r}) (line {node.lineno})")
    return found


def declares_contract(source: str) -> bool:
    docstring = ast.get_docstring(ast.parse(source)) or ""
    return any(line.strip().startswith("Contract:") for line in docstring.splitlines())


MIGRATIONS = sorted(p for p in VERSIONS.glob("*.py") if not p.name.startswith("_"))


def test_there_are_migrations_to_check() -> None:
    assert len(MIGRATIONS) >= 2


@pytest.mark.parametrize("path", MIGRATIONS, ids=lambda p: p.name)
def test_each_migration_only_expands_unless_it_is_a_declared_contract_step(path: Path) -> None:
    source = path.read_text()
    steps = destructive_steps(source)
    if declares_contract(source):
        assert steps, f"{path.name} says Contract: but removes nothing; drop the line"
    else:
        assert steps == [], (
            f"{path.name} is not backward compatible with the running release: {steps}. "
            "Split it: expand now, contract in a later release (docs/operations.md)."
        )


@pytest.mark.parametrize(
    ("body", "flagged"),
    [
        ("op.create_table('t', sa.Column('id', sa.Integer))", False),
        ("op.add_column('jobs', sa.Column('x', sa.Text(), nullable=True))", False),
        (
            "op.add_column('jobs', sa.Column('x', sa.Text(), nullable=False, server_default=''))",
            False,
        ),
        ("op.add_column('jobs', sa.Column('x', sa.Text(), nullable=False))", True),
        ("op.drop_column('jobs', 'payload')", True),
        ("op.alter_column('jobs', 'state', new_column_name='status')", True),
        ("op.alter_column('jobs', 'attempt', type_=sa.BigInteger())", True),
        ("op.execute('ALTER TABLE jobs DROP COLUMN payload')", True),
        ("op.execute('CREATE INDEX ix ON jobs (state)')", False),
    ],
)
def test_the_policy_check_recognises_destructive_steps(body: str, flagged: bool) -> None:
    source = f"def upgrade() -> None:\n    {body}\n"
    assert bool(destructive_steps(source)) is flagged

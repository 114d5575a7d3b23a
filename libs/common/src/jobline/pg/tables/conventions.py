"""What every table of :mod:`jobline.pg.tables` shares: the one :class:`MetaData`, its
constraint naming convention, and the column builders and server defaults that make the
conventions below hold.

- Every constraint is named through :data:`NAMING_CONVENTION`, so the names alembic writes and
  the names PostgreSQL reports agree. Indexes are named by hand (they hold DESC expressions).
- Timestamps are ``timestamptz``; ``created_at``/``updated_at`` default to ``now()`` (the
  transaction's start time).
- Tenant-owned rows cascade when their tenant is deleted: removing a tenant removes its data.
  Every such foreign key is the leading column of some index, so the cascade does not scan.
- The allowed values of a CHECK-constrained text column are taken from the enum that owns
  their meaning (next to its table). The migrations write them literally (a migration must
  not change with the code); the migration test compares the migrated CHECK constraints with
  them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import Column, DateTime, ForeignKey, MetaData, text
from sqlalchemy.sql.elements import TextClause

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata: Final = MetaData(naming_convention=NAMING_CONVENTION)


def one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK condition: ``column`` holds one of ``values``."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def now() -> TextClause:
    return text("now()")


def created_at() -> Column[datetime]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=now())


def updated_at() -> Column[datetime]:
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=now())


def tenant_fk() -> ForeignKey:
    return ForeignKey("tenants.id", ondelete="CASCADE")


NEW_UUID = text("gen_random_uuid()")  # built in since PostgreSQL 13
EMPTY_OBJECT = text("'{}'::jsonb")
EMPTY_LIST = text("'[]'::jsonb")
EMPTY_TEXT_ARRAY = text("'{}'::text[]")

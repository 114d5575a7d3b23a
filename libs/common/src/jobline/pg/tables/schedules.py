"""Schedules: recurring jobs (cron or interval) that the relay fires."""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from jobline.core.schedules import MisfirePolicy, OverlapPolicy
from jobline.pg.tables.conventions import (
    NEW_UUID,
    created_at,
    metadata,
    one_of,
    tenant_fk,
    updated_at,
)

# Allowed values of the CHECK-constrained policy columns (see conventions).
MISFIRE_POLICIES: Final = tuple(p.value for p in MisfirePolicy)
OVERLAP_POLICIES: Final = tuple(p.value for p in OverlapPolicy)


schedules: Final = Table(
    "schedules",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column("tenant_id", Text, tenant_fk(), nullable=False),
    Column("name", Text, nullable=False),
    Column("cron", Text),
    Column("timezone", Text, nullable=False, server_default=text("'UTC'")),
    Column("interval_seconds", Double),
    Column("job_template", JSONB, nullable=False),
    Column("misfire_policy", Text, nullable=False, server_default=text("'skip'")),
    Column("catch_up_limit", Integer, nullable=False, server_default=text("100")),
    Column("overlap_policy", Text, nullable=False, server_default=text("'allow'")),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("start_at", DateTime(timezone=True)),
    Column("end_at", DateTime(timezone=True)),
    Column("next_fire_at", DateTime(timezone=True)),
    Column("last_fired_at", DateTime(timezone=True)),
    created_at(),
    updated_at(),
    # Names are per tenant; the index also serves tenant listings and the tenant cascade.
    UniqueConstraint("tenant_id", "name"),
    CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="cron_xor_interval"),
    CheckConstraint("interval_seconds IS NULL OR interval_seconds > 0", name="interval_positive"),
    CheckConstraint("catch_up_limit >= 0", name="catch_up_limit_nonnegative"),
    CheckConstraint(one_of("misfire_policy", MISFIRE_POLICIES), name="misfire_policy"),
    CheckConstraint(one_of("overlap_policy", OVERLAP_POLICIES), name="overlap_policy"),
    # The relay's due-schedule claim: WHERE NOT paused AND next_fire_at <= now()
    # ORDER BY next_fire_at ... FOR UPDATE SKIP LOCKED. Partial, so paused and finished
    # schedules cost nothing.
    Index(
        "ix_schedules_due",
        "next_fire_at",
        postgresql_where=text("NOT paused AND next_fire_at IS NOT NULL"),
    ),
)

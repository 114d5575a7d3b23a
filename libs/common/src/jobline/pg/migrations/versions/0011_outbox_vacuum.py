"""Vacuum the outbox after a few thousand deleted rows, not after a fifth of the table.

Every message passes through the outbox: inserted by a transition, deleted by the relay a
moment later. The table stays nearly empty while its dead row versions pile up between
autovacuum runs, and the relay's claim (``take_outbox``) walks past all of them through
``ix_outbox_available_at_id`` from the front: under ``make bench`` C at 2,000 jobs/s it
cost 540 us of database time per job, 62 us with these settings. The default trigger
(``50 + 0.2 * live rows``) is useless for a table whose live rows are always few; a fixed
threshold with no cost delay keeps each run small and quick. (The server's
``autovacuum_naptime`` still bounds how often any of it happens: see docs/operations.md.)

Expand-only: storage parameters, read by autovacuum alone; every release runs unchanged.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTBOX_VACUUM = (
    "autovacuum_vacuum_scale_factor = 0",
    "autovacuum_vacuum_threshold = 5000",
    "autovacuum_vacuum_insert_scale_factor = 0",
    "autovacuum_vacuum_insert_threshold = 5000",
    "autovacuum_vacuum_cost_delay = 0",
)


def upgrade() -> None:
    op.execute(f"ALTER TABLE outbox SET ({', '.join(OUTBOX_VACUUM)})")


def downgrade() -> None:
    names = ", ".join(setting.split(" = ")[0] for setting in OUTBOX_VACUUM)
    op.execute(f"ALTER TABLE outbox RESET ({names})")

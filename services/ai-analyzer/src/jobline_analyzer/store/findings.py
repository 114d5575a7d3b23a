"""Findings: stored unpublished, published on the insights topic, listed for the API."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from jobline_analyzer.findings import Finding

log = logging.getLogger(__name__)

_INSERT_FINDING = text(
    "INSERT INTO analyzer_findings (tenant_id, job_type, kind, severity, window_start,"
    " window_end, baseline, observed, score, explanation, error_class)"
    " VALUES (:tenant, :job_type, :kind, :severity, :window_start, :window_end, :baseline,"
    " :observed, :score, :explanation, :error_class)"
    " RETURNING id"
)


async def insert_findings(conn: AsyncConnection, findings: Iterable[Finding]) -> list[UUID]:
    """Store findings (unpublished); return their ids."""
    ids = []
    for f in findings:
        ids.append(
            (
                await conn.execute(
                    _INSERT_FINDING,
                    {
                        "tenant": f.tenant,
                        "job_type": f.job_type,
                        "kind": f.kind,
                        "severity": f.severity,
                        "window_start": f.window_start,
                        "window_end": f.window_end,
                        "baseline": f.baseline,
                        "observed": f.observed,
                        "score": f.score,
                        "explanation": f.explanation,
                        "error_class": f.error_class,
                    },
                )
            ).scalar_one()
        )
    return ids


@dataclass(frozen=True, slots=True)
class StoredFinding:
    """A finding as stored: its id and when it was recorded."""

    id: UUID
    created_at: datetime
    finding: Finding

    def to_dict(self) -> dict[str, Any]:
        """The API and CloudEvent body."""
        return {
            "id": str(self.id),
            "created_at": self.created_at.isoformat(),
            **self.finding.to_dict(),
        }


_FINDING_COLUMNS = (
    "id, created_at, tenant_id, job_type, kind, severity, window_start, window_end, baseline,"
    " observed, score, explanation, error_class"
)


def _stored(r: Any) -> StoredFinding:
    return StoredFinding(
        id=r.id,
        created_at=r.created_at,
        finding=Finding(
            tenant=r.tenant_id,
            job_type=r.job_type,
            kind=r.kind,
            severity=r.severity,
            window_start=r.window_start,
            window_end=r.window_end,
            baseline=r.baseline,
            observed=r.observed,
            score=r.score,
            explanation=r.explanation,
            error_class=r.error_class,
        ),
    )


async def claim_unpublished(
    conn: AsyncConnection, limit: int
) -> tuple[list[StoredFinding], list[UUID]]:
    """Findings not yet on the insights topic, oldest first, locked for this transaction;
    and the ids of claimed rows that do not read as a finding (an unknown kind written by
    another release or by hand), which the caller retires so they never block the rest."""
    rows = await conn.execute(
        text(
            f"SELECT {_FINDING_COLUMNS} FROM analyzer_findings WHERE published_at IS NULL"
            " ORDER BY created_at, id LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"limit": limit},
    )
    found, unreadable = [], []
    for r in rows:
        try:
            found.append(_stored(r))
        except ValueError:
            unreadable.append(r.id)
    return found, unreadable


async def mark_published(conn: AsyncConnection, ids: Sequence[UUID]) -> None:
    """Record that findings reached the insights topic."""
    await conn.execute(
        text("UPDATE analyzer_findings SET published_at = now() WHERE id = ANY(:ids)"),
        {"ids": list(ids)},
    )


async def list_findings(
    conn: AsyncConnection,
    tenant: str,
    *,
    job_type: str | None,
    kind: str | None,
    since: datetime | None,
    before: tuple[datetime, UUID] | None,
    limit: int,
) -> list[StoredFinding]:
    """A tenant's findings newest first, filtered, after a keyset cursor."""
    where = ["tenant_id = :tenant"]
    params: dict[str, Any] = {"tenant": tenant, "limit": limit}
    if job_type is not None:
        where.append("job_type = :type")
        params["type"] = job_type
    if kind is not None:
        where.append("kind = :kind")
        params["kind"] = kind
    if since is not None:
        where.append("window_end >= :since")
        params["since"] = since
    if before is not None:
        where.append("(created_at, id) < (:cursor_at, :cursor_id)")
        params["cursor_at"], params["cursor_id"] = before
    rows = await conn.execute(
        text(
            f"SELECT {_FINDING_COLUMNS} FROM analyzer_findings WHERE {' AND '.join(where)}"
            " ORDER BY created_at DESC, id DESC LIMIT :limit"
        ),
        params,
    )
    found = []
    for r in rows:
        try:
            found.append(_stored(r))
        except ValueError:  # an unknown kind (another release's): left out, not a 500
            log.warning("finding %s does not read as one; left out of the list", r.id)
    return found

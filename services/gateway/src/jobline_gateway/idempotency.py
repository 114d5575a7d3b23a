"""Idempotency-Keys: the answer a submission gives, the key's claim, and its replay.

The claim is written by the statement that inserts the jobs (see :mod:`.submission`); a
request that finds the key taken replays the stored answer, or is told the body differs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from jobline.pg import jobstore
from jobline.web.problems import FieldError, ProblemError
from jobline_gateway import store


@dataclass(frozen=True, slots=True)
class Accepted:
    """What to answer: the jobs' representations, and whether this is a replay."""

    jobs: list[dict[str, Any]]
    replayed: bool
    types: list[str]
    # Debounced: every job answered is an existing one (unique key held), none was created.
    existing: bool = False


def request_hash(endpoint: str, body: Any) -> str:
    """Canonical JSON of the validated request: whitespace and key order do not matter."""
    canonical = orjson.dumps([endpoint, body], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def claim(
    tenant_id: str,
    key: str | None,
    fingerprint: str | None,
    answer: list[dict[str, Any]],
    expires_at: datetime,
) -> jobstore.IdempotencyClaim | None:
    if key is None:
        return None
    assert fingerprint is not None
    return jobstore.IdempotencyClaim(
        tenant_id=tenant_id,
        key=key,
        request_hash=fingerprint,
        response=answer,
        expires_at=expires_at,
    )


async def replay(conn: Any, tenant_id: str, key: str, fingerprint: str) -> Accepted:
    # The insert found the key taken by a committed row (it waited for its owner to commit);
    # this new statement sees it.
    stored = await store.stored_key(conn, tenant_id, key)
    if stored is None:  # expired and purged between the two statements: ask to retry
        raise ProblemError(409, "The Idempotency-Key is being reused; retry the request.")
    if stored.request_hash != fingerprint:
        raise ProblemError(
            422,
            "This Idempotency-Key was used with a different request body.",
            kind="idempotency-key-reused",
            errors=[
                FieldError(
                    field="Idempotency-Key",
                    location="header",
                    message="already used with a different request body",
                )
            ],
        )
    return Accepted(list(stored.response), replayed=True, types=[])

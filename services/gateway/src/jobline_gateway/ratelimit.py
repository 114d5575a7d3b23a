"""Per-API-key token buckets of one gateway process.

In-process, so this limit holds per gateway replica: N replicas admit up to N times the
configured rate per key. The tenant's submission rate, which must hold across replicas, is
:mod:`jobline_gateway.admission` (blocks leased from a PostgreSQL row); this one is the cheap
first line that needs no shared store.
"""

from __future__ import annotations

from jobline.core.tokens import MAX_BUCKETS, TokenBuckets, retry_after_header

__all__ = ["MAX_BUCKETS", "TokenBuckets", "retry_after_header"]

"""The analyzer's PostgreSQL tables, one module per responsibility; only these modules run SQL.

- `rollups`: lifecycle events into per-bucket rollups (idempotent ingest), and reading them back;
- `state`: the detection loop's per-series checkpoints and the lock that shares series out;
- `findings`: anomalies stored, published on the insights topic, listed by the API;
- `recommendations`: attempt history for retry advice, advice shown, and policies applied.
"""

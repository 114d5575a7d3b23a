"""A tenant's own concurrency and rate limits of a job type: the bodies of
``/v1/job-types/{type}/limits`` (the rules: :mod:`jobline.core.limits`).

Each limit is an object with its own key, so a key without its limit cannot be written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, Field

from jobline.api.fields import Answer, JsonNumber, Request

# A payload field's name (never "*": a tenant's own limit counts only its own jobs).
FieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,199}$")]
# As jobline.core.limits.rate parses it: a count of at least 1 per an optional multiple of a
# unit (no leading zeros: "0/s" and "5/0s" are not rates).
RATE_PATTERN = r"^[1-9][0-9]{0,8}/([1-9][0-9]{0,5})?(s|sec|second|m|min|minute|h|hour)$"

KEY_HELP = "A payload field: the limit counts per value of it; null: per tenant."


class ConcurrencyIn(Request):
    model_config = ConfigDict(extra="forbid")

    max: Annotated[int, Field(ge=1, le=1_000_000), JsonNumber] = Field(
        description="At most this many running at once."
    )
    key: FieldName | None = Field(default=None, description=KEY_HELP)


class RateIn(Request):
    model_config = ConfigDict(extra="forbid")

    limit: Annotated[str, Field(pattern=RATE_PATTERN)] = Field(
        description="Starts per period: `10/s`, `100/min`, `5/10s`, `1000/h`."
    )
    key: FieldName | None = Field(default=None, description=KEY_HELP)


class LimitsIn(Request):
    """Limits on starting the tenant's jobs of the type; they replace the handler's
    (``@worker.job(concurrency=..., rate_limit=...)``) for this tenant, except a limit the
    handler shares across tenants (key ``*``). Both null: no limits of the tenant's own."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"concurrency": {"max": 5, "key": "customer_id"}, "rate": {"limit": "10/s"}}
            ]
        },
    )

    concurrency: ConcurrencyIn | None = None
    rate: RateIn | None = None


class ConcurrencyOut(Answer):
    max: int
    key: str | None


class RateOut(Answer):
    limit: str
    key: str | None


class LimitsOut(Answer):
    """A tenant's own limits of a job type, as stored."""

    type: str
    concurrency: ConcurrencyOut | None
    rate: RateOut | None
    updated_at: datetime

"""A tenant's own concurrency and rate limits of a job type: the bodies of
``/v1/job-types/{type}/limits`` (the rules: :mod:`jobline.core.limits`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, Field

from jobline.api.fields import Answer, JsonNumber, Request, Text

KeyName = Annotated[Text, Field(min_length=1, max_length=200)]


class LimitsIn(Request):
    """Limits on starting the tenant's jobs of the type; they replace the handler's
    (``@worker.job(concurrency=..., rate_limit=...)``) for this tenant, except a limit the
    handler shares across tenants (key ``*``). Both null: no limits of the tenant's own."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"concurrency": 5, "concurrency_key": "customer_id", "rate_limit": "10/s"}]
        },
    )

    concurrency: Annotated[int, Field(ge=1, le=1_000_000), JsonNumber] | None = Field(
        default=None, description="At most this many running at once (per key)."
    )
    concurrency_key: KeyName | None = Field(
        default=None,
        description="A payload field: the limit counts per value of it; null: per tenant.",
    )
    rate_limit: Annotated[Text, Field(min_length=3, max_length=40)] | None = Field(
        default=None, description="Starts per period: `10/s`, `100/min`, `5/10s`, `1000/h`."
    )
    rate_key: KeyName | None = Field(
        default=None,
        description="A payload field: the rate counts per value of it; null: per tenant.",
    )


class LimitsOut(Answer):
    """A tenant's own limits of a job type, as stored."""

    type: str
    concurrency: int | None
    concurrency_key: str | None
    rate_limit: str | None
    rate_key: str | None
    updated_at: datetime

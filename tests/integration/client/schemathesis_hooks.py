"""A schemathesis check for the schema tests (loaded through SCHEMATHESIS_HOOKS).

``positive_data_acceptance`` with a short, explicit list of allowances: a 422 is accepted
when every error it names is one that no JSON Schema can state, each documented in the
schema's own descriptions:

* a value the server issues and remembers: a ``cursor`` (only ``next_cursor`` values are
  valid) or an ``Idempotency-Key`` already used with another body -- the stock check allows
  404 and 409 for such references to state already;
* an order between two fields: backoff ``max_seconds >= base_seconds``, a schedule's
  ``end_at >= start_at``;
* the clock: a new key's ``expires_at`` must lie in the future.

Every other schema-valid request must be accepted.
"""

from __future__ import annotations

from typing import Any, Final

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

# (location, field or its last part, words of the message)
ALLOWED: Final = (
    ("query", "cursor", "invalid cursor"),
    ("header", "Idempotency-Key", "already used with a different request body"),
    ("body", "backoff", "max_seconds must be >= base_seconds"),
    ("body", "end_at", "end_at is before start_at"),
    ("body", "expires_at", "must be in the future"),
)


@schemathesis.check
def positive_data_acceptance_but_server_state(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schema-valid requests are accepted (the allowances above aside)."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if response.status_code == 422 and _only_allowed(response):
            return None
        raise


def _only_allowed(response: Any) -> bool:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return False
    return bool(errors) and all(_allowed(e) for e in errors)


def _allowed(error: dict[str, Any]) -> bool:
    field = str(error.get("field", ""))
    return any(
        error.get("location") == location
        and field.rsplit(".", maxsplit=1)[-1] == name
        and words in str(error.get("message", ""))
        for location, name, words in ALLOWED
    )

"""A schemathesis check for the schema tests (loaded through SCHEMATHESIS_HOOKS).

``positive_data_acceptance`` with a short, explicit list of allowances: a 422 is accepted
when every error it names is one that no JSON Schema can state, each documented in the
schema's own descriptions:

* a value the server issues and remembers: a ``cursor`` (only ``next_cursor`` values are
  valid) or an ``Idempotency-Key`` already used with another body -- the stock check allows
  404 and 409 for such references to state already;
* an order between two fields: backoff ``max_seconds >= base_seconds``, a schedule's
  ``end_at >= start_at``;
* the clock: a new key's ``expires_at`` must lie in the future;
* the registry: a job type declared with a queue nobody declared, or a payload schema that
  is no JSON Schema; a job whose payload breaks the schema an earlier request registered
  for its type (the run registers types with ``PUT /v1/admin/job-types/{name}``);
* unique keys: two jobs of one batch with the same ``unique.key`` (BatchIn's description);
* a workflow's graph: a duplicate ``ref``, a ``depends_on`` naming no ref of the workflow,
  its own or one twice, a cycle (WorkflowIn's and WorkflowNodeIn's descriptions);
* the deployment's address policy: a webhook URL naming a loopback, private or link-local
  address (the `url` field's description says so).

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
    ("body", "queue", "is not declared"),
    ("body", "payload_schema", "invalid payload schema"),
    ("body", "type", "unknown job type"),
    ("body", "url", "refused"),
    ("body", "key", "the same unique key as"),
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
    pointer = str(error.get("pointer") or "")
    if error.get("location") == "body" and _in_payload(pointer):
        return True  # the registered schema of the job's type (see above)
    if error.get("location") == "body" and _in_graph(pointer):
        return True  # a workflow's refs and dependencies (see above)
    return any(
        error.get("location") == location
        and field.rsplit(".", maxsplit=1)[-1] == name
        and words in str(error.get("message", ""))
        for location, name, words in ALLOWED
    )


def _in_graph(pointer: str) -> bool:
    parts = pointer.split("/")
    return parts[1:2] == ["jobs"] and parts[3:4] in (["ref"], ["depends_on"])


def _in_payload(pointer: str) -> bool:
    parts = pointer.split("/")
    return parts[1:2] == ["payload"] or (parts[1:2] == ["jobs"] and parts[3:4] == ["payload"])

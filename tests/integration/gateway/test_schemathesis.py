"""Schemathesis against the gateway's own OpenAPI document: no 5xx, no undocumented status.

The gateway runs in this process on a real socket (uvicorn in a thread, its own event loop
and engine), so the generated requests go through HTTP, the body guard, auth, validation
and PostgreSQL exactly as a client's would. Every operation gets positive (schema-valid)
and negative (schema-violating) cases, with an all-scopes API key so authenticated paths
run past auth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from jobline_gateway.app import create_app
from tests.stack import free_port

POSITIVE_EXAMPLES = 50
NEGATIVE_EXAMPLES = 25
MIN_REQUESTS = 1000
STREAM = "GET /v1/events/stream"


def negative_data_rejected(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' own check, but a 413 counts as a rejection: the body guard refuses a
    body over the limit before anything reads it (a generated negative case can be that
    large), and 413 is documented on every route (jobline.web.problems.COMMON)."""
    if response.status_code == 413:
        return None
    result: bool | None = negative_data_rejection(ctx, response, case)
    return result


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejected,
]


@pytest.fixture
def gateway_url(gateway_settings) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(gateway_settings()),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "gateway exited at start"
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
async def all_scopes_key(make_api_key):
    return await make_api_key()


def test_generated_requests_get_no_5xx_and_only_documented_statuses(gateway_url, all_scopes_key):
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    auth = {"Authorization": f"Bearer {all_scopes_key}"}
    session = requests.Session()
    sent = 0
    statuses: dict[int, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    # The event stream never ends by itself (a schema-valid request is an open stream); its
    # own tests are tests/integration/client/test_event_stream.py.
    operations = [op for op in operations if op.label != STREAM]
    assert len(operations) >= 10, [op.label for op in operations]
    for operation in operations:
        for mode, examples in (
            (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
            (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
        ):

            @hypothesis.settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,  # the same requests every run: a failure reproduces
                phases=[Phase.explicit, Phase.generate],  # no shrinking: report as found
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                nonlocal sent
                response = case.call_and_validate(
                    session=session, headers=auth, checks=CHECKS, timeout=30
                )
                sent += 1
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # Nothing to violate (no parameters, no body): no negative cases exist.
                assert mode is GenerationMode.NEGATIVE, operation.label
    print(f"schemathesis: {sent} requests, statuses {dict(sorted(statuses.items()))}")
    assert sent >= MIN_REQUESTS
    # Auth'd paths were exercised past auth: some requests succeeded.
    assert any(200 <= s < 300 for s in statuses)

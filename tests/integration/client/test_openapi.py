"""The OpenAPI document tells the truth: schemathesis (its CLI: examples, coverage and
fuzzing phases) finds no schema-valid request refused, no schema-invalid one accepted, no
undocumented status or shape, no 5xx, and 405 (with Allow) for each method a path does not
declare."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "positive_data_acceptance_but_server_state",  # see schemathesis_hooks.py
        "unsupported_method",
    ]
)
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
ROOT = Path(__file__).parents[3]


async def test_schemathesis_finds_nothing_against_the_gateways_schema(
    inprocess_gateway, make_api_key, tmp_path
):
    key = await make_api_key()
    # Through the schema's own security scheme (HTTPBearer), so every phase authenticates.
    config = tmp_path / "schemathesis.toml"
    config.write_text('[auth.openapi.HTTPBearer]\nbearer = "${JOBLINE_ST_KEY}"\n')
    # The revokes run last and alone: they find the run's own key (schemathesis learns ids
    # from GET /v1/admin/keys and /v1/keys) and revoke it, after which all else would be 401.
    revokes = ("revokeKey", "revokeOwnKey")
    # The event stream never ends by itself (a schema-valid request is an open stream):
    # tests/integration/client/test_event_stream.py covers it, refusals included.
    skipped = (*revokes, "streamEvents")
    everything_else = await _schemathesis(
        inprocess_gateway, config, key, *(f"--exclude-operation-id={op}" for op in skipped)
    )
    revoke = await _schemathesis(
        inprocess_gateway, config, key, *(f"--include-operation-id={op}" for op in revokes)
    )
    for run in (everything_else, revoke):
        output = run.stdout + run.stderr
        print(output[-4000:])
        assert run.returncode == 0, output[-20000:]
    summary = everything_else.stdout
    assert "Selected: 53/56" in summary, summary[-3000:]
    assert "Authentication failed" not in summary  # the cases got past auth


async def _schemathesis(
    url: str, config: Path, key: str, *selection: str
) -> subprocess.CompletedProcess[str]:
    report = os.environ.get("JOBLINE_ST_REPORT")  # a folder: keep an ndjson report there
    return await asyncio.to_thread(
        subprocess.run,
        [
            SCHEMATHESIS,
            "--config-file",
            str(config),
            "run",
            f"{url}/openapi.json",
            *selection,
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "30",
            "--generation-deterministic",
            "--continue-on-failure",
            "--workers",
            "1",
            "--suppress-health-check",
            "all",
            "--no-color",
            *(["--report", "ndjson", "--report-dir", report] if report else []),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=config.parent,  # its cache folder (.schemathesis) goes there, not into the repo
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "JOBLINE_ST_KEY": key,
            "SCHEMATHESIS_HOOKS": "tests.integration.client.schemathesis_hooks",
        },
    )


async def test_a_path_answers_405_with_allow_for_a_method_it_does_not_declare(
    inprocess_gateway, make_api_key
):
    key = await make_api_key()
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=inprocess_gateway, headers=auth) as http:
        batch = await http.get("/v1/jobs/batch")
        assert batch.status_code == 405, batch.text
        assert batch.headers["allow"] == "POST"
        assert batch.headers["content-type"] == "application/problem+json"
        for method, path in (("PUT", "/v1/jobs"), ("DELETE", "/v1/schedules")):
            response = await http.request(method, path)
            assert response.status_code == 405, (method, path, response.text)
            # Starlette names the methods of the first route on the path only (POST here,
            # though GET is served too): present, but not always complete.
            assert response.headers["allow"]
        spec = (await http.get("/openapi.json")).json()
    operation_ids = [
        op["operationId"]
        for item in spec["paths"].values()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operation_ids) == len(set(operation_ids))
    # Explicit everywhere: FastAPI's generated ids end in the method.
    assert not [op for op in operation_ids if op.endswith(("_get", "_post", "_put"))], operation_ids
    v1 = [
        op["operationId"]
        for path, item in spec["paths"].items()
        if path.startswith("/v1/")
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    # Explicit, stable ids (not FastAPI's generated `name_path_method`).
    assert all("_v1_" not in op for op in v1), v1
    assert "submitJob" in v1
    assert "listJobs" in v1

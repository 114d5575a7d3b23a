"""The client covers every route of the API: each of the gateway's ``/v1`` operations (read
from its OpenAPI document) is sent by a method of both clients."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

import httpx
import pytest

from jobline.client import GatewayError, RetryPolicy
from jobline_gateway.app import create_app
from jobline_gateway.settings import Settings
from tests.unit import test_client as fake

kind, clock, make = fake.kind, fake.clock, fake.make

ID = str(uuid4())
# Each operation of the gateway, and the call of the client that sends it.
CALLS: dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]] = {
    "submitJob": ("submit", ("echo", {}), {}),
    "submitBatch": ("submit_batch", ([{"type": "echo", "payload": {}}],), {}),
    "listJobs": ("list_jobs", (), {"status": "dead"}),
    "getJob": ("get_job", (ID,), {}),
    "listAttempts": ("attempts", (ID,), {}),
    "cancelJob": ("cancel_job", (ID,), {}),
    "redriveJob": ("redrive_job", (ID,), {}),
    "listQueueStats": ("queues", (), {}),
    "getStats": ("stats", (), {"window_seconds": 60}),
    "listDlqGroups": ("dlq_groups", (), {"type": "echo"}),
    "createKey": ("create_key", ("acme", ["jobs:read"]), {}),
    "listKeys": ("list_keys", (), {}),
    "revokeKey": ("revoke_key", (ID,), {}),
    "listOwnKeys": ("list_own_keys", (), {}),
    "createOwnKey": ("create_own_key", (["jobs:read"],), {}),
    "revokeOwnKey": ("revoke_own_key", (ID,), {}),
    "listPolicies": ("list_policies", (), {}),
    "setPolicy": ("set_policy", ("echo", {"max_attempts": 3}), {}),
    "deletePolicy": ("delete_policy", ("echo",), {}),
    "getJobTypeLimits": ("get_limits", ("echo",), {}),
    "setJobTypeLimits": ("set_limits", ("echo", {"concurrency": {"max": 2}}), {}),
    "deleteJobTypeLimits": ("delete_limits", ("echo",), {}),
    "getQuotas": ("get_quotas", ("acme",), {}),
    "setQuotas": ("set_quotas", ("acme", {"max_schedules": 5}), {}),
    "listAudit": ("list_audit", (), {"action": "job.cancel"}),
    "listJobTypes": ("list_job_types", (), {}),
    "listQueues": ("list_queue_declarations", (), {}),
    "declareQueue": ("declare_queue", ("mail",), {}),
    "listAllJobTypes": ("list_all_job_types", (), {}),
    "declareJobType": ("declare_job_type", ("mail.send", {"queue": "mail"}), {}),
    "createSchedule": ("create_schedule", ({"name": "n", "cron": "* * * * *"},), {}),
    "listSchedules": ("list_schedules", (), {}),
    "getSchedule": ("get_schedule", (ID,), {}),
    "updateSchedule": ("update_schedule", (ID, {"paused": True}), {}),
    "deleteSchedule": ("delete_schedule", (ID,), {}),
    "pauseSchedule": ("pause_schedule", (ID,), {}),
    "resumeSchedule": ("resume_schedule", (ID,), {}),
    "listScheduleFireTimes": ("next_fires", (ID,), {}),
    "listScheduleJobs": ("schedule_jobs", (ID,), {}),
    "streamEvents": ("stream_events", (), {"reconnect": False}),
    "createWebhook": ("create_webhook", ("https://example.com/hook", ["*"]), {}),
    "listWebhooks": ("list_webhooks", (), {}),
    "getWebhook": ("get_webhook", (ID,), {}),
    "updateWebhook": ("update_webhook", (ID, {"enabled": False}), {}),
    "deleteWebhook": ("delete_webhook", (ID,), {}),
    "rotateWebhookSecret": ("rotate_webhook_secret", (ID,), {}),
    "listWebhookDeliveries": ("webhook_deliveries", (ID,), {"status": "failed"}),
    "getWebhookDelivery": ("get_webhook_delivery", (ID, ID), {}),
    "replayWebhookDelivery": ("replay_webhook_delivery", (ID, ID), {}),
    "submitWorkflow": ("submit_workflow", ([{"ref": "a", "type": "echo", "payload": {}}],), {}),
    "getWorkflow": ("get_workflow", (ID,), {}),
    "listWorkflows": ("list_workflows", (), {"status": "failed"}),
    "cancelWorkflow": ("cancel_workflow", (ID,), {}),
    "redriveWorkflowNode": ("redrive_workflow_node", (ID, "a"), {}),
}


def _operations() -> dict[tuple[str, re.Pattern[str]], str]:
    app = create_app(Settings(database_url="postgresql://u@localhost/d", kafka_bootstrap="h:1"))
    found = {}
    for path, item in app.openapi()["paths"].items():
        if not path.startswith("/v1/"):
            continue
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
        for method, operation in item.items():
            found[(method.upper(), pattern)] = operation["operationId"]
    return found


async def test_every_operation_of_the_gateway_is_a_method_of_both_clients(make):
    operations = _operations()
    assert set(CALLS) == set(operations.values())
    sent: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})  # no model: each call fails to parse, after sending

    client = make(gateway, retry=RetryPolicy(max_attempts=1))
    for operation, (method, args, kwargs) in CALLS.items():
        before = len(sent)
        try:
            result = getattr(client, method)(*args, **kwargs)
            if hasattr(result, "__anext__"):
                async for _ in result:
                    pass
            elif hasattr(result, "__next__"):
                for _ in result:
                    pass
            else:
                await fake.call(result)
        except (GatewayError, ValueError):
            pass
        request = sent[before]
        [matched] = [
            op
            for (verb, pattern), op in operations.items()
            if verb == request.method and pattern.match(request.url.path)
        ]
        assert matched == operation, (method, request.method, request.url.path)


@pytest.mark.parametrize("name", ["a/b:c", "mail.send"])
async def test_a_job_type_is_one_path_segment(make, name):
    sent: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    client = make(gateway)
    await fake.call(client.delete_policy(name))
    assert sent[0].url.raw_path.decode().count("/") == 3  # /v1/policies/<one segment>

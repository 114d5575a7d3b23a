"""The gateway client: configuration from the environment, problem+json as GatewayError."""

from __future__ import annotations

import json

import httpx
import pytest

from jobline.client import Client, GatewayError, api_key, gateway_url


def test_gateway_url_and_key_come_from_the_environment(tmp_path):
    assert gateway_url({}) == "http://127.0.0.1:8000"
    assert gateway_url({"JOBLINE_GATEWAY_PORT": "9001"}) == "http://127.0.0.1:9001"
    assert gateway_url({"JOBLINE_GATEWAY_URL": "https://jobs.example/"}) == "https://jobs.example"
    assert api_key({"JOBLINE_API_KEY": " jl_x \n"}) == "jl_x"
    (tmp_path / "dev-api-key").write_text("jl_dev\n")
    assert api_key({"JOBLINE_DATA_DIR": str(tmp_path)}) == "jl_dev"
    with pytest.raises(GatewayError, match="JOBLINE_API_KEY"):
        api_key({"JOBLINE_DATA_DIR": str(tmp_path / "none")})


def _client(handler) -> Client:
    return Client("http://gw", "jl_key", transport=httpx.MockTransport(handler))


def test_requests_carry_the_key_and_follow_list_cursors():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert request.headers["authorization"] == "Bearer jl_key"
        if request.url.params.get("cursor") == "c2":
            return httpx.Response(200, json={"schedules": [{"name": "b"}], "next_cursor": None})
        return httpx.Response(200, json={"schedules": [{"name": "a"}], "next_cursor": "c2"})

    with _client(handler) as client:
        assert [s["name"] for s in client.list_schedules()] == ["a", "b"]
    assert [r.url.path for r in seen] == ["/v1/schedules", "/v1/schedules"]


def test_a_problem_becomes_a_gateway_error_naming_it():
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["cron"] == "61 * * * *"
        problem = {
            "type": "urn:jobline:problem:invalid-schedule",
            "title": "Invalid schedule",
            "status": 422,
            "detail": "invalid cron expression '61 * * * *': bad minute field '61'",
            "errors": [{"field": "cron", "location": "body", "message": "..."}],
        }
        return httpx.Response(
            422, json=problem, headers={"content-type": "application/problem+json"}
        )

    with _client(handler) as client, pytest.raises(GatewayError) as caught:
        client.create_schedule({"name": "x", "cron": "61 * * * *"})
    assert caught.value.status == 422
    assert "bad minute field '61'" in str(caught.value)
    assert "(cron)" in str(caught.value)


def test_find_schedule_by_name_and_unreachable_gateway():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["name"] == "nightly"
        return httpx.Response(200, json={"schedules": [], "next_cursor": None})

    with _client(handler) as client, pytest.raises(GatewayError, match="no schedule named"):
        client.find_schedule("nightly")

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with _client(down) as client, pytest.raises(GatewayError, match="unreachable"):
        client.get_job("00000000-0000-4000-8000-000000000000")

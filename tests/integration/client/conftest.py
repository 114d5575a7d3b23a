"""The gateway for the client's integration tests: in this process on a real socket
(uvicorn in a thread) for the schema tests, or as a process (``stack``) like a deployment."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from jobline_gateway.app import create_app
from jobline_gateway.settings import Settings
from tests.stack import free_port

UNLIMITED = {
    "gateway_rate_limit_per_second": 1e6,
    "gateway_rate_limit_burst": 10**6,
    "gateway_address_rate_per_second": 1e6,
    "gateway_address_burst": 10**7,
    "quota_submissions_per_second": 1e6,
    "quota_submission_burst": 10**7,
}


@pytest.fixture
def serve_gateway(database_url, kafka_bootstrap, topic_prefix) -> Iterator[Callable[..., str]]:
    """``serve_gateway(**settings)``: the gateway app served by uvicorn in a thread of this
    process, on a real socket; returns its URL. Every one is stopped afterwards."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(**overrides: Any) -> str:
        settings = Settings(
            database_url=database_url,
            kafka_bootstrap=kafka_bootstrap,
            topic_prefix=topic_prefix,
            **{
                **UNLIMITED,
                # The schema tests submit made-up types and queues.
                "gateway_accept_undeclared": True,
                **overrides,
            },
        )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "gateway exited at start"
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    try:
        yield serve
    finally:
        for server, _ in running:
            server.should_exit = True
        for _, thread in running:
            thread.join(30)


@pytest.fixture
def inprocess_gateway(serve_gateway: Callable[..., str]) -> str:
    """The gateway app served by uvicorn in a thread of this process; its URL."""
    return serve_gateway()


def env_for(url: str, key: str, **extra: Any) -> dict[str, str]:
    return {"JOBLINE_GATEWAY_URL": url, "JOBLINE_API_KEY": key, **extra}

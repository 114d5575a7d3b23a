"""Every service: ready with its dependencies, then SIGTERM -> clean shutdown, exit 0."""

import pytest

SERVICES = {
    "gateway": (),
    "relay": (),
    "analyzer": (),
    "worker": ("--app", "jobline_worker.examples:worker", "--queues", "default"),
}


@pytest.mark.parametrize("kind", list(SERVICES))
def test_service_is_ready_then_exits_zero_on_sigterm(stack, kind):
    service = stack.start(kind, *SERVICES[kind])
    assert service.alive
    assert service.terminate(timeout=30) == 0, service.tail()

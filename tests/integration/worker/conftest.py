"""The in-process gateway's fixtures, for the tests of what a worker's start tells it."""

from tests.integration.gateway.conftest import (  # noqa: F401  (fixtures, re-exported)
    gateway_settings,
    make_client,
)

"""`python -m jobline_gateway`: run the gateway."""

from __future__ import annotations

from jobline.web import service
from jobline_gateway.app import create_app
from jobline_gateway.settings import Settings


def main() -> None:
    service.run("gateway", Settings, create_app, lambda s: s.gateway_port)


if __name__ == "__main__":
    main()

"""`python -m jobline_relay`: run the outbox relay."""

from __future__ import annotations

from jobline.web import service
from jobline_relay.app import create_app
from jobline_relay.settings import Settings


def main() -> None:
    service.run("outbox-relay", Settings, create_app, lambda s: s.relay_port)


if __name__ == "__main__":
    main()

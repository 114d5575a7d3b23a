"""`python -m jobline_relay`: run the outbox relay."""

from __future__ import annotations

from jobline import logs
from jobline.errors import ConfigError
from jobline.service import fail_fast, serve
from jobline.settings import load
from jobline_relay.app import create_app
from jobline_relay.settings import Settings


def main() -> None:
    try:
        settings = load(Settings)
    except ConfigError as exc:
        fail_fast(exc)
        return
    logs.setup("outbox-relay", settings.log_level, settings.log_format)
    serve(create_app(settings), settings.http_host, settings.relay_port)


if __name__ == "__main__":
    main()

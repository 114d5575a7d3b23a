"""`python -m jobline_gateway`: run the gateway."""

from __future__ import annotations

from jobline import logs
from jobline.errors import ConfigError
from jobline.service import fail_fast, serve
from jobline.settings import load
from jobline_gateway.app import create_app
from jobline_gateway.settings import Settings


def main() -> None:
    try:
        settings = load(Settings)
    except ConfigError as exc:
        fail_fast(exc)
        return
    logs.setup("gateway", settings.log_level, settings.log_format)
    serve(create_app(settings), settings.http_host, settings.gateway_port)


if __name__ == "__main__":
    main()

"""The AI analyzer service process (`jobline-analyzer serve`)."""

from __future__ import annotations

from jobline import logs
from jobline.errors import ConfigError
from jobline.service import fail_fast, serve
from jobline.settings import load
from jobline_analyzer.app import create_app
from jobline_analyzer.settings import Settings


def main() -> None:
    try:
        settings = load(Settings)
    except ConfigError as exc:
        fail_fast(exc)
        return
    logs.setup("ai-analyzer", settings.log_level, settings.log_format)
    serve(create_app(settings), settings.http_host, settings.analyzer_port)


if __name__ == "__main__":
    main()

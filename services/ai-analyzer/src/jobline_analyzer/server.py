"""The AI analyzer service process (`jobline-analyzer serve`)."""

from __future__ import annotations

from jobline.web import service
from jobline_analyzer.app import create_app
from jobline_analyzer.settings import Settings


def main() -> None:
    service.run("ai-analyzer", Settings, create_app, lambda s: s.analyzer_port)


if __name__ == "__main__":
    main()

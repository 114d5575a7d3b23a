"""`jobline-worker --app package.module:worker --queues default,emails --concurrency 64`."""

from __future__ import annotations

import argparse
import sys

from jobline.core.errors import ConfigError
from jobline.observe import logs
from jobline.settings import load
from jobline.web.service import fail_fast, serve, start_tracing
from jobline_worker.app import create_app
from jobline_worker.errors import AppNotFound
from jobline_worker.registry import load_app
from jobline_worker.runtime import Runtime
from jobline_worker.settings import Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; each option falls back to its JOBLINE_WORKER_* variable."""
    parser = argparse.ArgumentParser(prog="jobline-worker", description="Run Jobline job handlers.")
    parser.add_argument(
        "--app", help="the Worker to serve, package.module:attribute (env JOBLINE_WORKER_APP)"
    )
    parser.add_argument(
        "--queues",
        help="comma-separated queues to consume (env JOBLINE_WORKER_QUEUES; "
        "default: the queues the app's handlers use)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        help="jobs claimed or running at once (env JOBLINE_WORKER_CONCURRENCY, default 64)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the worker until SIGTERM/SIGINT; exit 0 after draining."""
    args = parse_args(argv)
    try:
        settings = load(Settings)
    except ConfigError as exc:
        fail_fast(exc)
        return
    logs.setup("worker", settings.log_level, settings.log_format)
    start_tracing("worker")
    reference = args.app or settings.worker_app
    if not reference:
        fail_fast(ConfigError("--app (or JOBLINE_WORKER_APP) is required"))
        return
    try:
        app = load_app(reference)
    except AppNotFound as exc:
        fail_fast(ConfigError(str(exc)))
        return
    raw_queues = args.queues or settings.worker_queues
    queues = [q.strip() for q in raw_queues.split(",") if q.strip()] if raw_queues else []
    concurrency = args.concurrency or settings.worker_concurrency
    if concurrency < 1:
        fail_fast(ConfigError("--concurrency must be >= 1"))
        return
    try:
        runtime = Runtime(
            settings,
            app,
            queues or app.queues(),
            concurrency,
            consumer_options=settings.consumer_options(),
        )
    except ValueError as exc:
        fail_fast(ConfigError(str(exc)))
        return
    serve(create_app(settings, runtime), settings.http_host, settings.worker_port)


if __name__ == "__main__":
    main(sys.argv[1:])

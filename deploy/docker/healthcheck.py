#!/usr/bin/env python3
"""``jobline-healthcheck URL``: exit 0 if URL answers 2xx within the timeout, else 1.

The container health check of every Jobline service (docker-compose.yml). The image has no
curl; this uses only the standard library, so it runs in any image with Python.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 4.0


def check(url: str, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """None if ``url`` answers 2xx, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: jobline-healthcheck URL", file=sys.stderr)
        return 2
    problem = check(argv[0])
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

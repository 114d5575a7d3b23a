"""Where the gateway is and which key to use: arguments, else the environment, else the
local dev stack (``make run`` writes its key to ``.jobline/dev-api-key`` and its services'
addresses to ``.jobline/dev.json``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from jobline.client.errors import ConfigurationError

DEFAULT_URL: Final = "http://127.0.0.1:8000"
KEY_FILE: Final = "dev-api-key"  # written by `jobline dev` into its data dir
STATE_FILE: Final = "dev.json"  # written by `jobline dev` while it runs


def gateway_url(env: Mapping[str, str] | None = None) -> str:
    """JOBLINE_GATEWAY_URL, else JOBLINE_GATEWAY_PORT on this host, else the running dev
    stack's gateway (``<JOBLINE_DATA_DIR>/dev.json``), else the default port 8000."""
    env = os.environ if env is None else env
    if url := env.get("JOBLINE_GATEWAY_URL"):
        return url.rstrip("/")
    if port := env.get("JOBLINE_GATEWAY_PORT"):
        return f"http://127.0.0.1:{port}"
    state = Path(env.get("JOBLINE_DATA_DIR", ".jobline")) / STATE_FILE
    try:
        url = json.loads(state.read_text())["urls"]["gateway"]
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_URL
    return str(url).rstrip("/")


def api_key(env: Mapping[str, str] | None = None) -> str:
    """JOBLINE_API_KEY, else the dev stack's key (``<JOBLINE_DATA_DIR>/dev-api-key``)."""
    env = os.environ if env is None else env
    if key := env.get("JOBLINE_API_KEY"):
        return key.strip()
    path = Path(env.get("JOBLINE_DATA_DIR", ".jobline")) / KEY_FILE
    try:
        return path.read_text().strip()
    except OSError:
        raise ConfigurationError(
            f"no API key: set JOBLINE_API_KEY or run the dev stack (no {path})"
        ) from None

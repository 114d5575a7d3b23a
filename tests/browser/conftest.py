"""The console in headless Chromium: Debian's chromium (unpacked by ``make browser`` from
``scripts/chromium.py``) driven by Playwright, against the services run as processes.

One stack (gateway, relay, worker with the example handlers) and one browser serve the whole
folder; each test gets a fresh browser context (its own cookies)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from jobline.core.apikeys import parse_scopes
from jobline.pg import keystore
from jobline.pg.db import Database
from tests.conftest import service_environment
from tests.stack import Stack, running_stack
from tests.support import GATEWAY_ENV, RELAY_ENV, Api, start_worker

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "console"
CACHE = Path(os.environ.get("JOBLINE_CHROMIUM_CACHE", ROOT / ".cache" / "chromium"))
TENANT_SCOPES = "jobs:read,jobs:write,schedules:write,keys:manage,policies:write"
VIEWPORT = {"width": 1360, "height": 860}


def _chromium() -> Any:
    spec = importlib.util.spec_from_file_location("chromium", ROOT / "scripts" / "chromium.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def services(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path_factory: Any
) -> Iterator[Stack]:
    env = service_environment(database_url, kafka_bootstrap, topic_prefix)
    with running_stack(env, tmp_path_factory.mktemp("browser")) as stack:
        stack.start("relay", env=RELAY_ENV)
        start_worker(stack, "--concurrency", "8")
        stack.start("gateway", env={**GATEWAY_ENV, "JOBLINE_LOG_LEVEL": "INFO"})
        yield stack


@pytest.fixture(scope="module")
def gateway_url(services: Stack) -> str:
    return next(s for s in services.services if s.kind == "gateway").url


@pytest.fixture(scope="module")
async def tenant_keys(db: Database) -> dict[str, str]:
    """Two tenants' keys (every scope but the operator's)."""
    keys = {}
    async with db.transaction() as conn:
        for name in ("acme", "globex"):
            _, plaintext = await keystore.create_key(
                conn,
                tenant_id=f"{name}-{uuid4().hex[:6]}",
                name=f"{name}-admin",
                scopes=parse_scopes(TENANT_SCOPES),
            )
            keys[name] = plaintext
    return keys


@pytest.fixture(scope="module")
async def api(gateway_url: str, tenant_keys: dict[str, str]) -> AsyncIterator[Api]:
    client = Api(gateway_url, tenant_keys["acme"])
    yield client
    await client.close()


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    module = _chromium()
    binary = module.install(CACHE)  # a no-op once `make browser` has unpacked it
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(binary),
            env=module.launch_env(CACHE),
            # Root in CI: Chromium's sandbox needs user namespaces it may not have.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield browser
        await browser.close()


@pytest.fixture
async def context(chromium: Browser) -> AsyncIterator[BrowserContext]:
    context = await chromium.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    yield context
    await context.close()


async def login(context: BrowserContext, gateway_url: str, key: str) -> Page:
    """A page logged in with ``key`` (through the login form)."""
    page = await context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(f"{gateway_url}/ui/login")
    await page.fill("#api_key", key)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{gateway_url}/ui")
    return page


async def shot(page: Page, name: str) -> None:
    """A screenshot for docs/console (the README shows them)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

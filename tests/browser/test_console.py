"""The web console in a real browser: log in, watch a `sleep` job's progress arrive live,
find a dead job through the DLQ groups and redrive its group, create and pause a schedule,
watch a fan-out/fan-in workflow's graph turn green, and never see a second tenant's jobs.
Each page's screenshot lands in docs/console/."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from playwright.async_api import expect

from jobline.pg.db import Database
from tests.browser.conftest import login, shot
from tests.support import Api, wait_states


async def test_login_page_refuses_a_bad_key_then_lets_the_good_one_in(
    context, gateway_url, tenant_keys, api
):
    page = await context.new_page()
    await page.goto(f"{gateway_url}/ui/jobs")
    await expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/jobs$"))
    await shot(page, "login")
    await page.fill("#api_key", "jl_not_a_key_at_all_0000000000")
    await page.click("button[type=submit]")
    await expect(page.locator(".error")).to_contain_text("invalid, revoked or expired")
    await page.fill("#api_key", tenant_keys["acme"])
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{gateway_url}/ui/jobs")
    cookies = {c["name"]: c for c in await context.cookies()}
    session = cookies["jobline_session"]
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # not readable from scripts


async def test_a_running_sleep_jobs_progress_updates_live(context, gateway_url, tenant_keys, api):
    job = await api.submit("sleep", {"seconds": 4})
    page = await login(context, gateway_url, tenant_keys["acme"])
    await page.goto(f"{gateway_url}/ui/jobs/{job['id']}")
    # A mark on this document: a reload (a polling page) would lose it.
    await page.evaluate("window.__sameDocument = true")
    await expect(page.locator("#job-state")).to_have_text("running")
    seen = set()
    for text in ("25%", "50%", "75%"):
        await expect(page.locator("#job-progress-text")).to_contain_text(text, timeout=8000)
        seen.add(text)
        assert await page.evaluate("window.__sameDocument === true")
        if text == "50%":
            await shot(page, "job")
    assert seen == {"25%", "50%", "75%"}
    await expect(page.locator("#job-state")).to_have_text("succeeded", timeout=10_000)
    # Finished: the page reloads once for its attempts and result.
    await expect(page.locator("#result")).to_contain_text('"slept": 4')
    await expect(page.locator("#attempts li.succeeded")).to_have_count(1)


async def test_find_a_dead_job_through_its_dlq_group_and_redrive_the_group(
    context, gateway_url, tenant_keys, api, db
):
    marker = uuid4().hex[:8]
    dead = [await api.submit("always-fail", {"note": marker}, max_attempts=1) for _ in range(3)]
    ids = [j["id"] for j in dead]
    await wait_states(db, ids, "dead", timeout=30)
    page = await login(context, gateway_url, tenant_keys["acme"])
    await page.click("nav >> text=DLQ")
    group = page.locator("tr.dlq-group", has_text="always-fail")
    await expect(group.locator(".count")).to_have_text("3")
    # The group's sample is one of the dead jobs: its page shows why it died.
    await group.locator("a.sample-job").click()
    await expect(page.locator("#job-state")).to_have_text("dead")
    await expect(page.locator("#job-error")).to_contain_text("AlwaysFails")
    assert any(i in page.url for i in ids)
    await page.go_back()
    group = page.locator("tr.dlq-group", has_text="always-fail")
    await group.locator("button.dry-run").click()
    await expect(group.locator(".group-out")).to_contain_text("3 job(s) would be redriven")
    await group.locator("input[name=rate]").fill("5")
    await group.locator("button.redrive-group").click()
    await expect(group.locator(".redrive-done")).to_be_visible(timeout=15_000)
    await expect(group.locator(".redrive-count")).to_have_text("3 of 3 redriven")
    await shot(page, "dlq")
    async with db.connection() as conn:
        attempts = await conn.fetch("SELECT attempt FROM jobs WHERE id = ANY($1::uuid[])", ids)
    # Each ran again (and, being always-fail, failed again: a second attempt each).
    await wait_states(db, ids, "dead", timeout=30)
    async with db.connection() as conn:
        attempts = await conn.fetch("SELECT attempt FROM jobs WHERE id = ANY($1::uuid[])", ids)
    assert sorted(r["attempt"] for r in attempts) == [2, 2, 2]


async def test_create_a_schedule_with_a_live_preview_and_pause_it(
    context, gateway_url, tenant_keys, api
):
    page = await login(context, gateway_url, tenant_keys["acme"])
    await page.click("nav >> text=Schedules")
    await page.fill("input[name=name]", "nightly-report")
    await page.fill("#timezone", "Europe/Berlin")
    await page.fill("#cron", "61 * * * *")
    await expect(page.locator("#cron-preview .cron-error")).to_be_visible()
    await page.fill("#cron", "30 2 * * *")
    await expect(page.locator("#cron-preview .fires li")).to_have_count(5)
    await expect(page.locator("#cron-preview .fires li").first).to_contain_text("02:30")
    await page.fill("input[name=type]", "echo")
    await page.fill("input[name=payload]", '{"report": "daily"}')
    await page.click("#create-schedule")
    row = page.locator("tr.schedule", has_text="nightly-report")
    await expect(row.locator(".next-fire")).to_contain_text(re.compile(r"02:30:00 CES?T"))
    await expect(row.locator(".schedule-state")).to_have_text("active")
    await row.locator("button.pause").click()
    row = page.locator("tr.schedule", has_text="nightly-report")
    await expect(row.locator(".schedule-state")).to_have_text("paused")
    await shot(page, "schedules")
    listed = (await api.client.get("/v1/schedules")).json()["schedules"]
    assert [s["paused"] for s in listed if s["name"] == "nightly-report"] == [True]


async def test_a_fan_out_fan_in_workflows_graph_goes_green_live(
    context, gateway_url, tenant_keys, api
):
    parts = [f"resize-{i}" for i in range(3)]
    jobs = [{"ref": "split", "type": "echo", "payload": {"images": 3}}]
    jobs += [
        {
            "ref": p,
            "type": "sleep",
            "payload": {"seconds": (4 + 2 * i) / 10},
            "depends_on": ["split"],
        }
        for i, p in enumerate(parts)
    ]
    jobs.append({"ref": "zip", "type": "collect", "payload": {}, "depends_on": parts})
    jobs.append({"ref": "notify", "type": "echo", "payload": {"to": "ops"}, "depends_on": ["zip"]})
    page = await login(context, gateway_url, tenant_keys["acme"])
    made = await api.client.post("/v1/workflows", json={"jobs": jobs})
    assert made.status_code == 201, made.text
    workflow_id = made.json()["id"]
    await page.click("nav >> text=Workflows")
    await page.click(f'tr[data-workflow-id="{workflow_id}"] a')
    await expect(page).to_have_url(f"{gateway_url}/ui/workflows/{workflow_id}")
    await page.evaluate("window.__sameDocument = true")
    nodes = page.locator("#workflow-graph a.wf-node")
    await expect(nodes).to_have_count(6)
    # Live: every node turns succeeded on this same page (SSE frames, no reload).
    await expect(page.locator("#workflow-graph a.wf-node.succeeded")).to_have_count(
        6, timeout=20_000
    )
    await expect(page.locator("#workflow-state")).to_have_text("succeeded")
    assert await page.evaluate("window.__sameDocument === true")
    await expect(page.locator('tr[data-ref="zip"]')).to_contain_text('"succeeded":3')
    await shot(page, "workflow")
    # A node links to its job, whose page links back.
    await page.locator('#workflow-graph a.wf-node[data-ref="zip"]').click()
    await expect(page.locator("#job-state")).to_have_text("succeeded")
    await page.locator("#job-workflow a").click()
    await expect(page).to_have_url(f"{gateway_url}/ui/workflows/{workflow_id}")


async def test_a_second_tenants_jobs_never_appear(context, gateway_url, tenant_keys, api):
    theirs = Api(gateway_url, tenant_keys["globex"])
    try:
        foreign = [await theirs.submit("echo", {"secret": "globex"}) for _ in range(3)]
    finally:
        await theirs.close()
    own = await api.submit("echo", {"hello": "acme"})
    page = await login(context, gateway_url, tenant_keys["acme"])
    await page.click("nav >> text=Jobs")
    await expect(page.locator(f'tr[data-job-id="{own["id"]}"]')).to_have_count(1)
    await shot(page, "jobs")
    html = await page.content()
    assert all(job["id"] not in html for job in foreign)
    # Searched for by id: nothing; opened directly: not found, like a job that never existed.
    await page.fill("#q", foreign[0]["id"])
    await expect(page.locator("tr[data-job-id]")).to_have_count(0)
    answer = await page.goto(f"{gateway_url}/ui/jobs/{foreign[0]['id']}")
    assert answer is not None
    assert answer.status == 404
    await expect(page.locator(".error")).to_contain_text("No job")
    await page.goto(f"{gateway_url}/ui/dlq")
    assert "globex" not in await page.content()


async def test_overview_insights_and_keys(context, gateway_url, tenant_keys, api, db):
    await _an_anomaly(db, tenant_keys, api)
    # Something finished in the last hour, whichever order the tests ran in.
    done = [await api.submit("sleep", {"seconds": 0.2}) for _ in range(2)]
    await wait_states(db, [j["id"] for j in done], "succeeded", timeout=30)
    page = await login(context, gateway_url, tenant_keys["acme"])
    await expect(page.locator("[data-chart=chart-hour] canvas")).to_have_count(1)
    await expect(page.locator("table.overview")).to_contain_text("sleep")
    await shot(page, "overview")
    await page.click("nav >> text=Insights")
    await expect(page.locator(".finding-row")).to_have_count(1)
    await expect(page.locator(".finding-row canvas")).to_have_count(1)
    await shot(page, "insights")
    await page.click("nav >> text=Keys")
    await page.fill("#new-key-form input[name=name]", "ci-deploy")
    await page.click("#create-key")
    await expect(page.locator("#new-key")).to_contain_text("jl_")
    created = await page.locator("#new-key").inner_text()
    # The screenshot is committed: it shows the key's public prefix, not its secret.
    await page.locator("#new-key").evaluate(
        "el => { el.textContent = el.textContent.split('_').slice(0, 2).join('_')"
        " + '_•••••••• (secret masked in this screenshot)'; }"
    )
    await shot(page, "keys")
    await page.goto(f"{gateway_url}/ui/keys")
    assert created not in await page.content()  # shown once


async def _an_anomaly(db: Database, tenant_keys: dict[str, str], api: Api) -> None:
    """A finding and its minute series, as the analyzer writes them (the analyzer itself is
    tested in tests/integration/analyzer; here only the page that shows its output)."""
    tenant = (await api.client.get("/v1/keys")).json()["keys"][0]["tenant"]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=20)
    async with db.transaction() as conn:
        for minute in range(-40, 1):
            at = now + timedelta(minutes=minute)
            failing = now - timedelta(minutes=20) <= at < now - timedelta(minutes=10)
            await conn.execute(
                "INSERT INTO analyzer_rollups (tenant_id, job_type, bucket, succeeded, dead)"
                " VALUES ($1, 'send-email', $2, $3, $4) ON CONFLICT DO NOTHING",
                tenant,
                at,
                3 if failing else 30,
                27 if failing else 0,
            )
        await conn.execute(
            "INSERT INTO analyzer_findings (tenant_id, job_type, kind, severity, window_start,"
            " window_end, baseline, observed, score, explanation, error_class)"
            " VALUES ($1, 'send-email', 'failure_rate', 'high', $2, $3, 0.01, 0.9, 7.5,"
            " 'send-email failed 90% of attempts for 10 minutes (baseline 1%).',"
            " 'SMTPServerDisconnected')",
            tenant,
            start,
            start + timedelta(minutes=10),
        )
    await asyncio.sleep(0)

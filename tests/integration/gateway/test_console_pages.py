"""The console's pages against real PostgreSQL: keyset pages, text search, a job's page and
live stream, DLQ group redrive and purge, schedules, and that every page renders."""

from __future__ import annotations

import asyncio
import re
from uuid import uuid4

from tests.integration.gateway.console_user import TENANT_SCOPES
from tests.support import fresh_queue, insert_jobs, make_job, new_tenant

NEXT = re.compile(r'href="(/ui/jobs\?[^"]*cursor=[^"]+)" id="next-page"')
ROW = re.compile(r'data-job-id="([0-9a-f-]{36})"')


async def _user(browser, make_api_key, tenant):
    user = await browser()
    assert (
        await user.login(await make_api_key(scopes=TENANT_SCOPES, tenant=tenant))
    ).status_code == 303
    return user


async def test_jobs_pages_follow_the_keyset_to_the_last_job(browser, make_api_key, db):
    tenant = await new_tenant(db)
    ids = await insert_jobs(db, [make_job(tenant, "echo") for _ in range(120)], batch=7)
    user = await _user(browser, make_api_key, tenant)
    seen: list[str] = []
    path: str | None = "/ui/jobs?type=echo"
    pages = 0
    while path is not None:
        page = await user.page(path.replace("&amp;", "&"))
        assert page.status_code == 200
        seen += ROW.findall(page.text)
        pages += 1
        found = NEXT.search(page.text)
        path = found.group(1) if found else None
    assert pages == 3  # 50 + 50 + 20
    assert len(seen) == len(set(seen)) == 120
    assert set(seen) == {str(i) for i in ids}
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT id, created_at FROM jobs WHERE id = ANY($1)", ids)
    newest_first = sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)
    assert seen == [str(r["id"]) for r in newest_first]


async def test_jobs_filters_and_text_search(browser, make_api_key, db):
    tenant = await new_tenant(db)
    queue = fresh_queue()
    [echo] = await insert_jobs(db, [make_job(tenant, "echo", queue)])
    [other] = await insert_jobs(db, [make_job(tenant, "report.build")])
    user = await _user(browser, make_api_key, tenant)
    by_queue = ROW.findall((await user.page(f"/ui/jobs?queue={queue}")).text)
    assert by_queue == [str(echo)]
    by_prefix = ROW.findall((await user.page(f"/ui/jobs?q={str(other)[:8]}")).text)
    assert by_prefix == [str(other)]
    table = await user.client.get(
        "/ui/jobs?state=queued&type=report.build",
        headers={"HX-Request": "true", "HX-Target": "job-table"},
    )
    assert table.text.startswith('<div id="job-table">')  # the fragment alone
    assert ROW.findall(table.text) == [str(other)]
    bad = await user.page("/ui/jobs?state=nope")
    assert "unknown state" in bad.text


async def test_text_search_finds_a_job_by_its_idempotency_key(browser, make_api_key, client, db):
    key = await make_api_key(scopes=TENANT_SCOPES)
    made = await client.post(
        "/v1/jobs",
        json={"type": "echo", "payload": {}},
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "order-4711"},
    )
    user = await browser()
    await user.login(key)
    assert ROW.findall((await user.page("/ui/jobs?q=order-4711")).text) == [made.json()["id"]]


async def test_a_jobs_page_and_its_live_stream(browser, make_api_key, db):
    tenant = await new_tenant(db)
    [job_id] = await insert_jobs(db, [make_job(tenant, "echo", payload={"hello": "world"})])
    user = await _user(browser, make_api_key, tenant)
    page = await user.page(f"/ui/jobs/{job_id}")
    assert page.status_code == 200
    assert "&#34;hello&#34;: &#34;world&#34;" in page.text
    assert f'data-sse="/ui/jobs/{job_id}/live"' in page.text
    assert await user.post(f"/ui/jobs/{job_id}/cancel") is not None
    # The job is finished: its stream sends its state once, then `done`, and ends.
    stream = await asyncio.wait_for(user.client.get(f"/ui/jobs/{job_id}/live"), 10)
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert "event: update\n" in stream.text
    assert "cancelled" in stream.text
    assert stream.text.rstrip().endswith("event: done\ndata: cancelled")


async def _kill(db, ids, error_class):
    error = {"attempt": 1, "error_class": error_class, "message": f"{error_class} happened"}
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET state = 'dead', finished_at = now(), last_error = $2"
            " WHERE id = ANY($1)",
            list(ids),
            error,
        )


async def test_dlq_groups_dry_run_redrive_and_purge(browser, make_api_key, db):
    tenant = await new_tenant(db)
    timeouts = await insert_jobs(db, [make_job(tenant, "mail.send") for _ in range(4)])
    crashes = await insert_jobs(db, [make_job(tenant, "mail.send") for _ in range(2)])
    await _kill(db, timeouts, "TimeoutError")
    await _kill(db, crashes, "KeyError")
    user = await _user(browser, make_api_key, tenant)
    page = await user.page("/ui/dlq")
    assert page.text.index("TimeoutError") < page.text.index("KeyError")  # largest first
    group = {"type": "mail.send", "queue": "default", "has_class": "1"}
    dry = await user.post("/ui/dlq/dry-run", **group, error_class="TimeoutError")
    assert "4 job(s) would be redriven" in dry.text
    started = await user.post("/ui/dlq/redrive", **group, error_class="TimeoutError", rate="200")
    live = re.search(r'data-sse="(/ui/dlq/redrives/[^"]+/live)"', started.text)
    assert live is not None
    progress = await asyncio.wait_for(user.client.get(live.group(1)), 10)
    assert "4 of 4 redriven" in progress.text
    assert "event: done" in progress.text
    async with db.connection() as conn:
        states = await conn.fetch("SELECT state FROM jobs WHERE id = ANY($1)", timeouts)
    assert {r["state"] for r in states} == {"queued"}
    purged = await user.post("/ui/dlq/purge", **group, error_class="KeyError")
    assert "Purged 2 dead job(s)" in purged.text
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE id = ANY($1)", crashes) == 0
    assert "No dead jobs" in (await user.page("/ui/dlq")).text


async def test_schedules_create_preview_pause_and_resume(browser, make_api_key, db):
    tenant = await new_tenant(db)
    user = await _user(browser, make_api_key, tenant)
    preview = await user.page("/ui/schedules/preview?cron=0+9+*+*+1-5&timezone=Europe/Berlin")
    assert (preview.text.count("<li>") == 5 and "CET" in preview.text) or "CEST" in preview.text
    invalid = await user.page("/ui/schedules/preview?cron=61+*+*+*+*&timezone=UTC")
    assert "cron-error" in invalid.text
    refused = await user.post(
        "/ui/schedules", name="x", cron="nope", timezone="UTC", type="echo", payload="{}"
    )
    assert refused.status_code == 422
    assert 'class="error"' in refused.text
    created = await user.post(
        "/ui/schedules",
        name="nightly",
        cron="0 3 * * *",
        timezone="Asia/Tokyo",
        type="echo",
        queue="default",
        payload='{"a": 1}',
    )
    assert created.status_code == 303
    page = await user.page("/ui/schedules")
    assert "03:00:00 JST" in page.text
    schedule_id = re.search(r'action="/ui/schedules/([0-9a-f-]{36})/pause"', page.text)
    assert schedule_id is not None
    assert (await user.post(f"/ui/schedules/{schedule_id.group(1)}/pause")).status_code == 303
    assert ">paused</span>" in (await user.page("/ui/schedules")).text
    assert (await user.post(f"/ui/schedules/{schedule_id.group(1)}/resume")).status_code == 303
    assert ">active</span>" in (await user.page("/ui/schedules")).text


async def test_overview_insights_and_keys_pages_render(browser, make_api_key, db):
    tenant = await new_tenant(db)
    ids = await insert_jobs(db, [make_job(tenant, "echo") for _ in range(3)])
    await _kill(db, ids[:1], "TimeoutError")
    user = await _user(browser, make_api_key, tenant)
    overview = await user.page("/ui")
    assert overview.status_code == 200
    assert 'id="chart-hour"' in overview.text
    assert (await user.page("/ui?window=day")).status_code == 200
    assert (await user.page("/ui/insights")).status_code == 200
    keys = await user.page("/ui/keys")
    assert keys.status_code == 200
    created = await user.post("/ui/keys", name="ci", scope="jobs:read")
    assert created.status_code == 201
    secret = re.search(r'<pre class="secret" id="new-key">(jl_[^<]+)</pre>', created.text)
    assert secret is not None
    assert secret.group(1) not in (await user.page("/ui/keys")).text  # shown once only
    escalate = await user.post("/ui/keys", name="root", scope="admin")
    assert escalate.status_code == 403


async def test_apply_a_recommendation_needs_policies_write(browser, make_api_key, db):
    tenant = await new_tenant(db)
    rec_id = uuid4()
    policy = {
        "max_attempts": 7,
        "backoff": {"kind": "exponential", "base_seconds": 2.0, "max_seconds": 60.0},
        "non_retryable_errors": ["ValueError"],
    }
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO analyzer_recommendations (id, tenant_id, job_type, policy, body)"
            " VALUES ($1, $2, 'mail.send', $3, $4)",
            rec_id,
            tenant,
            policy,
            {"evidence": {"attempts": 120, "success_after_retry": 0.4}},
        )
    reader = await browser()
    await reader.login(await make_api_key(scopes="jobs:read", tenant=tenant))
    page = await reader.page("/ui/insights")
    assert "needs policies:write" in page.text
    refused = await reader.post(f"/ui/insights/recommendations/{rec_id}/apply")
    assert refused.status_code == 403
    user = await _user(browser, make_api_key, tenant)
    applied = await user.post(f"/ui/insights/recommendations/{rec_id}/apply")
    assert applied.status_code == 303
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT max_attempts, source FROM job_type_policies"
            " WHERE tenant_id = $1 AND type = 'mail.send'",
            tenant,
        )
        when = await conn.fetchval(
            "SELECT applied_at FROM analyzer_recommendations WHERE id = $1", rec_id
        )
    assert (row["max_attempts"], row["source"]) == (7, "analyzer")
    assert when is not None
    other = await _user(browser, make_api_key, await new_tenant(db))
    assert (await other.post(f"/ui/insights/recommendations/{rec_id}/apply")).status_code == 404


async def test_revoke_a_key_from_the_keys_page(browser, make_api_key, db):
    tenant = await new_tenant(db)
    spare = await make_api_key(scopes="jobs:read", tenant=tenant)
    user = await _user(browser, make_api_key, tenant)
    page = await user.page("/ui/keys")
    revoke = re.findall(r'action="(/ui/keys/[0-9a-f-]{36}/revoke)"', page.text)
    assert len(revoke) == 2  # the session's key and the spare one
    async with db.connection() as conn:
        spare_id = await conn.fetchval(
            "SELECT id FROM api_keys WHERE tenant_id = $1 AND scopes = ARRAY['jobs:read']",
            tenant,
        )
    assert (await user.post(f"/ui/keys/{spare_id}/revoke")).status_code == 303
    shut_out = await browser()
    assert (await shut_out.login(spare)).status_code == 401

"""The console's login, session cookie, CSRF checks and tenant isolation."""

from __future__ import annotations

from uuid import uuid4

from jobline.core.apikeys import Scope
from tests.integration.gateway.conftest import bearer, key_id_of
from tests.integration.gateway.console_user import TENANT_SCOPES, Browser
from tests.support import insert_jobs, make_job, new_tenant


async def test_a_page_without_a_session_sends_the_browser_to_login(browser):
    user = await browser()
    answer = await user.client.get("/ui/jobs?state=dead")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=/ui/jobs"
    htmx = await user.client.get("/ui/jobs", headers={"HX-Request": "true"})
    assert htmx.headers["HX-Redirect"].startswith("/ui/login")


async def test_login_sets_a_signed_httponly_samesite_strict_cookie(browser, make_api_key):
    key = await make_api_key(scopes=TENANT_SCOPES)
    user = await browser()
    answer = await user.login(key, next_page="/ui/dlq")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/dlq"
    [cookie] = [
        c for c in answer.headers.get_list("set-cookie") if c.startswith("jobline_session=")
    ]
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/ui"} <= flags
    assert any(f.startswith("max-age=") for f in flags)
    page = await user.page("/ui/jobs")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert "api_key" not in page.text  # logged in: no login form


async def test_login_refuses_a_bad_key_a_missing_csrf_token_and_a_foreign_next(browser):
    user = await browser()
    await user.client.get("/ui/login")
    no_token = await user.client.post("/ui/login", data={"api_key": "jl_nope"})
    assert no_token.status_code == 403
    bad = await user.login("jl_" + "x" * 40)
    assert bad.status_code == 401
    assert "invalid, revoked or expired" in bad.text
    assert "jobline_session" not in bad.headers.get("set-cookie", "")


async def test_a_forged_or_tampered_cookie_is_no_session(browser, make_api_key):
    key = await make_api_key(scopes=TENANT_SCOPES)
    user = await browser()
    await user.login(key)
    value = user.client.cookies["jobline_session"]
    body, mac = value.split(".")
    user.client.cookies.set("jobline_session", body + "x." + mac, path="/ui")
    answer = await user.client.get("/ui/jobs")
    assert answer.status_code == 303


async def test_changing_forms_need_the_sessions_csrf_token(browser, make_api_key, db):
    key = await make_api_key(scopes=TENANT_SCOPES)
    user = await browser()
    await user.login(key)
    tenant = await _tenant_of_page(user)
    [job_id] = await insert_jobs(db, [make_job(tenant, "echo")])
    forged = await user.client.post(f"/ui/jobs/{job_id}/cancel", data={"csrf_token": "x"})
    assert forged.status_code == 403
    missing = await user.client.post(f"/ui/jobs/{job_id}/cancel")
    assert missing.status_code == 403
    assert (await user.page(f"/ui/jobs/{job_id}")).text.count('id="job-state">queued') == 1
    done = await user.post(f"/ui/jobs/{job_id}/cancel")
    assert done.status_code == 303
    page = await user.page(done.headers["location"])
    assert 'id="job-state">cancelled' in page.text


async def test_a_tenant_key_never_sees_another_tenants_jobs(browser, make_api_key, db):
    mine, theirs = await new_tenant(db), await new_tenant(db)
    key = await make_api_key(scopes=TENANT_SCOPES, tenant=mine)
    [own] = await insert_jobs(db, [make_job(mine, "echo")])
    [other] = await insert_jobs(db, [make_job(theirs, "echo")])
    user = await browser()
    await user.login(key)
    listing = await user.page("/ui/jobs")
    assert str(own)[:13] in listing.text
    assert str(other)[:13] not in listing.text
    assert (await user.page(f"/ui/jobs/{other}")).status_code == 404
    assert (await user.page(f"/ui/jobs?q={other}")).text.count("data-job-id") == 0
    # A tenant key cannot switch tenants, however it asks.
    switched = await user.post("/ui/tenant", tenant=theirs, next="/ui/jobs")
    assert switched.status_code == 403


async def test_the_operator_switches_tenants(browser, make_api_key, db):
    tenant = await new_tenant(db)
    [job_id] = await insert_jobs(db, [make_job(tenant, "echo")])
    operator = await make_api_key(scopes="admin,jobs:read", tenant=f"ops-{uuid4().hex[:6]}")
    user = await browser()
    await user.login(operator)
    assert str(job_id)[:13] not in (await user.page("/ui/jobs")).text
    switched = await user.post("/ui/tenant", tenant=tenant, next="/ui/jobs")
    assert switched.status_code == 303
    page = await user.page("/ui/jobs")
    assert str(job_id)[:13] in page.text
    assert f'value="{tenant}" selected' in page.text


async def test_revoking_the_key_ends_its_sessions(browser, make_api_key, client, db):
    key = await make_api_key(scopes=TENANT_SCOPES)
    user = await browser()
    await user.login(key)
    assert (await user.page("/ui/jobs")).status_code == 200
    revoked = await client.delete(f"/v1/keys/{await key_id_of(db, key)}", headers=bearer(key))
    assert revoked.status_code == 200
    assert (await user.client.get("/ui/jobs")).status_code == 303


async def test_logout_drops_the_cookie(browser, make_api_key):
    user = await browser()
    await user.login(await make_api_key(scopes=TENANT_SCOPES))
    out = await user.post("/ui/logout")
    assert out.status_code == 303
    [cookie] = out.headers.get_list("set-cookie")
    assert cookie.startswith("jobline_session=")
    assert "max-age=0" in cookie.lower()
    assert (await user.client.get("/ui/jobs")).status_code == 303


async def test_a_key_without_jobs_read_cannot_log_in(browser, make_api_key):
    user = await browser()
    answer = await user.login(await make_api_key(scopes=Scope.JOBS_WRITE.value))
    assert answer.status_code == 403


async def _tenant_of_page(user: Browser) -> str:
    page = await user.page("/ui/jobs")
    marker = 'id="tenant-name">tenant <b>'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index("</b>", start)]

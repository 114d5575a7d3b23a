"""/v1/schedules: create/list/get/update/delete/pause/resume/next/jobs, auth and validation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from jobline.pg.db import Database
from jobline_relay.scheduler import fire_due
from tests.integration.gateway.conftest import bearer
from tests.integration.schedules.conftest import schedule_body
from tests.integration.schedules.helpers import db_now

MISSING = "00000000-0000-4000-8000-000000000000"

# (method, path, body, scope)
ROUTES = [
    ("POST", "/v1/schedules", schedule_body(), "schedules:write"),
    ("GET", "/v1/schedules", None, "jobs:read"),
    ("GET", "/v1/schedules/{id}", None, "jobs:read"),
    ("PATCH", "/v1/schedules/{id}", {"paused": True}, "schedules:write"),
    ("DELETE", "/v1/schedules/{id}", None, "schedules:write"),
    ("POST", "/v1/schedules/{id}/pause", None, "schedules:write"),
    ("POST", "/v1/schedules/{id}/resume", None, "schedules:write"),
    ("GET", "/v1/schedules/{id}/next", None, "jobs:read"),
    ("GET", "/v1/schedules/{id}/jobs", None, "jobs:read"),
]
IDS = [f"{m} {p}" for m, p, _, _ in ROUTES]


def problem(response, status: int) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


async def create(client, key, **changes) -> Any:
    response = await client.post(
        "/v1/schedules", json=schedule_body(**changes), headers=bearer(key)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def set_next_fire(db: Database, schedule_id: str, when: datetime) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE schedules SET next_fire_at = $1 WHERE id = $2", when, UUID(schedule_id)
        )


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
async def test_every_route_needs_a_key(client, route):
    method, path, body, _ = route
    response = await client.request(method, path.format(id=MISSING), json=body)
    problem(response, 401)


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
async def test_every_route_needs_its_scope(client, make_api_key, route):
    method, path, body, scope = route
    others = ",".join(
        s for s in ("jobs:read", "jobs:write", "schedules:write", "admin") if s != scope
    )
    key = await make_api_key(scopes=others)
    response = await client.request(method, path.format(id=MISSING), json=body, headers=bearer(key))
    assert scope in problem(response, 403)["detail"]


async def test_another_tenants_schedule_is_not_found_on_every_route(client, make_api_key):
    owner, stranger = await make_api_key(), await make_api_key()
    created = await create(client, owner)
    for method, path, body, _ in ROUTES[2:]:
        response = await client.request(
            method, path.format(id=created["id"]), json=body, headers=bearer(stranger)
        )
        assert f"No schedule {created['id']}" in problem(response, 404)["detail"]
    listed = await client.get("/v1/schedules", headers=bearer(stranger))
    assert listed.json()["schedules"] == []
    # Still there, untouched, for its owner.
    mine = await client.get(f"/v1/schedules/{created['id']}", headers=bearer(owner))
    assert mine.status_code == 200
    assert mine.json()["paused"] is False


# --- create, read, validation ---------------------------------------------------------------


async def test_create_then_get_and_list(client, make_api_key):
    key = await make_api_key(scopes="schedules:write,jobs:read")
    body = schedule_body(
        misfire_policy="catch_up",
        catch_up_limit=7,
        overlap_policy="skip_if_running",
        job={
            "type": "report.build",
            "payload": {"kind": "daily"},
            "queue": "reports",
            "max_attempts": 3,
            "backoff": {"kind": "fixed", "base_seconds": 2, "max_seconds": 2},
            "timeout_seconds": 60,
        },
    )
    response = await client.post("/v1/schedules", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/v1/schedules/{created['id']}"
    assert created["cron"] == "30 2 1 1 *"
    assert created["timezone"] == "Europe/Berlin"
    assert created["interval_seconds"] is None
    assert created["misfire_policy"] == "catch_up"
    assert created["catch_up_limit"] == 7
    assert created["overlap_policy"] == "skip_if_running"
    assert created["paused"] is False
    assert created["job"]["queue"] == "reports"
    assert created["job"]["max_attempts"] == 3
    assert created["job"]["backoff"]["kind"] == "fixed"
    # 02:30 on Jan 1st in Berlin (CET, UTC+1) is 01:30 UTC, next year or this.
    nxt = datetime.fromisoformat(created["next_fire_at"])
    assert (nxt.month, nxt.day, nxt.hour, nxt.minute) == (1, 1, 1, 30)
    assert nxt > datetime.now(UTC)
    got = await client.get(created["links"]["self"], headers=bearer(key))
    assert got.json() == created
    await create(client, key, name="another")
    listed = (await client.get("/v1/schedules", headers=bearer(key))).json()
    assert [s["name"] for s in listed["schedules"]] == ["another", "nightly-report"]
    page1 = (await client.get("/v1/schedules?limit=1", headers=bearer(key))).json()
    assert [s["name"] for s in page1["schedules"]] == ["another"]
    page2 = await client.get(
        f"/v1/schedules?limit=1&cursor={page1['next_cursor']}", headers=bearer(key)
    )
    assert [s["name"] for s in page2.json()["schedules"]] == ["nightly-report"]
    assert page2.json()["next_cursor"] is None
    named = await client.get("/v1/schedules?name=another", headers=bearer(key))
    assert [s["name"] for s in named.json()["schedules"]] == ["another"]


async def test_interval_schedule_is_created_with_its_next_fire(client, make_api_key):
    key = await make_api_key()
    created = await create(client, key, cron=None, timezone=None, interval_seconds=3600)
    assert created["cron"] is None
    assert created["interval_seconds"] == 3600
    nxt = datetime.fromisoformat(created["next_fire_at"])
    # Anchored on the epoch: on the hour.
    assert (nxt.minute, nxt.second) == (0, 0)
    assert timedelta(0) < nxt - datetime.now(UTC) <= timedelta(hours=1)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"cron": "61 * * * *"}, "cron", "bad minute field '61'"),
        ({"cron": "* * *"}, "cron", "expected 5 fields"),
        ({"cron": "0 0 30 2 *"}, "cron", "day-of-month field '30'"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "unknown time zone 'Mars/Olympus_Mons'"),
        ({"interval_seconds": 60}, "cron", "exactly one of cron or interval_seconds"),
        ({"cron": None}, "cron", "exactly one of cron or interval_seconds"),
        (
            {"start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"},
            "end_at",
            "end_at is before start_at",
        ),
    ],
    ids=["bad-field", "field-count", "never", "bad-tz", "both", "neither", "bounds"],
)
async def test_invalid_schedules_are_422_naming_the_problem(
    client, make_api_key, changes, field, words
):
    key = await make_api_key()
    response = await client.post(
        "/v1/schedules", json=schedule_body(**changes), headers=bearer(key)
    )
    body = problem(response, 422)
    assert words in body["detail"]
    assert body["type"] == "urn:jobline:problem:invalid-schedule"
    assert body["errors"][0]["field"] == field


@pytest.mark.parametrize(
    "changes",
    [
        {"interval_seconds": 0},
        {"misfire_policy": "sometimes"},
        {"job": {"type": "x"}},
        {"job": {"type": "x", "payload": {}, "priority": 3}},
        {"job": {"type": "x", "payload": {"n": 2**64}}},
        {"job": {"type": "x", "payload": {}, "backoff": {"base_seconds": 5, "max_seconds": 1}}},
        {"extra": 1},
        {"name": ""},
    ],
)
async def test_malformed_bodies_are_422(client, make_api_key, changes):
    key = await make_api_key()
    response = await client.post(
        "/v1/schedules", json=schedule_body(**changes), headers=bearer(key)
    )
    problem(response, 422)


async def test_a_partial_backoff_contradicting_the_inherited_one_is_422(client, make_api_key, db):
    """As for a submission: a backoff given in part takes the rest from the tenant's policy
    for the type, else the defaults; a max below the inherited base is refused up front,
    not left to fail at every fire."""
    key = await make_api_key()
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO job_type_policies (tenant_id, type, backoff, source)"
            " SELECT tenant_id, 'report.build', $2, 'analyzer' FROM api_keys WHERE prefix = $1",
            key.split("_")[1],
            {"kind": "fixed", "base_seconds": 0.25, "max_seconds": 10},
        )
    tuned = {"type": "report.build", "payload": {}, "backoff": {"max_seconds": 0.5}}
    plain = {**tuned, "type": "other.type"}  # no policy: the platform default's base, 1 s
    refused = problem(
        await client.post("/v1/schedules", json=schedule_body(job=plain), headers=bearer(key)),
        422,
    )
    assert [(e["field"], e["pointer"]) for e in refused["errors"]] == [
        ("job.backoff", "/job/backoff")
    ]
    assert "backoff" in refused["detail"]
    created = await create(client, key, job=tuned)  # above the policy's base: fine
    # Shown as given: the missing fields are inherited at each fire.
    assert created["job"]["backoff"] == {"kind": None, "base_seconds": None, "max_seconds": 0.5}
    sid = created["id"]
    patched = await client.patch(f"/v1/schedules/{sid}", json={"job": plain}, headers=bearer(key))
    assert problem(patched, 422)["errors"][0]["field"] == "job.backoff"
    assert (await client.get(f"/v1/schedules/{sid}", headers=bearer(key))).json() == created


async def test_duplicate_name_is_409_per_tenant(client, make_api_key):
    key, other = await make_api_key(), await make_api_key()
    await create(client, key)
    again = await client.post("/v1/schedules", json=schedule_body(), headers=bearer(key))
    assert "already exists" in problem(again, 409)["detail"]
    await create(client, other)  # names are per tenant


# --- next fire times ------------------------------------------------------------------------


async def test_next_shows_local_and_utc_across_daylight_saving(client, make_api_key):
    key = await make_api_key()
    created = await create(client, key, cron="30 2 * * *")
    response = await client.get(
        f"/v1/schedules/{created['id']}/next",
        params={"count": 3, "after": "2024-03-30T00:00:00Z"},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["timezone"] == "Europe/Berlin"
    fires = [
        (datetime.fromisoformat(f["local"]), datetime.fromisoformat(f["utc"]))
        for f in body["fires"]
    ]
    assert [loc.isoformat() for loc, _ in fires] == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",  # 02:30 does not exist that night: shifted past the gap
        "2024-04-01T02:30:00+02:00",
    ]
    assert [u.isoformat() for _, u in fires] == [
        "2024-03-30T01:30:00+00:00",
        "2024-03-31T01:00:00+00:00",
        "2024-04-01T00:30:00+00:00",
    ]
    autumn = await client.get(
        f"/v1/schedules/{created['id']}/next",
        params={"count": 2, "after": "2024-10-26T12:00:00Z"},
        headers=bearer(key),
    )
    # 02:30 happens twice on Oct 27th: it fires once, at the first (CEST) one.
    assert [f["local"] for f in autumn.json()["fires"]] == [
        "2024-10-27T02:30:00+02:00",
        "2024-10-28T02:30:00+01:00",
    ]


async def test_next_defaults_to_five_after_now(client, make_api_key):
    key = await make_api_key()
    created = await create(client, key, cron=None, timezone="America/New_York", interval_seconds=60)
    body = (await client.get(f"/v1/schedules/{created['id']}/next", headers=bearer(key))).json()
    utc = [datetime.fromisoformat(f["utc"]) for f in body["fires"]]
    assert len(utc) == 5
    assert all(b - a == timedelta(seconds=60) for a, b in itertools.pairwise(utc))
    assert utc[0] > datetime.now(UTC) - timedelta(seconds=1)
    assert body["fires"][0]["local"].endswith(("-05:00", "-04:00"))
    too_many = await client.get(
        f"/v1/schedules/{created['id']}/next?count=101", headers=bearer(key)
    )
    problem(too_many, 422)


# --- update, delete, pause, resume ----------------------------------------------------------


async def test_patch_changes_fields_and_replans(client, make_api_key):
    key = await make_api_key()
    created = await create(client, key)
    sid = created["id"]
    response = await client.patch(
        f"/v1/schedules/{sid}",
        json={"name": "renamed", "interval_seconds": 600, "job": {"type": "t2", "payload": {}}},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "renamed"
    assert body["cron"] is None
    assert body["interval_seconds"] == 600
    assert body["job"] == {
        "type": "t2",
        "payload": {},
        "queue": "default",
        "max_attempts": None,
        "backoff": None,
        "timeout_seconds": None,
    }
    nxt = datetime.fromisoformat(body["next_fire_at"])
    assert timedelta(0) < nxt - datetime.now(UTC) <= timedelta(seconds=600)
    assert nxt.minute % 10 == 0
    assert nxt.second == 0
    both = await client.patch(
        f"/v1/schedules/{sid}",
        json={"cron": "* * * * *", "interval_seconds": 5},
        headers=bearer(key),
    )
    problem(both, 422)
    bad_tz = await client.patch(
        f"/v1/schedules/{sid}", json={"timezone": "Nowhere"}, headers=bearer(key)
    )
    assert "unknown time zone" in problem(bad_tz, 422)["detail"]
    await create(client, key, name="taken")
    clash = await client.patch(f"/v1/schedules/{sid}", json={"name": "taken"}, headers=bearer(key))
    problem(clash, 409)
    unchanged = await client.get(f"/v1/schedules/{sid}", headers=bearer(key))
    assert unchanged.json()["name"] == "renamed"


async def test_pause_keeps_the_pending_time_and_resume_applies_the_misfire_policy(
    client, make_api_key, db
):
    key = await make_api_key()
    skip = await create(client, key, name="skip", cron=None, timezone=None, interval_seconds=10)
    catch = await create(
        client,
        key,
        name="catch",
        cron=None,
        timezone=None,
        interval_seconds=10,
        misfire_policy="catch_up",
        catch_up_limit=3,
    )
    now = await db_now(db)
    past = now.replace(microsecond=0) - timedelta(seconds=now.second % 10 + 100)  # on the grid
    for s in (skip, catch):
        paused = await client.post(f"/v1/schedules/{s['id']}/pause", headers=bearer(key))
        assert paused.json()["paused"] is True
        await set_next_fire(db, s["id"], past)
        again = await client.post(f"/v1/schedules/{s['id']}/pause", headers=bearer(key))
        assert again.json()["next_fire_at"] == past.isoformat().replace("+00:00", "Z")
    resumed = {}
    for s in (skip, catch):
        r = await client.post(f"/v1/schedules/{s['id']}/resume", headers=bearer(key))
        assert r.status_code == 200
        assert r.json()["paused"] is False
        resumed[s["name"]] = datetime.fromisoformat(r.json()["next_fire_at"])
    latest = resumed["skip"]  # skip: only the latest missed time is still owed
    assert latest <= datetime.now(UTC)
    assert latest.second % 10 == 0
    assert datetime.now(UTC) - latest < timedelta(seconds=12)
    assert resumed["catch"] == latest - timedelta(seconds=20)  # catch_up: the latest 3


async def test_created_paused_fires_from_resume(client, make_api_key):
    key = await make_api_key()
    created = await create(client, key, paused=True, cron=None, timezone=None, interval_seconds=5)
    assert created["paused"] is True
    assert created["next_fire_at"] is None
    resumed = (
        await client.post(f"/v1/schedules/{created['id']}/resume", headers=bearer(key))
    ).json()
    assert datetime.fromisoformat(resumed["next_fire_at"]) > datetime.now(UTC) - timedelta(
        seconds=1
    )


async def test_delete_keeps_the_jobs(client, make_api_key, db):
    key = await make_api_key()
    created = await create(client, key, cron=None, timezone=None, interval_seconds=1)
    await set_next_fire(db, created["id"], (await db_now(db)) - timedelta(seconds=0.5))
    await fire_due(db, 1000)
    jobs = (await client.get(f"/v1/schedules/{created['id']}/jobs", headers=bearer(key))).json()
    assert len(jobs["jobs"]) == 1
    gone = await client.delete(f"/v1/schedules/{created['id']}", headers=bearer(key))
    assert gone.status_code == 204
    problem(await client.get(f"/v1/schedules/{created['id']}", headers=bearer(key)), 404)
    problem(await client.delete(f"/v1/schedules/{created['id']}", headers=bearer(key)), 404)
    job = await client.get(f"/v1/jobs/{jobs['jobs'][0]['id']}", headers=bearer(key))
    assert job.status_code == 200


# --- jobs of a schedule ---------------------------------------------------------------------


async def test_jobs_of_a_schedule_newest_first_paginated(client, make_api_key, db):
    key = await make_api_key()
    created = await create(
        client,
        key,
        cron=None,
        timezone=None,
        interval_seconds=1,
        misfire_policy="catch_up",
        job={"type": "tick", "payload": {"n": 1}, "queue": "ticks", "max_attempts": 2},
    )
    sid = created["id"]
    now = await db_now(db)
    await set_next_fire(db, sid, now.replace(microsecond=0) - timedelta(seconds=4))
    await fire_due(db, 1000)
    await client.post(f"/v1/schedules/{sid}/pause", headers=bearer(key))
    everything = (await client.get(f"/v1/schedules/{sid}/jobs", headers=bearer(key))).json()
    fires = [datetime.fromisoformat(j["fire_time"]) for j in everything["jobs"]]
    assert len(fires) == 5  # 4 late (caught up) + the on-time one
    assert fires == sorted(fires, reverse=True)
    assert all(a - b == timedelta(seconds=1) for a, b in itertools.pairwise(fires))
    job = everything["jobs"][0]
    assert job["schedule_id"] == sid
    assert job["type"] == "tick"
    assert job["queue"] == "ticks"
    assert job["max_attempts"] == 2
    assert job["status"] == "queued"
    assert job["metadata"]["schedule_id"] == sid
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get(f"/v1/schedules/{sid}/jobs", params=params, headers=bearer(key))
        ).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [j["id"] for j in everything["jobs"]]
    bad = await client.get(f"/v1/schedules/{sid}/jobs?cursor=nonsense", headers=bearer(key))
    problem(bad, 422)
    last = (await client.get(f"/v1/schedules/{sid}", headers=bearer(key))).json()
    assert datetime.fromisoformat(last["last_fired_at"]) == fires[0]


async def test_an_unknown_query_parameter_is_422(client, make_api_key):
    key = await make_api_key()
    response = await client.get("/v1/schedules", params={"limt": 5}, headers=bearer(key))
    body = problem(response, 422)
    assert "'limt'" in body["detail"]
    assert body["errors"][0]["location"] == "query"
    assert (await client.get("/v1/schedules?limit=5", headers=bearer(key))).status_code == 200

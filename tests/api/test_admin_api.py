"""The admin API through the real app: users, named roles, calendars, policy versions, the
role gate and tenant isolation."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from sqlalchemy import func, select

from domain.demo import POLICIES, stable_id
from domain.models import BusinessCalendarRow, SlaPolicy, User
from tests.api.conftest import Api
from tests.support.errors import error
from tests.support.tenants import Tenant

NORA = {
    "email": "Nora@Example.com",
    "name": "Nora Engineer",
    "role": "engineer",
    "timezone": "Europe/Berlin",
}


def calendar_body(**changes: Any) -> dict[str, Any]:
    return {
        "name": "Lisbon office",
        "tz": "Europe/Lisbon",
        "hours": {"0": [["08:00", "12:00"], ["13:00", "17:00"]], "4": [["08:00", "24:00"]]},
        "holiday_country": "PT",
        "holiday_subdivision": None,
        "custom_holidays": ["2026-12-24"],
        **changes,
    }


def capa_rungs() -> dict[str, Any]:
    return copy.deepcopy(POLICIES["CAPA"]["rungs"])


async def count(tenant: Tenant, model: type[Any]) -> int:
    async with tenant.owner() as session:
        total = await session.scalar(
            select(func.count()).select_from(model).where(model.account_id == tenant.account_id)
        )
    return int(total or 0)


async def test_a_user_is_created_changed_and_soft_deleted(api: Api, tenant: Tenant) -> None:
    ada = api.headers(tenant, "ada")
    body = {**NORA, "manager_id": str(tenant.user("ada"))}
    created = await api.client.post("/v1/users", json=body, headers=ada)
    assert created.status_code == 201, created.text
    nora = created.json()
    assert (nora["email"], nora["manager_id"], nora["quiet_start"], nora["deleted_at"]) == (
        "nora@example.com",
        str(tenant.user("ada")),
        None,
        None,
    )
    url = f"/v1/users/{nora['id']}"

    patched = await api.client.patch(
        url, json={"name": "Nora N.", "quiet_start": "19:00", "quiet_end": "07:00"}, headers=ada
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["quiet_start"]) == ("Nora N.", "19:00")
    assert patched.json()["manager_id"] == str(tenant.user("ada"))  # untouched fields stay
    cleared = await api.client.patch(url, json={"manager_id": None}, headers=ada)
    assert cleared.json()["manager_id"] is None

    assert (await api.client.delete(url, headers=ada)).status_code == 204
    assert (await api.client.delete(url, headers=ada)).status_code == 204  # idempotent
    listed = await api.client.get("/v1/users", headers=ada)
    assert nora["id"] not in {u["id"] for u in listed.json()}
    assert len(listed.json()) == 5  # the demo people
    everyone = await api.client.get("/v1/users?include_deleted=true", headers=ada)
    assert nora["id"] in {u["id"] for u in everyone.json()}
    # A deleted user stays readable by id, but is not changed, assigned or re-used.
    gone = await api.client.get(url, headers=ada)
    assert (gone.status_code, gone.json()["deleted_at"] is not None) == (200, True)
    changed = await api.client.patch(url, json={"name": "x"}, headers=ada)
    assert "is deleted" in error(changed, 409)["message"]
    assert error(await api.task(tenant, assignee_id=nora["id"]), 400)["details"] == {
        "field": "assignee_id"
    }
    again = error(await api.client.post("/v1/users", json=NORA, headers=ada), 409)
    assert "nora@example.com is already used" in again["message"]
    assert "deleted" in again["message"]


async def test_bad_user_input_is_a_clear_4xx_and_writes_nothing(api: Api, tenant: Tenant) -> None:
    ada = api.headers(tenant, "ada")
    before = await count(tenant, User)
    for change, status, reason in (
        ({"email": tenant.email("erin").upper()}, 409, "is already used by user"),
        ({"timezone": "Mars/Olympus_Mons"}, 400, "unknown time zone 'Mars/Olympus_Mons'"),
        ({"quiet_start": "22:00"}, 400, "give both or neither"),
        ({"quiet_start": "07:00", "quiet_end": "07:00"}, 400, "must differ"),
    ):
        response = await api.client.post("/v1/users", json={**NORA, **change}, headers=ada)
        assert reason in error(response, status)["message"]
    bad_time = {**NORA, "quiet_start": "25:00", "quiet_end": "07:00"}
    assert error(await api.client.post("/v1/users", json=bad_time, headers=ada), 422)
    bad_role = {**NORA, "role": "boss"}
    assert error(await api.client.post("/v1/users", json=bad_role, headers=ada), 422)
    no_name = await api.client.patch(
        f"/v1/users/{tenant.user('erin')}", json={"name": None}, headers=ada
    )
    assert "name cannot be null" in error(no_name, 422)["message"]

    other = await Tenant.create(tenant.owner)
    foreign = {**NORA, "manager_id": str(other.user("ada"))}
    problem = error(await api.client.post("/v1/users", json=foreign, headers=ada), 400)
    assert (problem["message"], problem["details"]) == (
        f"unknown manager {other.user('ada')}",
        {"field": "manager_id"},
    )
    assert await count(tenant, User) == before

    erin = f"/v1/users/{tenant.user('erin')}"
    itself = await api.client.patch(
        erin, json={"manager_id": str(tenant.user("erin"))}, headers=ada
    )
    assert "own manager" in error(itself, 400)["message"]
    # Otto manages Ada: making Ada Otto's manager would be a loop.
    loop = await api.client.patch(
        f"/v1/users/{tenant.user('otto')}",
        json={"manager_id": str(tenant.user("ada"))},
        headers=api.headers(tenant, "otto"),
    )
    assert "reports to this user" in error(loop, 400)["message"]


async def test_nobody_acts_above_their_role_and_an_owner_remains(api: Api, tenant: Tenant) -> None:
    ada, otto = api.headers(tenant, "ada"), api.headers(tenant, "otto")
    owner = {**NORA, "role": "owner"}
    assert error(await api.client.post("/v1/users", json=owner, headers=ada), 403)
    otto_url = f"/v1/users/{tenant.user('otto')}"
    assert error(await api.client.patch(otto_url, json={"name": "x"}, headers=ada), 403)
    assert error(await api.client.delete(otto_url, headers=ada), 403)
    ada_url = f"/v1/users/{tenant.user('ada')}"
    assert error(await api.client.patch(ada_url, json={"role": "owner"}, headers=ada), 403)

    last_owner = await api.client.patch(otto_url, json={"role": "admin"}, headers=otto)
    assert "needs an active owner" in error(last_owner, 409)["message"]
    assert error(await api.client.patch(otto_url, json={"is_active": False}, headers=otto), 409)
    assert "yourself" in error(await api.client.delete(otto_url, headers=otto), 409)["message"]

    second = await api.client.post("/v1/users", json=owner, headers=otto)
    assert second.status_code == 201, second.text
    demoted = await api.client.patch(otto_url, json={"role": "admin"}, headers=otto)
    assert (demoted.status_code, demoted.json()["role"]) == (200, "admin")


async def test_named_roles_and_idempotent_membership(api: Api, tenant: Tenant) -> None:
    ada, erin = api.headers(tenant, "ada"), str(tenant.user("erin"))
    created = await api.client.post(
        "/v1/roles", json={"key": "safety_officer", "name": "Safety Officer"}, headers=ada
    )
    assert created.status_code == 201, created.text
    assert created.json()["member_ids"] == []
    member = "/v1/roles/safety_officer/members/" + erin
    for _ in range(2):
        added = await api.client.put(member, headers=ada)
        assert (added.status_code, added.json()["member_ids"]) == (200, [erin])
    roles = {r["key"]: r for r in (await api.client.get("/v1/roles", headers=ada)).json()}
    assert roles["safety_officer"]["member_ids"] == [erin]
    assert roles["quality_manager"]["member_ids"] == [str(tenant.user("ada"))]

    assert (await api.client.delete(member, headers=ada)).status_code == 204
    assert (await api.client.delete(member, headers=ada)).status_code == 204
    roles = {r["key"]: r for r in (await api.client.get("/v1/roles", headers=ada)).json()}
    assert roles["safety_officer"]["member_ids"] == []

    duplicate = await api.client.post(
        "/v1/roles", json={"key": "safety_officer", "name": "Again"}, headers=ada
    )
    assert "already exists" in error(duplicate, 409)["message"]
    bad_key = await api.client.post(
        "/v1/roles", json={"key": "Safety Officer", "name": "x"}, headers=ada
    )
    assert error(bad_key, 422)["message"].startswith("body.key")
    nobody = f"/v1/roles/safety_officer/members/{uuid.uuid4()}"
    assert error(await api.client.put(nobody, headers=ada), 404)
    assert error(await api.client.put(f"/v1/roles/nope/members/{erin}", headers=ada), 404)

    # CAPA escalates to role:quality_manager, so that role cannot go.
    in_use = error(await api.client.delete("/v1/roles/quality_manager", headers=ada), 409)
    assert "CAPA v1" in in_use["message"]
    assert (await api.client.delete("/v1/roles/safety_officer", headers=ada)).status_code == 204
    assert error(await api.client.delete("/v1/roles/safety_officer", headers=ada), 404)


async def test_calendars_are_validated_and_round_trip(api: Api, tenant: Tenant) -> None:
    ada = api.headers(tenant, "ada")
    before = await count(tenant, BusinessCalendarRow)
    cases = {
        "unknown time zone 'Europe/Atlantis'": calendar_body(tz="Europe/Atlantis"),
        "Monday intervals overlap at 11:00-13:00": calendar_body(
            hours={"0": [["09:00", "12:00"], ["11:00", "13:00"]]}
        ),
        "unknown holiday country 'XX'": calendar_body(holiday_country="XX"),
        "unknown subdivision 'ZZ' for PT": calendar_body(holiday_subdivision="ZZ"),
    }
    for reason, body in cases.items():
        problem = error(await api.client.post("/v1/calendars", json=body, headers=ada), 400)
        assert reason in problem["message"], (reason, problem)
    shapes = [  # what the schema itself rules out is a 422 naming the field
        ("body.custom_holidays.0", calendar_body(custom_holidays=["24.12.2026"])),
        ("body.custom_holidays.0", calendar_body(custom_holidays=["0001-01-01"])),
        ("body.hours.7", calendar_body(hours={"7": [["09:00", "17:00"]]})),
        ("body.hours.0.0.1", calendar_body(hours={"0": [["09:00", "25:00"]]})),
        ("body.hours", calendar_body(hours={})),
    ]
    for at, body in shapes:
        problem = error(await api.client.post("/v1/calendars", json=body, headers=ada), 422)
        assert problem["message"].startswith(at), (at, problem)
    assert await count(tenant, BusinessCalendarRow) == before

    created = await api.client.post("/v1/calendars", json=calendar_body(), headers=ada)
    assert created.status_code == 201, created.text
    url = f"/v1/calendars/{created.json()['id']}"
    fetched = (await api.client.get(url, headers=ada)).json()
    assert {k: fetched[k] for k in calendar_body()} == calendar_body()
    assert fetched == created.json()

    replaced = await api.client.put(url, json=calendar_body(tz="Atlantic/Azores"), headers=ada)
    assert (replaced.status_code, replaced.json()["tz"]) == (200, "Atlantic/Azores")
    assert (await api.client.get(url, headers=ada)).json()["tz"] == "Atlantic/Azores"
    broken = await api.client.put(url, json=calendar_body(tz="Nowhere"), headers=ada)
    assert error(broken, 400)
    assert (await api.client.get(url, headers=ada)).json()["tz"] == "Atlantic/Azores"

    taken = await api.client.post(
        "/v1/calendars", json=calendar_body(name="Berlin office"), headers=ada
    )
    assert "a calendar named 'Berlin office' already exists" in error(taken, 409)["message"]
    assert error(await api.client.get(f"/v1/calendars/{uuid.uuid4()}", headers=ada), 404)
    listed = await api.client.get("/v1/calendars", headers=ada)
    assert [c["name"] for c in listed.json()] == ["Always on", "Berlin office", "Lisbon office"]


async def test_a_new_policy_version_leaves_items_pinned_until_replanned(
    api: Api, tenant: Tenant
) -> None:
    ada = api.headers(tenant, "ada")
    item = (await api.task(tenant)).json()
    assert item["policy_version"] == 1
    calendar = str(stable_id(tenant.slug, "calendar:berlin"))
    rungs = capa_rungs()
    rungs["escalate_2"]["offset"] = {"business_days": 5}
    body = {"calendar_id": calendar, "rungs": rungs}

    added = await api.client.put("/v1/policies/CAPA", json=body, headers=ada)
    assert (added.status_code, added.json()["version"]) == (201, 2), added.text
    retried = await api.client.put("/v1/policies/CAPA", json=body, headers=ada)
    assert (retried.status_code, retried.json()["version"]) == (200, 2)  # nothing new
    latest = (await api.client.get("/v1/policies/CAPA", headers=ada)).json()
    assert (latest["version"], latest["rungs"]) == (2, rungs)
    versions = await api.client.get("/v1/policies/CAPA/versions", headers=ada)
    assert [v["version"] for v in versions.json()] == [2, 1]
    listed = await api.client.get("/v1/policies", headers=ada)
    assert {p["item_type"]: p["version"] for p in listed.json()} == {
        "CAPA": 2,
        "DEMO": 1,
        "DOC_ACK": 1,
        "handoff": 1,
    }

    url = f"/v1/items/{item['id']}"
    assert (await api.client.get(url, headers=ada)).json()["policy_version"] == 1
    replanned = await api.client.post(f"{url}/replan", headers=ada)
    assert (replanned.status_code, replanned.json()["policy_version"]) == (200, 2), replanned.text
    assert (await api.client.get(url, headers=ada)).json()["policy_version"] == 2

    fresh = {"item_type": "NCR", "calendar_id": calendar, "rungs": capa_rungs()}
    created = await api.client.post("/v1/policies", json=fresh, headers=ada)
    assert (created.status_code, created.json()["version"]) == (201, 1), created.text
    again = await api.client.post("/v1/policies", json=fresh, headers=ada)
    assert "already has a policy" in error(again, 409)["message"]
    assert error(await api.client.get("/v1/policies/NOPE", headers=ada), 404)
    assert error(await api.client.put("/v1/policies/NOPE", json=body, headers=ada), 404)


async def test_invalid_policies_are_rejected_with_the_reason(api: Api, tenant: Tenant) -> None:
    ada = api.headers(tenant, "ada")
    calendar = str(stable_id(tenant.slug, "calendar:berlin"))
    boss, twins, unknown_role = capa_rungs(), capa_rungs(), capa_rungs()
    boss["escalate_1"]["recipients"] = ["boss"]
    twins["escalate_1"]["event_key"] = "task.reminder"
    unknown_role["escalate_2"]["recipients"] = ["role:board"]
    far, huge, odd = capa_rungs(), capa_rungs(), capa_rungs()
    far["escalate_2"]["offset"] = {"business_days": 10_000}
    huge["remind"]["offset"] = {"business_hours": 1e300}
    odd["remind"]["channels"] = [["email"]]
    other = await Tenant.create(tenant.owner)
    shapes: list[tuple[dict[str, Any], str]] = [  # the schema's own bounds: 422
        ({"rungs": boss}, "body.rungs.escalate_1.recipients.0"),
        ({"rungs": far}, "body.rungs.escalate_2.offset"),
        ({"rungs": huge}, "body.rungs.remind.offset"),
        ({"rungs": odd}, "body.rungs.remind.channels.0"),
        ({"rungs": {"escalate_3": None}}, "body.rungs.escalate_3"),
        ({"rungs": {"remind": {"offset": {"weeks": 1}}}}, "body.rungs.remind"),
        ({"response_target": {"x": 1}}, "body.response_target"),
    ]
    for change, at in shapes:
        shape = {"calendar_id": calendar, "rungs": capa_rungs(), **change}
        response = await api.client.put("/v1/policies/handoff", json=shape, headers=ada)
        assert error(response, 422)["message"].startswith(at), (at, response.text)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"rungs": twins}, "each rung needs its own event_key"),
        ({"rungs": unknown_role}, "roles that do not exist: ['board']"),
        ({"response_target": {"business_minutes": 30}}, "only the handoff type"),
        ({"calendar_id": str(other.account_id)}, "unknown calendar"),
        (
            {"calendar_id": str(stable_id(other.slug, "calendar:berlin"))},
            "unknown calendar",
        ),
    ]
    for change, reason in cases:
        body: dict[str, Any] = {"calendar_id": calendar, "rungs": capa_rungs(), **change}
        for method, url, payload in (
            ("PUT", "/v1/policies/CAPA", body),
            ("POST", "/v1/policies", {**body, "item_type": "NCR"}),
        ):
            response = await api.client.request(method, url, json=payload, headers=ada)
            assert reason in error(response, 400)["message"], (method, reason, response.text)
    assert await count(tenant, SlaPolicy) == 4  # nothing was written


async def test_only_admins_and_owners_write(api: Api, tenant: Tenant) -> None:
    erin, calendar = str(tenant.user("erin")), str(stable_id(tenant.slug, "calendar:berlin"))
    policy = {"calendar_id": calendar, "rungs": capa_rungs()}
    writes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/v1/users", NORA),
        ("PATCH", f"/v1/users/{erin}", {"name": "x"}),
        ("DELETE", f"/v1/users/{erin}", None),
        ("POST", "/v1/roles", {"key": "x", "name": "x"}),
        ("DELETE", "/v1/roles/qms_owner", None),
        ("PUT", f"/v1/roles/qms_owner/members/{erin}", None),
        ("DELETE", f"/v1/roles/quality_manager/members/{tenant.user('ada')}", None),
        ("POST", "/v1/calendars", calendar_body()),
        ("PUT", f"/v1/calendars/{calendar}", calendar_body()),
        ("POST", "/v1/policies", {**policy, "item_type": "NCR"}),
        ("PUT", "/v1/policies/CAPA", {**policy, "rungs": {"remind": None}}),
    ]
    for who in ("erin", "vera"):
        for method, url, body in writes:
            response = await api.client.request(
                method, url, json=body, headers=api.headers(tenant, who)
            )
            assert error(response, 403)["message"] == "requires role admin or above", (who, url)
    assert await count(tenant, User) == 5
    assert await count(tenant, SlaPolicy) == 4

    vera = api.headers(tenant, "vera")
    for url in (
        "/v1/users",
        f"/v1/users/{erin}",
        "/v1/roles",
        "/v1/calendars",
        f"/v1/calendars/{calendar}",
        "/v1/policies",
        "/v1/policies/CAPA",
        "/v1/policies/CAPA/versions",
    ):
        assert (await api.client.get(url, headers=vera)).status_code == 200, url
    assert (await api.client.get("/v1/users")).status_code == 401


async def test_another_account_sees_nothing_of_this_one(api: Api, tenant: Tenant) -> None:
    other = await Tenant.create(tenant.owner)
    theirs = api.headers(other, "ada")
    nora = (
        await api.client.post("/v1/users", json=NORA, headers=api.headers(tenant, "ada"))
    ).json()
    calendar = stable_id(tenant.slug, "calendar:berlin")
    for method, url, body in (
        ("GET", f"/v1/users/{nora['id']}", None),
        ("PATCH", f"/v1/users/{nora['id']}", {"name": "x"}),
        ("DELETE", f"/v1/users/{nora['id']}", None),
        ("PUT", f"/v1/roles/quality_manager/members/{nora['id']}", None),
        ("GET", f"/v1/calendars/{calendar}", None),
        ("PUT", f"/v1/calendars/{calendar}", calendar_body()),
    ):
        response = await api.client.request(method, url, json=body, headers=theirs)
        assert error(response, 404)["code"] == "not_found", (method, url)

    users = (await api.client.get("/v1/users?include_deleted=true", headers=theirs)).json()
    assert {u["id"] for u in users} == {
        str(other.user(u)) for u in ("otto", "ada", "erin", "emil", "vera")
    }
    calendars = (await api.client.get("/v1/calendars", headers=theirs)).json()
    theirs_calendars = {
        str(stable_id(other.slug, f"calendar:{key}")) for key in ("berlin", "always")
    }
    assert {c["id"] for c in calendars} == theirs_calendars
    roles = (await api.client.get("/v1/roles", headers=theirs)).json()
    assert {m for r in roles for m in r["member_ids"]} == {
        str(other.user(u)) for u in ("ada", "otto")
    }
    policies = (await api.client.get("/v1/policies", headers=theirs)).json()
    assert {p["calendar_id"] for p in policies} == theirs_calendars
    untouched = await api.client.get(f"/v1/users/{nora['id']}", headers=api.headers(tenant, "ada"))
    assert (untouched.json()["name"], untouched.json()["deleted_at"]) == (NORA["name"], None)


async def test_a_policy_version_can_repeat_its_last_rung(api: Api, tenant: Tenant) -> None:
    """`repeat_every` is part of the policy document the API takes and stores."""
    ada = api.headers(tenant, "ada")
    current = (await api.client.get("/v1/policies/CAPA", headers=ada)).json()
    rungs = current["rungs"]
    rungs["escalate_2"]["repeat_every"] = {"business_hours": 4}
    saved = await api.client.put(
        "/v1/policies/CAPA",
        json={"calendar_id": current["calendar_id"], "rungs": rungs},
        headers=ada,
    )
    assert saved.status_code == 201, saved.text  # a new version
    assert saved.json()["rungs"]["escalate_2"]["repeat_every"] == {"business_hours": 4}
    rungs["escalate_2"]["repeat_every"] = {"business_hours": 0}
    refused = await api.client.put(
        "/v1/policies/CAPA",
        json={"calendar_id": current["calendar_id"], "rungs": rungs},
        headers=ada,
    )
    assert refused.status_code == 400, refused.text
    assert "repeat_every" in refused.json()["error"]["message"]

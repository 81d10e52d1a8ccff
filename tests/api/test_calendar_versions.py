"""Calendars are versioned like policies: an item pins the calendar version it plans on, an
edit moves nobody's plan behind their back, and a re-plan (one item, or every item of a
calendar or a type in one call) moves the API's plan and the workflow's timers together and
says how many rungs moved."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.testing import WorkflowEnvironment

from domain.clock import utcnow
from domain.demo import WEEKDAYS_9_TO_5, stable_id
from tests.api.conftest import Api
from tests.support.errors import error
from tests.support.tenants import Tenant
from workflows.escalation import EscalationWorkflow
from workflows.types import workflow_id

BERLIN = ZoneInfo("Europe/Berlin")
NOON_TO_EIGHT = {str(day): [["12:00", "20:00"]] for day in range(5)}


def berlin_body(**changes: Any) -> dict[str, Any]:
    """The seeded calendar as a test tenant has it (no holiday rules)."""
    return {
        "name": "Berlin office",
        "tz": "Europe/Berlin",
        "hours": WEEKDAYS_9_TO_5,
        "holiday_country": None,
        "holiday_subdivision": None,
        "custom_holidays": [],
        **changes,
    }


def wednesday_ten(weeks: int) -> str:
    """10:00 Berlin on a Wednesday `weeks` from now: inside 9-17, outside 12-20, so every
    rung of CAPA (whole business days around it) moves when the hours become 12-20."""
    today = utcnow().astimezone(BERLIN).date()
    wednesday = today + timedelta(days=(2 - today.weekday()) % 7 + 7 * weeks)
    return datetime(wednesday.year, wednesday.month, wednesday.day, 10, tzinfo=BERLIN).isoformat()


def instants(detail: dict[str, Any]) -> dict[str, str]:
    return {r["name"]: r["at_local"] for r in detail["plan"]}


async def workflow_plans(
    dev_env: WorkflowEnvironment, item_id: str, expected: dict[str, Any]
) -> None:
    """Poll the workflow's `get_state` until its rungs fire at the API's instants."""
    handle = dev_env.client.get_workflow_handle(workflow_id(item_id))
    want = {r["name"]: datetime.fromisoformat(r["at"]) for r in expected["plan"]}
    deadline = time.monotonic() + 20
    while True:
        state = await handle.query(EscalationWorkflow.get_state)
        seen = {r.name: r.fire_at for r in state.rungs}
        if seen == want:
            return
        assert time.monotonic() < deadline, (seen, want)
        await asyncio.sleep(0.1)


async def test_an_edit_adds_a_version_and_moves_no_running_item(
    api: Api, tenant: Tenant, dev_env: WorkflowEnvironment
) -> None:
    ada = api.headers(tenant, "ada")
    calendar = f"/v1/calendars/{stable_id(tenant.slug, 'calendar:berlin')}"
    before = (await api.task(tenant, due_at=wednesday_ten(2))).json()
    assert before["calendar_version"] == 1

    edited = await api.client.put(calendar, json=berlin_body(hours=NOON_TO_EIGHT), headers=ada)
    assert (edited.status_code, edited.json()["version"]) == (200, 2), edited.text
    same = await api.client.put(calendar, json=berlin_body(hours=NOON_TO_EIGHT), headers=ada)
    renamed = await api.client.put(
        calendar, json=berlin_body(name="Berlin HQ", hours=NOON_TO_EIGHT), headers=ada
    )
    assert (same.json()["version"], renamed.json()["version"]) == (2, 2)  # no working-time change
    versions = (await api.client.get(f"{calendar}/versions", headers=ada)).json()
    assert [(v["version"], v["hours"]["0"]) for v in versions] == [
        (2, [["12:00", "20:00"]]),
        (1, [["09:00", "17:00"]]),
    ]

    # The running item still plans on version 1, in the API and in its workflow.
    detail = (await api.client.get(f"/v1/items/{before['id']}", headers=ada)).json()
    assert (detail["calendar_version"], instants(detail)) == (1, instants(before))
    assert all(at.endswith("10:00 Europe/Berlin") for at in instants(detail).values())
    await workflow_plans(dev_env, before["id"], detail)
    # A new item pins version 2.
    after = (await api.task(tenant, due_at=wednesday_ten(2))).json()
    assert after["calendar_version"] == 2
    assert all(at.endswith("12:00 Europe/Berlin") for at in instants(after).values())


async def test_replan_by_calendar_moves_api_and_workflow_together_and_counts_rungs(
    api: Api, tenant: Tenant, dev_env: WorkflowEnvironment
) -> None:
    ada = api.headers(tenant, "ada")
    calendar_id = str(stable_id(tenant.slug, "calendar:berlin"))
    pinned = [(await api.task(tenant, due_at=wednesday_ten(2))).json() for _ in range(3)]
    resolved = (await api.task(tenant, due_at=wednesday_ten(2))).json()
    done = await api.client.post(f"/v1/items/{resolved['id']}/resolve", headers=ada)
    assert done.status_code == 200, done.text
    await api.client.put(
        f"/v1/calendars/{calendar_id}", json=berlin_body(hours=NOON_TO_EIGHT), headers=ada
    )

    footprint = await tenant.footprint()
    dry = await api.client.post(
        "/v1/replan", json={"calendar_id": calendar_id, "dry_run": True}, headers=ada
    )
    assert dry.status_code == 200, dry.text
    counts = {k: dry.json()[k] for k in ("dry_run", "matched", "replanned", "rungs_moved")}
    assert counts == {"dry_run": True, "matched": 3, "replanned": 3, "rungs_moved": 9}
    assert await tenant.footprint() == footprint  # a dry run writes nothing
    still = (await api.client.get(f"/v1/items/{pinned[0]['id']}", headers=ada)).json()
    assert still["calendar_version"] == 1

    done_now = await api.client.post("/v1/replan", json={"calendar_id": calendar_id}, headers=ada)
    report = done_now.json()
    assert (report["matched"], report["replanned"], report["rungs_moved"]) == (3, 3, 9)
    assert {i["id"] for i in report["items"]} == {p["id"] for p in pinned}
    first = report["items"][0]
    assert (first["calendar_version"], first["policy_version"]) == (
        {"from": 1, "to": 2},
        {"from": 1, "to": 1},
    )
    for item in pinned:
        detail = (await api.client.get(f"/v1/items/{item['id']}", headers=ada)).json()
        assert detail["calendar_version"] == 2
        assert all(at.endswith("12:00 Europe/Berlin") for at in instants(detail).values())
        await workflow_plans(dev_env, item["id"], detail)
        audit = (await api.client.get(f"/v1/items/{item['id']}/audit", headers=ada)).json()
        [entry] = [a for a in audit if a["action"] == "replanned"]
        assert entry["data"]["rungs_moved"] == 3
        assert entry["data"]["calendar_version"] == 2

    again = await api.client.post("/v1/replan", json={"calendar_id": calendar_id}, headers=ada)
    assert (again.json()["matched"], again.json()["replanned"]) == (3, 0)  # all on the latest
    untouched = (await api.client.get(f"/v1/items/{resolved['id']}", headers=ada)).json()
    assert untouched["calendar_version"] == 1  # only active items are moved in bulk


async def test_replan_by_type_moves_only_that_type(api: Api, tenant: Tenant) -> None:
    ada = api.headers(tenant, "ada")
    calendar_id = str(stable_id(tenant.slug, "calendar:berlin"))
    capa = (await api.task(tenant, due_at=wednesday_ten(3))).json()
    doc = (await api.task(tenant, type="DOC_ACK", due_at=wednesday_ten(3))).json()
    await api.client.put(
        f"/v1/calendars/{calendar_id}", json=berlin_body(hours=NOON_TO_EIGHT), headers=ada
    )
    report = (await api.client.post("/v1/replan", json={"type": "DOC_ACK"}, headers=ada)).json()
    assert (report["matched"], report["replanned"], report["rungs_moved"]) == (1, 1, 2)
    for item, version in ((capa, 1), (doc, 2)):
        detail = (await api.client.get(f"/v1/items/{item['id']}", headers=ada)).json()
        assert detail["calendar_version"] == version, item["type"]

    # The one-item re-plan moves the calendar version too.
    one = await api.client.post(f"/v1/items/{capa['id']}/replan", headers=ada)
    assert (one.status_code, one.json()["calendar_version"]) == (200, 2), one.text


async def test_bad_replan_requests_are_clear_4xx_and_write_nothing(
    api: Api, tenant: Tenant
) -> None:
    ada, erin = api.headers(tenant, "ada"), api.headers(tenant, "erin")
    other = await Tenant.create(tenant.owner)
    await api.task(tenant)
    footprint = await tenant.footprint()
    nothing = error(await api.client.post("/v1/replan", json={}, headers=ada), 422)
    assert "name a calendar_id, a type, or both" in str(nothing["details"])
    foreign = {"calendar_id": str(stable_id(other.slug, "calendar:berlin"))}
    assert error(await api.client.post("/v1/replan", json=foreign, headers=ada), 404)
    unknown = {"calendar_id": str(uuid.uuid4())}
    assert error(await api.client.post("/v1/replan", json=unknown, headers=ada), 404)
    assert error(await api.client.post("/v1/replan", json={"type": "NOPE"}, headers=ada), 404)
    extra = {"type": "CAPA", "everything": True}
    assert error(await api.client.post("/v1/replan", json=extra, headers=ada), 422)
    assert error(await api.client.post("/v1/replan", json={"type": "CAPA"}, headers=erin), 403)
    assert await tenant.footprint() == footprint

"""Calendars are versioned like policies: an item pins the calendar version it plans on, an
edit moves nobody's plan behind their back, and a re-plan (one item, or every item of a
calendar or a type as a job that runs in batches) moves the API's plan and the workflow's
timers together and says how many rungs moved. A claim never waits for a whole job, only
for its item's batch; the job's progress is pushed over the live stream."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.reconcile import ReconcileActivities
from activities.replan import ReplanActivities
from domain import replan
from domain.clock import utcnow
from domain.demo import WEEKDAYS_9_TO_5, stable_id
from domain.models import Item
from mailsink import free_port
from tests.api.conftest import Api
from tests.api.test_events import subscribe
from tests.api.test_reconcile import Later
from tests.support.errors import error
from tests.support.live import Sse, serve
from tests.support.tenants import Tenant
from workflows.escalation import EscalationWorkflow
from workflows.replan import ReplanWorkflow
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


async def job_when(
    api: Api, headers: dict[str, str], url: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll the job until `ready` says so."""
    deadline = time.monotonic() + 60
    while True:
        job: dict[str, Any] = (await api.client.get(url, headers=headers)).json()
        if ready(job):
            return job
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)


async def followed(api: Api, headers: dict[str, str], started: httpx.Response) -> dict[str, Any]:
    """The job a `POST /v1/replan` started, followed to its end."""
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["workflow"] == "started"
    assert started.headers["location"] == job["url"] == f"/v1/replan/{job['id']}"
    return await job_when(api, headers, job["url"], lambda j: j["state"] != "running")


async def edit_berlin(api: Api, tenant: Tenant) -> str:
    """Berlin's hours become 12-20 (its version 2); returns the calendar's id."""
    calendar_id = str(stable_id(tenant.slug, "calendar:berlin"))
    edited = await api.client.put(
        f"/v1/calendars/{calendar_id}",
        json=berlin_body(hours=NOON_TO_EIGHT),
        headers=api.headers(tenant, "ada"),
    )
    assert (edited.status_code, edited.json()["version"]) == (200, 2), edited.text
    return calendar_id


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
    assert {i["id"] for i in dry.json()["items"]} == {p["id"] for p in pinned}
    first = dry.json()["items"][0]
    assert (first["calendar_version"], first["policy_version"]) == (
        {"from": 1, "to": 2},
        {"from": 1, "to": 1},
    )
    assert await tenant.footprint() == footprint  # a dry run writes nothing
    still = (await api.client.get(f"/v1/items/{pinned[0]['id']}", headers=ada)).json()
    assert still["calendar_version"] == 1

    started = await api.client.post("/v1/replan", json={"calendar_id": calendar_id}, headers=ada)
    job = await followed(api, ada, started)
    assert (job["state"], job["matched"], job["replanned"], job["rungs_moved"]) == ("done", 3, 3, 9)
    assert (job["calendar_id"], job["type"], job["error"]) == (calendar_id, None, None)
    for item in pinned:
        detail = (await api.client.get(f"/v1/items/{item['id']}", headers=ada)).json()
        assert detail["calendar_version"] == 2
        assert all(at.endswith("12:00 Europe/Berlin") for at in instants(detail).values())
        await workflow_plans(dev_env, item["id"], detail)
        audit = (await api.client.get(f"/v1/items/{item['id']}/audit", headers=ada)).json()
        [entry] = [a for a in audit if a["action"] == "replanned"]
        assert entry["data"]["rungs_moved"] == 3
        assert (entry["data"]["calendar_version"], entry["data"]["policy_version"]) == (2, 1)
        assert entry["data"]["from"] == {"calendar_version": 1, "policy_version": 1}

    again = await api.client.post("/v1/replan", json={"calendar_id": calendar_id}, headers=ada)
    second = await followed(api, ada, again)
    assert (second["matched"], second["replanned"]) == (3, 0)  # all on the latest
    untouched = (await api.client.get(f"/v1/items/{resolved['id']}", headers=ada)).json()
    assert untouched["calendar_version"] == 1  # only active items are moved in bulk
    listed = (await api.client.get("/v1/replan", headers=ada)).json()
    assert [j["id"] for j in listed] == [second["id"], job["id"]]  # newest first


async def test_replan_by_type_moves_only_that_type(api: Api, tenant: Tenant) -> None:
    ada = api.headers(tenant, "ada")
    calendar_id = str(stable_id(tenant.slug, "calendar:berlin"))
    capa = (await api.task(tenant, due_at=wednesday_ten(3))).json()
    doc = (await api.task(tenant, type="DOC_ACK", due_at=wednesday_ten(3))).json()
    await api.client.put(
        f"/v1/calendars/{calendar_id}", json=berlin_body(hours=NOON_TO_EIGHT), headers=ada
    )
    started = await api.client.post("/v1/replan", json={"type": "DOC_ACK"}, headers=ada)
    report = await followed(api, ada, started)
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


async def test_a_claim_waits_for_its_items_batch_never_for_the_whole_job(
    api: Api, tenant: Tenant
) -> None:
    """250 items, batches of 100 (one transaction each). The test holds the lock of the
    first item of the third batch, so the job stops there, `running`, after two batches;
    a claim on an item of the first batch answers meanwhile. (When the re-plan was one
    transaction over every item, the claim, and the request itself, waited for all.)"""
    ada, erin = api.headers(tenant, "ada"), api.headers(tenant, "erin")
    ids = sorted(await tenant.add_items([datetime.fromisoformat(wednesday_ten(2))] * 250))
    calendar_id = await edit_berlin(api, tenant)
    async with tenant.owner() as blocker, blocker.begin():
        await blocker.execute(select(Item.id).where(Item.id == ids[200]).with_for_update())
        started = await api.client.post(
            "/v1/replan", json={"calendar_id": calendar_id}, headers=ada
        )
        assert started.status_code == 202, started.text
        url = started.json()["url"]
        await job_when(api, ada, url, lambda j: j["matched"] == 200)  # the third batch waits
        claimed = await api.client.post(f"/v1/items/{ids[50]}/claim", headers=erin)
        assert claimed.status_code == 200, claimed.text
        meanwhile = (await api.client.get(url, headers=ada)).json()
        assert (meanwhile["state"], meanwhile["matched"]) == ("running", 200)
    done = await job_when(api, ada, url, lambda j: j["state"] != "running")
    assert (done["state"], done["matched"], done["replanned"]) == ("done", 250, 250)
    item = (await api.client.get(f"/v1/items/{ids[50]}", headers=ada)).json()
    assert (item["state"], item["calendar_version"]) == ("claimed", 2)


async def test_progress_arrives_over_the_live_stream(
    api: Api, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replan, "BATCH", 2)
    await tenant.add_items([datetime.fromisoformat(wednesday_ten(2))] * 5)
    calendar_id = await edit_berlin(api, tenant)
    ada = api.headers(tenant, "ada")
    bearer = ada["Authorization"].removeprefix("Bearer ")
    listener = api.settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{free_port()}", "sse_heartbeat_seconds": 1.0}
    )
    seen: list[Sse] = []
    with serve(listener) as base:
        async with subscribe(base, bearer) as events:
            started = await api.client.post(
                "/v1/replan", json={"calendar_id": calendar_id}, headers=ada
            )
            assert started.status_code == 202, started.text
            while not seen or seen[-1].event != "replan.done":
                event = await asyncio.wait_for(anext(events), 30)
                if event.event.startswith("replan."):
                    seen.append(event)
    pushed = [(e.event, json.loads(e.data)) for e in seen]
    assert [(kind, data["matched"], data["state"]) for kind, data in pushed] == [
        ("replan.progress", 2, "running"),
        ("replan.progress", 4, "running"),
        ("replan.done", 5, "done"),
    ]
    assert {data["job_id"] for _, data in pushed} == {started.json()["id"]}
    assert pushed[-1][1]["rungs_moved"] == 15


async def test_a_job_whose_workflow_could_not_start_says_so(
    api_without_temporal: Api, tenant: Tenant
) -> None:
    api = api_without_temporal
    ada = api.headers(tenant, "ada")
    item = (await api.task(tenant, due_at=wednesday_ten(2))).json()
    await edit_berlin(api, tenant)
    started = await api.client.post("/v1/replan", json={"type": "CAPA"}, headers=ada)
    assert started.status_code == 202, started.text
    job = started.json()
    assert (job["workflow"], job["state"], job["matched"], job["replanned"]) == (
        "pending",
        "running",
        0,
        0,
    )
    seen = (await api.client.get(job["url"], headers=ada)).json()
    assert (seen["state"], seen["matched"], seen["finished_at"]) == ("running", 0, None)
    assert "workflow" not in seen  # only the answer to the POST knows
    detail = (await api.client.get(f"/v1/items/{item['id']}", headers=ada)).json()
    assert detail["calendar_version"] == 1  # nothing done


async def test_another_accounts_job_is_404_and_never_listed(api: Api, tenant: Tenant) -> None:
    other = await Tenant.create(tenant.owner)
    ada = api.headers(tenant, "ada")
    theirs = await api.client.post(
        "/v1/replan", json={"type": "CAPA"}, headers=api.headers(other, "ada")
    )
    mine = await api.client.post("/v1/replan", json={"type": "CAPA"}, headers=ada)
    assert (theirs.status_code, mine.status_code) == (202, 202)
    assert error(await api.client.get(theirs.json()["url"], headers=ada), 404)
    assert error(await api.client.get(f"/v1/replan/{uuid.uuid4()}", headers=ada), 404)
    listed = (await api.client.get("/v1/replan", headers=ada)).json()
    assert [j["id"] for j in listed] == [mine.json()["id"]]
    assert error(await api.client.get("/v1/replan", headers=api.headers(tenant, "erin")), 403)


async def test_a_job_made_while_temporal_was_down_is_started_by_the_reconciler(
    api: Api,
    api_without_temporal: Api,
    tenant: Tenant,
    dev_env: WorkflowEnvironment,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A re-plan job whose workflow never started (Temporal was down at the POST) does not
    stay `running` for ever: the reconciler starts it, and it runs to its end."""
    ada = api.headers(tenant, "ada")
    pinned = (await api_without_temporal.task(tenant, due_at=wednesday_ten(2))).json()
    calendar_id = await edit_berlin(api, tenant)
    posted = await api_without_temporal.client.post(
        "/v1/replan", json={"calendar_id": calendar_id}, headers=ada
    )
    assert posted.status_code == 202, posted.text
    assert (posted.json()["workflow"], posted.json()["state"]) == ("pending", "running")

    # A queue of its own, served for re-plans alone: the reconciler starts every workflow
    # the shared database is missing, other tests' items too, and those must not run here.
    queue = f"replan-{uuid.uuid4()}"
    replans = ReplanActivities(app_sessionmaker)
    async with Worker(
        dev_env.client,
        task_queue=queue,
        workflows=[ReplanWorkflow],
        activities=[replans.replan_batch, replans.fail_replan],
    ):
        reconcile = ReconcileActivities(dev_env.client, app_sessionmaker, queue, Later())
        await ActivityEnvironment().run(reconcile.start_missing_workflows)
        job = await job_when(api, ada, posted.json()["url"], lambda j: j["state"] != "running")
    assert (job["state"], job["matched"], job["replanned"]) == ("done", 1, 1)
    detail = (await api.client.get(f"/v1/items/{pinned['id']}", headers=ada)).json()
    assert detail["calendar_version"] == 2

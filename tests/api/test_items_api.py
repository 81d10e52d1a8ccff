"""The HTTP API end to end through the real app: creation, plan, lifecycle, errors."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

from sqlalchemy import func, select
from temporalio.api.sdk.v1 import WorkflowMetadata

from domain.clock import utcnow
from domain.models import Item
from tests.api.conftest import Api
from tests.support.tenants import Tenant
from workflows.escalation import EscalationWorkflow
from workflows.types import workflow_id


async def test_create_a_task_see_its_plan_and_claim_it(api: Api, tenant: Tenant) -> None:
    created = await api.task(tenant)
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["workflow"] == "started"
    assert [r["name"] for r in item["plan"]] == ["remind", "escalate_1", "escalate_2"]
    first = item["plan"][0]
    assert first["status"] == "pending"
    assert first["at_local"].endswith("Europe/Berlin")
    assert first["recipients"] is None  # the lean create path resolves nobody
    shown = (
        await api.client.get(f"/v1/items/{item['id']}", headers=api.headers(tenant, "ada"))
    ).json()
    assert [p["email"] for p in shown["plan"][0]["recipients"]] == [tenant.email("erin")]
    for _ in range(100):  # the workflow's first step stamps it
        if (await tenant.item(uuid.UUID(item["id"]))).workflow_started_at is not None:
            break
        await asyncio.sleep(0.05)
    assert (await tenant.item(uuid.UUID(item["id"]))).workflow_started_at is not None

    claim = await api.client.post(
        f"/v1/items/{item['id']}/claim", headers=api.headers(tenant, "emil")
    )
    assert claim.status_code == 200, claim.text
    assert claim.json()["state"] == "claimed"
    handle = api.app.state.temporal.client.get_workflow_handle(workflow_id(item["id"]))
    for _ in range(100):
        if (await handle.query(EscalationWorkflow.get_state)).state == "claimed":
            break
        await asyncio.sleep(0.05)
    assert (await handle.query(EscalationWorkflow.get_state)).claimed_by == str(tenant.user("emil"))

    audit = await api.client.get(
        f"/v1/items/{item['id']}/audit", headers=api.headers(tenant, "vera")
    )
    assert [a["action"] for a in audit.json()] == ["created", "claimed"]

    # What the Temporal UI shows: the summary it lists the workflow by, and its details.
    assert await (await handle.describe()).static_summary() == "CAPA: Pump P-101 leaks"
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "state: **claimed**" in metadata.current_details


async def test_fifty_concurrent_claims_have_exactly_one_winner(api: Api, tenant: Tenant) -> None:
    item = (await api.task(tenant)).json()
    engineers = await tenant.add_engineers(50)
    responses = await asyncio.gather(
        *(
            api.client.post(f"/v1/items/{item['id']}/claim", headers=api.headers(tenant, who))
            for who in engineers
        )
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 49
    [won] = [r.json() for r in responses if r.status_code == 200]
    for lost in (r.json()["error"] for r in responses if r.status_code == 409):
        assert (lost["code"], lost["details"]["claimed_by"]) == (
            "already_claimed",
            {"id": won["claimed_by"], "name": won["claimer_name"]},
        )
        assert lost["message"] == f"item already claimed by {won['claimer_name']}"
        assert lost["details"]["claimed_at"]
    again = await api.client.post(
        f"/v1/items/{item['id']}/claim", headers=api.headers(tenant, uuid.UUID(won["claimed_by"]))
    )
    assert (again.status_code, again.json()["claimed_at"]) == (200, won["claimed_at"])
    assert await tenant.deliveries(uuid.UUID(item["id"])) == []  # nothing was sent, before or after


async def test_an_idempotent_create_under_concurrent_retries_makes_one_item(
    api: Api, tenant: Tenant
) -> None:
    headers = {**api.headers(tenant, "ada"), "Idempotency-Key": "order-77"}
    body = {
        "type": "CAPA",
        "title": "Once",
        "assignee_id": str(tenant.user("erin")),
        "due_at": (utcnow() + timedelta(days=3)).isoformat(),
    }
    responses = await asyncio.gather(
        *(api.client.post("/v1/tasks", json=body, headers=headers) for _ in range(10))
    )
    assert [r.status_code for r in responses] == [201] * 10
    assert (
        sorted(r.headers.get("Idempotent-Replayed", "-") for r in responses) == ["-"] + ["true"] * 9
    )
    assert len({r.json()["id"] for r in responses}) == 1
    async with tenant.owner() as session:
        count = await session.scalar(
            select(func.count()).select_from(Item).where(Item.account_id == tenant.account_id)
        )
    assert count == 1
    handle = api.app.state.temporal.client.get_workflow_handle(
        workflow_id(responses[0].json()["id"])
    )
    assert (await handle.describe()).run_id


async def test_bad_input_gets_a_clear_4xx_and_writes_nothing(api: Api, tenant: Tenant) -> None:
    other_tenant = await Tenant.create(tenant.owner)
    naive = await api.task(tenant, due_at="2026-12-01T10:00:00")
    assert naive.status_code == 422
    assert "timezone" in naive.json()["error"]["message"]
    unknown_type = await api.task(tenant, type="NOPE")
    assert (unknown_type.status_code, unknown_type.json()["error"]["code"]) == (400, "invalid")
    handoff_type = await api.task(tenant, type="handoff")
    assert "is a handoff type" in handoff_type.json()["error"]["message"]
    await tenant.update_user("vera", is_active=False)
    for assignee in (
        "00000000-0000-0000-0000-000000000000",
        str(other_tenant.user("erin")),  # a user of another account
        str(tenant.user("vera")),  # deactivated
    ):
        unknown_user = await api.task(tenant, assignee_id=assignee)
        assert unknown_user.status_code == 400, assignee
        assert unknown_user.json()["error"]["details"]["field"] == "assignee_id"
    async with tenant.owner() as session:
        count = await session.scalar(
            select(func.count()).select_from(Item).where(Item.account_id == tenant.account_id)
        )
    assert count == 0

    item = (await api.task(tenant)).json()
    resume = await api.client.post(
        f"/v1/items/{item['id']}/resume", headers=api.headers(tenant, "ada")
    )
    assert resume.status_code == 409
    assert "cannot resume an item that is open" in resume.json()["error"]["message"]


async def test_tokens_are_required_and_checked(api: Api, tenant: Tenant) -> None:
    assert (await api.client.get("/health/ready")).status_code == 200
    assert (await api.client.get("/v1/queue")).status_code == 401
    expired = api.headers(tenant, "ada", ttl=timedelta(seconds=-10))
    assert (await api.client.get("/v1/queue", headers=expired)).status_code == 401
    good = api.headers(tenant, "ada")["Authorization"]
    tampered = {"Authorization": good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]}
    response = await api.client.get("/v1/queue", headers=tampered)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


async def test_handoffs_escalate_park_and_history(api: Api, tenant: Tenant) -> None:
    url = "/v1/sessions/sess-9/handoffs"
    parked = await api.client.post(
        url, json={"intent": "park"}, headers=api.headers(tenant, "erin")
    )
    escalated = await api.client.post(
        url,
        json={"intent": "escalate", "engineer_notes": "VPN down", "priority": "high"},
        headers=api.headers(tenant, "erin"),
    )
    assert (parked.status_code, escalated.status_code) == (201, 201)
    assert parked.json()["state"] == "paused"
    history = await api.client.get(url, headers=api.headers(tenant, "vera"))
    assert [h["intent"] for h in history.json()] == ["escalate", "park"]
    queue = await api.client.get("/v1/queue", headers=api.headers(tenant, "vera"))
    assert {q["id"] for q in queue.json()} == {parked.json()["id"], escalated.json()["id"]}
    big = {"intent": "park", "snapshot": {"blob": "x" * 70_000}}
    too_big = await api.client.post(url, json=big, headers=api.headers(tenant, "erin"))
    assert too_big.status_code == 422
    assert too_big.json()["error"]["message"].startswith("body.snapshot")


async def test_preview_shows_who_would_be_notified_when_without_creating(
    api: Api, tenant: Tenant
) -> None:
    body = {
        "type": "DOC_ACK",
        "due_at": (utcnow() + timedelta(days=10)).isoformat(),
        "assignee_id": str(tenant.user("erin")),
    }
    preview = await api.client.post("/v1/preview", json=body, headers=api.headers(tenant, "vera"))
    assert preview.status_code == 200, preview.text
    plan = preview.json()["plan"]
    assert [(r["name"], [p["email"] for p in r["recipients"]]) for r in plan] == [
        ("remind", [tenant.email("erin")]),
        ("escalate_1", [tenant.email("ada")]),
    ]
    listed = await api.client.get("/v1/items", headers=api.headers(tenant, "vera"))
    assert listed.json()["items"] == []


async def test_list_filters_and_pages_with_a_cursor(api: Api, tenant: Tenant) -> None:
    created = [(await api.task(tenant, title=f"task {n}")).json()["id"] for n in range(5)]
    await api.task(tenant, type="DOC_ACK", title="other type")
    headers = api.headers(tenant, "vera")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"type": "CAPA", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.client.get("/v1/items", params=params, headers=headers)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))  # newest first, each once, filtered by type
    bad = await api.client.get("/v1/items", params={"cursor": "nonsense"}, headers=headers)
    assert (bad.status_code, bad.json()["error"]["details"]["field"]) == (400, "cursor")


async def test_patching_the_due_date_re_plans_the_item(api: Api, tenant: Tenant) -> None:
    item = (await api.task(tenant)).json()
    later = (utcnow() + timedelta(days=30)).isoformat()
    patched = await api.client.patch(
        f"/v1/items/{item['id']}", json={"due_at": later}, headers=api.headers(tenant, "ada")
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["plan"][0]["at"] > item["plan"][0]["at"]
    audit = await api.client.get(
        f"/v1/items/{item['id']}/audit", headers=api.headers(tenant, "ada")
    )
    assert [a["action"] for a in audit.json()] == ["created", "due_changed"]
    handle = api.app.state.temporal.client.get_workflow_handle(workflow_id(item["id"]))
    for _ in range(100):
        state = await handle.query(EscalationWorkflow.get_state)
        if state.due_at and state.due_at.isoformat() == patched.json()["due_at"].replace(
            "Z", "+00:00"
        ):
            break
        await asyncio.sleep(0.05)
    assert state.due_at is not None
    assert state.due_at.isoformat() == patched.json()["due_at"].replace("Z", "+00:00")


async def test_a_value_postgres_cannot_store_is_a_400_not_a_500(api: Api, tenant: Tenant) -> None:
    # Found by schemathesis: a NUL character in the JSON snapshot.
    response = await api.client.post(
        "/v1/sessions/s-1/handoffs",
        json={"intent": "park", "snapshot": {"note": "a\u0000b"}},
        headers=api.headers(tenant, "erin"),
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_value"
    history = await api.client.get("/v1/sessions/s-1/handoffs", headers=api.headers(tenant, "erin"))
    assert history.json() == []


async def test_a_token_follows_its_user_as_the_database_knows_them(
    api: Api, tenant: Tenant
) -> None:
    headers = api.headers(tenant, "ada")  # minted while Ada is an admin
    assert (await api.task(tenant, who="ada")).status_code == 201
    before = await tenant.footprint()
    await tenant.update_user("ada", role="viewer")
    body = (await api.task(tenant, who="ada")).request.content  # a task a viewer may not make
    demoted = await api.client.post("/v1/tasks", json=json.loads(body), headers=headers)
    # The role change applies to the old token at once, and the refused create wrote nothing.
    assert demoted.status_code == 403, demoted.text
    assert await tenant.footprint() == before
    await tenant.update_user("ada", is_active=False)
    gone = await api.client.get("/v1/queue", headers=headers)
    assert (gone.status_code, gone.json()["error"]["code"]) == (401, "unauthenticated")

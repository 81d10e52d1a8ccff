"""The webhook endpoints API through the real app: admins and owners only, secrets shown
only on create and rotation, tenant walls, soft delete, re-enabling, and webhook
deliveries in an item's deliveries list. Temporal plays no part here, so it is away."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from domain.clock import utcnow
from domain.demo import POLICIES, stable_id
from domain.models import AuditEvent, Delivery, WebhookEndpoint
from tests.api.conftest import Api
from tests.support.errors import error
from tests.support.tenants import Tenant

HOOK = {"name": "Ops on-call", "url": "https://hooks.example.com/escalator"}


@pytest.fixture
def api(api_without_temporal: Api) -> Api:
    return api_without_temporal


async def create(api: Api, tenant: Tenant, who: str = "ada", **body: Any) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/webhooks", json={**HOOK, **body}, headers=api.headers(tenant, who)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def endpoint_count(tenant: Tenant) -> int:
    async with tenant.owner() as session:
        total = await session.scalar(
            select(func.count())
            .select_from(WebhookEndpoint)
            .where(WebhookEndpoint.account_id == tenant.account_id)
        )
    return int(total or 0)


async def account_audit(tenant: Tenant) -> list[tuple[str, dict[str, Any]]]:
    async with tenant.owner() as session:
        rows = await session.execute(
            select(AuditEvent.action, AuditEvent.data)
            .where(AuditEvent.account_id == tenant.account_id, AuditEvent.item_id.is_(None))
            .order_by(AuditEvent.id)
        )
        return [(action, data) for action, data in rows]


async def test_an_endpoint_is_created_changed_rotated_and_soft_deleted(
    api: Api, tenant: Tenant
) -> None:
    ada = api.headers(tenant, "ada")
    hook = await create(api, tenant, event_filter=["task.*"])
    url = f"/v1/webhooks/{hook['id']}"
    assert hook["secret"].startswith("whsec_")
    assert (hook["enabled"], hook["event_filter"], hook["format"]) == (True, ["task.*"], "standard")
    assert (hook["consecutive_failures"], hook["last_delivery"]) == (0, None)

    listed = (await api.client.get("/v1/webhooks", headers=ada)).json()
    shown = (await api.client.get(url, headers=ada)).json()
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in shown
    assert shown["name"] == "Ops on-call"

    patch = {"name": "Slack ops", "format": "slack", "event_filter": [], "url": "http://h.test/x"}
    changed = await api.client.patch(url, json=patch, headers=ada)
    assert changed.status_code == 200, changed.text
    assert {k: changed.json()[k] for k in patch} == patch
    assert "secret" not in changed.json()

    rotated = await api.client.post(f"{url}/rotate-secret", headers=ada)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != hook["secret"]
    async with tenant.owner() as session:
        row = await session.get(WebhookEndpoint, uuid.UUID(hook["id"]))
        assert row is not None
        assert (row.secret, row.previous_secret) == (rotated.json()["secret"], hook["secret"])
        assert row.previous_secret_until is not None
        grace = row.previous_secret_until - utcnow()
        assert timedelta(hours=23, minutes=59) < grace <= timedelta(hours=24)
    assert rotated.json()["previous_secret_valid_until"] is not None

    deleted = await api.client.delete(url, headers=ada)
    assert deleted.status_code == 204, deleted.text
    assert error(await api.client.get(url, headers=ada), 404)
    assert error(await api.client.patch(url, json={"enabled": True}, headers=ada), 404)
    assert error(await api.client.post(f"{url}/rotate-secret", headers=ada), 404)
    assert error(await api.client.get(f"{url}/deliveries", headers=ada), 404)
    assert error(await api.client.delete(url, headers=ada), 404)
    assert (await api.client.get("/v1/webhooks", headers=ada)).json() == []
    assert await endpoint_count(tenant) == 1  # soft: the row stays for its deliveries
    trail = await account_audit(tenant)
    assert [action for action, _ in trail] == [
        "webhook_created",
        "webhook_updated",
        "webhook_secret_rotated",
        "webhook_deleted",
    ]
    assert trail[0][1]["url"] == "https://hooks.example.com"  # no path: it may be a credential
    assert {data["endpoint_id"] for _, data in trail} == {hook["id"]}
    assert not any(hook["secret"] in str(data) for _, data in trail)


async def test_only_admins_and_owners_may_see_or_change_endpoints(api: Api, tenant: Tenant) -> None:
    hook = await create(api, tenant, who="otto")
    url = f"/v1/webhooks/{hook['id']}"
    for who in ("vera", "emil"):
        headers = api.headers(tenant, who)
        for method, path, body in (
            ("GET", "/v1/webhooks", None),
            ("POST", "/v1/webhooks", HOOK),
            ("GET", url, None),
            ("PATCH", url, {"enabled": False}),
            ("POST", f"{url}/rotate-secret", None),
            ("DELETE", url, None),
            ("GET", f"{url}/deliveries", None),
        ):
            response = await api.client.request(method, path, json=body, headers=headers)
            assert error(response, 403), (who, method, path)
    assert await endpoint_count(tenant) == 1


async def test_another_accounts_endpoint_is_404_and_never_listed(api: Api, tenant: Tenant) -> None:
    other = await Tenant.create(tenant.owner)
    foreign = await create(api, other)
    url = f"/v1/webhooks/{foreign['id']}"
    ada = api.headers(tenant, "ada")
    for method, path, body in (
        ("GET", url, None),
        ("PATCH", url, {"name": "mine now"}),
        ("POST", f"{url}/rotate-secret", None),
        ("DELETE", url, None),
        ("GET", f"{url}/deliveries", None),
    ):
        response = await api.client.request(method, path, json=body, headers=ada)
        assert error(response, 404)["code"] == "not_found", (method, path)
    assert (await api.client.get("/v1/webhooks", headers=ada)).json() == []
    theirs = await api.client.get(url, headers=api.headers(other, "ada"))
    assert theirs.json()["name"] == "Ops on-call"  # untouched


async def test_bad_input_is_refused_with_the_reason_and_writes_nothing(
    api: Api, tenant: Tenant
) -> None:
    ada = api.headers(tenant, "ada")
    refused: list[tuple[dict[str, Any], int, str]] = [
        # The schema's pattern: a scheme and a host (422, as any payload shape).
        ({"url": "ftp://files.example.com/x"}, 422, "http:// or https://"),
        ({"url": "mailto:ops@example.com"}, 422, "http:// or https://"),
        ({"url": "https://"}, 422, "names a host"),
        ({"url": "https:///path-only"}, 422, "names a host"),
        ({"url": "https://hooks.example.com:99999/x"}, 400, "not a valid URL"),
        ({"url": "https://hooks.example.com/a b"}, 400, "spaces"),
        ({"url": "hooks.example.com/x"}, 422, "http:// or https://"),
        ({"url": "https://h.example.com/" + "x" * 2000}, 422, "body.url"),
        ({"url": ""}, 422, "body.url"),
        ({"event_filter": ["Task.*"]}, 422, "body.event_filter.0"),
        ({"format": "teams"}, 422, "body.format"),
        ({"secret": "whsec_mine"}, 422, "body.secret"),
    ]
    for change, status, reason in refused:
        response = await api.client.post("/v1/webhooks", json={**HOOK, **change}, headers=ada)
        assert reason in error(response, status)["message"], (change, response.text)
    assert await endpoint_count(tenant) == 0

    hook = await create(api, tenant)
    url = f"/v1/webhooks/{hook['id']}"
    for body, status, reason in (
        ({"url": "gopher://x"}, 422, "http:// or https://"),
        ({"url": None}, 422, "cannot be null"),
        ({"enabled": None}, 422, "cannot be null"),
        ({"enabled": 0}, 422, "body.enabled"),
    ):
        response = await api.client.patch(url, json=body, headers=ada)
        assert reason in error(response, status)["message"], (body, response.text)
    assert (await api.client.get(url, headers=ada)).json()["url"] == HOOK["url"]
    assert error(await api.client.get("/v1/webhooks/not-a-uuid", headers=ada), 422)


async def test_re_enabling_a_disabled_endpoint_resets_its_failures(
    api: Api, tenant: Tenant
) -> None:
    ada = api.headers(tenant, "ada")
    hook = await create(api, tenant)
    url = f"/v1/webhooks/{hook['id']}"
    async with tenant.owner() as session, session.begin():  # as the sender leaves it
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(hook["id"]))
            .values(
                enabled=False,
                consecutive_failures=10,
                disabled_at=utcnow(),
                disabled_reason="10 consecutive failures",
            )
        )
    shown = (await api.client.get(url, headers=ada)).json()
    assert (shown["enabled"], shown["consecutive_failures"], shown["disabled_reason"]) == (
        False,
        10,
        "10 consecutive failures",
    )

    enabled = (await api.client.patch(url, json={"enabled": True}, headers=ada)).json()
    assert (enabled["enabled"], enabled["consecutive_failures"]) == (True, 0)
    assert (enabled["disabled_at"], enabled["disabled_reason"]) == (None, None)

    disabled = (await api.client.patch(url, json={"enabled": False}, headers=ada)).json()
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "disabled by an admin")
    assert disabled["disabled_at"] is not None


async def test_a_policy_may_notify_the_webhook_channel(api: Api, tenant: Tenant) -> None:
    ada = api.headers(tenant, "ada")
    rungs = copy.deepcopy(POLICIES["CAPA"]["rungs"])
    rungs["escalate_1"]["channels"] = ["email", "push", "webhook"]
    body = {"calendar_id": str(stable_id(tenant.slug, "calendar:berlin")), "rungs": rungs}

    added = await api.client.put("/v1/policies/CAPA", json=body, headers=ada)
    assert added.status_code == 201, added.text
    assert added.json()["rungs"]["escalate_1"]["channels"] == ["email", "push", "webhook"]

    rungs["escalate_1"]["channels"] = ["sms"]
    refused = await api.client.put("/v1/policies/CAPA", json=body, headers=ada)
    assert error(refused, 422)["message"].startswith("body.rungs.escalate_1.channels.0")


async def test_an_items_deliveries_include_its_webhooks(api: Api, tenant: Tenant) -> None:
    ada = api.headers(tenant, "ada")
    item_id = uuid.UUID((await api.task(tenant)).json()["id"])
    hook = await create(api, tenant)
    async with tenant.owner() as session, session.begin():
        session.add_all(
            [
                Delivery(
                    account_id=tenant.account_id,
                    item_id=item_id,
                    recipient_id=tenant.user("erin"),
                    event_key="task.reminder",
                    channel="email",
                    status="sent",
                ),
                Delivery(
                    account_id=tenant.account_id,
                    item_id=item_id,
                    endpoint_id=uuid.UUID(hook["id"]),
                    event_key="task.reminder",
                    channel="webhook",
                    status="sent",
                    attempts=2,
                    response_code=204,
                ),
            ]
        )

    rows = (await api.client.get(f"/v1/items/{item_id}/deliveries", headers=ada)).json()
    by_channel = {row["channel"]: row for row in rows}
    assert by_channel["email"]["recipient"]["name"] == "Erin Engineer"
    assert by_channel["email"]["endpoint"] is None
    webhook = by_channel["webhook"]
    assert (webhook["recipient_id"], webhook["recipient"]) == (None, None)
    assert webhook["endpoint"] == {"id": hook["id"], "name": "Ops on-call", "deleted": False}
    assert (webhook["status"], webhook["attempts"], webhook["response_code"]) == ("sent", 2, 204)

    url = f"/v1/webhooks/{hook['id']}"
    assert (await api.client.get(url, headers=ada)).json()["last_delivery"]["response_code"] == 204
    [listed] = (await api.client.get(f"{url}/deliveries", headers=ada)).json()
    assert (listed["id"], listed["item_id"]) == (webhook["id"], str(item_id))

    await api.client.delete(url, headers=ada)  # the record keeps naming the endpoint
    rows = (await api.client.get(f"/v1/items/{item_id}/deliveries", headers=ada)).json()
    [webhook] = [row for row in rows if row["channel"] == "webhook"]
    assert webhook["endpoint"]["deleted"] is True

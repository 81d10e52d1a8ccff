"""Server-side request forgery: where private destinations are not allowed (`prod`'s
default), an admin cannot point a webhook into escalator's own network, neither when saving
it (a 400 naming the address, nothing written) nor by DNS changing afterwards (the worker
checks again before each POST and sends nothing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.webhook import WebhookActivities
from config import Settings
from domain.clock import utcnow
from tests.api.conftest import Api
from tests.api.test_webhooks_api import endpoint_count
from tests.support.errors import error
from tests.support.tenants import Tenant
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.webhooks import add_endpoint, send


@pytest.fixture
def guarded(api_without_temporal: Api) -> Iterator[Api]:
    api = api_without_temporal
    api.app.state.settings = api.settings.model_copy(update={"webhook_allow_private": False})
    yield api
    api.app.state.settings = api.settings


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://localhost:7233/", "http://[::1]/"]
)
async def test_a_private_destination_is_refused_when_saved(
    guarded: Api, tenant: Tenant, url: str
) -> None:
    headers = guarded.headers(tenant, "ada")
    made = await guarded.client.post(
        "/v1/webhooks", json={"name": "x", "url": url}, headers=headers
    )
    refused = error(made, 400)
    assert refused["code"] == "private_destination"
    assert "private or local address" in refused["message"]
    assert refused["details"] == {"field": "url"}
    assert await endpoint_count(tenant) == 0

    public = await guarded.client.post(
        "/v1/webhooks", json={"name": "ok", "url": "https://8.8.8.8/hook"}, headers=headers
    )
    assert public.status_code == 201, public.text
    moved = await guarded.client.patch(
        f"/v1/webhooks/{public.json()['id']}", json={"url": url}, headers=headers
    )
    assert error(moved, 400)["code"] == "private_destination"
    shown = await guarded.client.get(f"/v1/webhooks/{public.json()['id']}", headers=headers)
    assert shown.json()["url"] == "https://8.8.8.8/hook"


def test_private_destinations_are_refused_by_default_only_in_prod(settings: Settings) -> None:
    assert settings.webhooks_reach_private  # test: receivers on 127.0.0.1
    prod = Settings(environment="prod", jwt_secret="a-real-secret-for-this-test-only")
    assert not prod.webhooks_reach_private
    allowed = prod.model_copy(update={"webhook_allow_private": True})
    assert allowed.webhooks_reach_private


async def test_the_worker_sends_nothing_to_a_host_that_became_private(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The endpoint was saved when its host was public; now it answers on 127.0.0.1."""
    with WebhookReceiver() as receiver:
        item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
        endpoint_id, _ = await add_endpoint(tenant, receiver.url)
        hooks = WebhookActivities(
            app_sessionmaker, base_url="http://escalator.test", allow_private=False
        )
        outcome = await ActivityEnvironment().run(
            hooks.send_webhook, send(tenant, item_id, endpoint_id)
        )
        assert outcome.status == "failed"
        assert "private or local address" in (outcome.error or "")
        assert receiver.requests == []
    [row] = await tenant.deliveries(item_id)
    assert (row.status, row.endpoint_id) == ("failed", uuid.UUID(endpoint_id))

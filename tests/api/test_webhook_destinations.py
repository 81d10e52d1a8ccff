"""Server-side request forgery: where private destinations are not allowed (`prod`'s
default), an admin cannot point a webhook into escalator's own network, neither when saving
it (a 400 naming the address, nothing written) nor by DNS changing afterwards (the worker
checks again before each POST and sends nothing)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.webhook import WebhookActivities
from config import Settings
from domain import destinations
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


def test_private_destinations_are_refused_by_default_in_every_environment(
    settings: Settings,
) -> None:
    assert settings.webhooks_reach_private  # the suite allows it: receivers on 127.0.0.1
    for environment in ("dev", "test", "prod"):
        default = Settings(environment=environment, jwt_secret="9f" * 32)
        assert not default.webhooks_reach_private, environment
    allowed = Settings(webhook_allow_private=True)
    assert allowed.webhooks_reach_private


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "100.64.0.1",  # shared (carrier-grade NAT)
        "169.254.169.254",
        "224.0.0.1",
        "0.0.0.0",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # mapped
        "::127.0.0.1",  # compatible
        "64:ff9b::7f00:1",  # NAT64
        "64:ff9b:1::a00:1",  # NAT64, local use
        "2002:7f00:1::",  # 6to4
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    ],
)
def test_every_form_of_a_private_address_is_refused(address: str) -> None:
    assert not destinations.is_public(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::1111", "64:ff9b::5db8:d822"])
def test_public_addresses_pass(address: str) -> None:
    assert destinations.is_public(address)


async def test_a_name_that_rebinds_between_lookups_is_never_posted_to_its_second_answer(
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The system resolver answers a public address for `rebind.example` first and
    127.0.0.1 on every later lookup (DNS rebinding). The worker resolves once, checks, and
    connects to exactly what it checked: the public address (unreachable from here), never
    the receiver on 127.0.0.1 that a second lookup would have named."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host  # anyio passes bytes
        if name != "rebind.example":
            return real(host, port, *args, **kwargs)
        lookups.append(name)
        address = "93.184.216.34" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with WebhookReceiver() as receiver:
        item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=1))
        url = receiver.url.replace("127.0.0.1", "rebind.example")
        endpoint_id, _ = await add_endpoint(tenant, url)
        hooks = WebhookActivities(
            app_sessionmaker,
            base_url="http://escalator.test",
            allow_private=False,
            timeout_seconds=1.0,
        )
        with pytest.raises(ApplicationError):  # the public address does not answer here
            await ActivityEnvironment().run(hooks.send_webhook, send(tenant, item_id, endpoint_id))
        assert receiver.requests == []
    assert lookups == ["rebind.example"]  # resolved once: nothing left to rebind
    [row] = await tenant.deliveries(item_id)
    assert row.status == "pending"  # a retry will check (and resolve) again
    assert row.last_error in ("connection failed", "no answer within 1 s")

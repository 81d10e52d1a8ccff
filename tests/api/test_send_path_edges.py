"""The API's side of the send path's edges: an address the mail server cannot take is refused
when a user is created or changed (and a legacy one never makes a 500), and a request that
meets a lock held too long answers in the error shape instead of hanging."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from domain.models import Item
from mailsink import MailSink
from tests.api.conftest import Api, running_app
from tests.api.test_admin_api import NORA
from tests.support.errors import error
from tests.support.tenants import Tenant


async def test_a_non_ascii_local_part_is_refused_and_an_idna_domain_taken(
    api: Api, tenant: Tenant
) -> None:
    ada = api.headers(tenant, "ada")
    refused = await api.client.post(
        "/v1/users", json={**NORA, "email": "jürgen@example.com"}, headers=ada
    )
    body = error(refused, 400)
    assert (body["code"], body["details"]) == ("undeliverable_address", {"field": "email"})
    assert "SMTPUTF8" in body["message"]
    patched = await api.client.patch(
        f"/v1/users/{tenant.user('erin')}", json={"email": "jürgen@example.com"}, headers=ada
    )
    assert error(patched, 400)["code"] == "undeliverable_address"
    assert (await tenant.user_row("erin")).email == tenant.email("erin")
    taken = await api.client.post(
        "/v1/users", json={**NORA, "email": "nora@bücher.example"}, headers=ada
    )
    assert taken.status_code == 201, taken.text


async def test_a_legacy_undeliverable_address_asks_for_a_link_without_a_500(
    api: Api, tenant: Tenant, mail_sink: MailSink
) -> None:
    """A user stored before addresses were checked: the sign-in request answers as for
    anyone (it never tells who has an account), and sends nothing."""
    await tenant.update_user("erin", email="jürgen@example.com")
    asked = await api.client.post("/v1/auth/sign-in-link", json={"email": "jürgen@example.com"})
    assert asked.status_code == 202, asked.text
    await asyncio.sleep(0.2)
    assert mail_sink.mails == []


@pytest.fixture
async def impatient_api(settings: Settings) -> AsyncIterator[Api]:
    """The app with a one-second lock timeout (and no Temporal: not needed here)."""
    async for running in running_app(settings.model_copy(update={"db_lock_timeout_seconds": 1})):
        yield running


async def test_a_lock_held_too_long_is_a_503_in_the_error_shape(
    impatient_api: Api, tenant: Tenant, owner_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A claim behind a row someone holds (a stuck session, a long migration): after the
    lock timeout it answers 503 `database_busy` with Retry-After, and nothing changed."""
    item_id = await tenant.add_item(due_at=None)
    async with owner_sessionmaker() as holder, holder.begin():
        await holder.execute(select(Item).where(Item.id == item_id).with_for_update())
        await holder.execute(text(f"SELECT pg_advisory_xact_lock(7201, hashtext('{item_id}'))"))
        asked = time.monotonic()
        claimed = await impatient_api.client.post(
            f"/v1/items/{item_id}/claim", headers=impatient_api.headers(tenant, "emil")
        )
        took = time.monotonic() - asked
    body = error(claimed, 503)
    assert body["code"] == "database_busy"
    assert claimed.headers["retry-after"] == "1"
    assert took < 5
    assert (await tenant.item(item_id)).state == "open"

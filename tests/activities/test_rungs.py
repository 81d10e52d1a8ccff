"""`fire_rung`: the rung's stamp, its audit, its delivery rows and its push outbox row commit
in one transaction under the item's lock, or not at all; never after a claim commits."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.rungs import RungActivities
from db import tenant_session
from domain import lifecycle
from domain.demo import TIER_1_CHAIN
from tests.support.tenants import Tenant
from workflows.types import FireRung, RungFired

AT = datetime(2026, 11, 23, 9, tzinfo=UTC)


def escalate_1(tenant: Tenant, item_id: uuid.UUID, chain: list[str] | None = None) -> FireRung:
    return FireRung(
        item_id=str(item_id),
        account_id=str(tenant.account_id),
        rung="escalate_1",
        tier=1,
        at=AT,
        planned_at=AT,
        event_key="task.escalated",
        chain=TIER_1_CHAIN if chain is None else chain,
        channels=["email", "push"],
    )


async def fire(sessionmaker: async_sessionmaker[AsyncSession], request: FireRung) -> RungFired:
    return await ActivityEnvironment().run(RungActivities(sessionmaker).fire_rung, request)


async def written(tenant: Tenant, item_id: uuid.UUID) -> dict[str, object]:
    item = await tenant.item(item_id)
    return {
        "stamp": item.escalate_1_fired_at,
        "audit": [a for a, _ in await tenant.audit(item_id) if a != "claimed"],
        "deliveries": [(d.recipient_id, d.status) for d in await tenant.deliveries(item_id)],
        "pushes": [e.kind for e in await tenant.push_events(item_id) if e.kind == "rung.fired"],
    }


NOTHING: dict[str, object] = {"stamp": None, "audit": [], "deliveries": [], "pushes": []}


async def test_an_open_items_rung_writes_everything_once(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    item_id = await tenant.add_item(due_at=AT - timedelta(days=1))
    first = await fire(app_sessionmaker, escalate_1(tenant, item_id))
    retry = await fire(app_sessionmaker, escalate_1(tenant, item_id))
    assert first.recorded
    assert retry.recorded
    assert [r.email for r in first.recipients] == [tenant.email("ada")]  # Erin's manager
    assert retry.recipients == first.recipients
    assert await written(tenant, item_id) == {
        "stamp": AT,
        "audit": ["rung_fired"],
        "deliveries": [(tenant.user("ada"), "pending")],
        "pushes": ["rung.fired"],
    }


async def test_nothing_is_written_once_a_claim_committed(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    item_id = await tenant.add_item(due_at=AT - timedelta(days=1))
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
    fired = await fire(app_sessionmaker, escalate_1(tenant, item_id))
    assert (fired.recorded, fired.state, fired.claimed_by) == (
        False,
        "claimed",
        str(tenant.user("emil")),
    )
    assert await written(tenant, item_id) == NOTHING


async def test_a_rung_racing_an_uncommitted_claim_waits_and_then_writes_nothing(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    item_id = await tenant.add_item(due_at=AT - timedelta(days=1))
    async with tenant_session(app_sessionmaker, tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), AT)
        firing = asyncio.create_task(fire(app_sessionmaker, escalate_1(tenant, item_id)))
        await asyncio.sleep(0.4)
        assert not firing.done(), "the rung must wait for the claim's transaction"
    assert not (await firing).recorded
    assert await written(tenant, item_id) == NOTHING


async def test_an_empty_chain_is_audited_and_pushed_with_nobody_to_mail(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    item_id = await tenant.add_item(due_at=AT - timedelta(days=1), assignee=None)
    fired = await fire(app_sessionmaker, escalate_1(tenant, item_id, chain=["assignee"]))
    assert (fired.recorded, fired.recipients, fired.tried) == (True, [], ["assignee"])
    found = await written(tenant, item_id)
    assert (found["audit"], found["deliveries"], found["pushes"]) == (
        ["rung_fired", "escalation_undeliverable"],
        [],
        ["rung.fired"],
    )


async def test_a_failure_midway_rolls_the_whole_rung_back(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """One transaction: a resolver that raises after the stamp and the audit row were
    written leaves neither behind (the retry then starts from nothing)."""
    item_id = await tenant.add_item(due_at=AT - timedelta(days=1))
    with pytest.raises(ValueError, match="unknown resolver"):
        await fire(app_sessionmaker, escalate_1(tenant, item_id, chain=["nobody_knows"]))
    assert await written(tenant, item_id) == NOTHING


async def test_only_the_chains_first_resolver_with_people_is_mailed(
    tenant: Tenant, app_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Erin herself first, then her manager: only Erin has a row, is mailed and is named in
    the push (her manager's rank never gets a row it would wait in for ever)."""
    item_id = await tenant.add_item(due_at=AT - timedelta(days=1))
    chain = ["assignee", "assignee_manager", "role:quality_manager"]
    fired = await fire(app_sessionmaker, escalate_1(tenant, item_id, chain=chain))
    assert ([r.email for r in fired.recipients], fired.tried) == ([tenant.email("erin")], chain[:1])
    assert [d.recipient_id for d in await tenant.deliveries(item_id)] == [tenant.user("erin")]
    [event] = [e for e in await tenant.push_events(item_id) if e.kind == "rung.fired"]
    assert event.payload["recipients"] == ["Erin Engineer"]


async def test_a_rung_under_another_accounts_id_finds_nothing_and_writes_nothing(
    tenant: Tenant,
    app_sessionmaker: async_sessionmaker[AsyncSession],
    owner_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The item's id with another account's: not found (a non-retryable error), and
    nothing of the rung is written in either account."""
    item_id = await tenant.add_item(due_at=AT - timedelta(days=1))
    other = await Tenant.create(owner_sessionmaker)
    request = replace(escalate_1(tenant, item_id), account_id=str(other.account_id))
    with pytest.raises(ApplicationError, match="not found"):
        await fire(app_sessionmaker, request)
    assert await written(tenant, item_id) == NOTHING

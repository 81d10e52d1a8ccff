"""Bearer-token authentication and role gates.

| role | may |
|---|---|
| viewer | read |
| engineer | create items and handoffs, claim, release, resolve, ... |
| admin, owner | also manage users, roles, calendars and policies |
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.tokens import InvalidToken, Principal, decode
from config import Settings
from db import set_tenant, tenant_session
from domain.models import User

RANK = {"viewer": 0, "engineer": 1, "admin": 2, "owner": 3}
bearer = HTTPBearer(auto_error=False, description="A token from `python -m api.tokens`.")


def unauthenticated(reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": "Bearer"}
    )


async def _confirm(session: AsyncSession, principal: Principal) -> Principal:
    """The token's user as the database knows them now: a deactivated or deleted user's
    token stops working at once, and a role change applies without a new token."""
    user = await session.scalar(
        select(User).where(User.id == principal.user_id, User.account_id == principal.account_id)
    )
    if user is None or not user.is_active or user.deleted_at is not None:
        raise unauthenticated("the token's user is not an active user of this account")
    if user.token_epoch != principal.epoch:
        raise unauthenticated(
            "the token was revoked (signed out everywhere, or the user's role, address or "
            "status changed): sign in again"
        )
    return replace(principal, role=user.role)


async def confirmed(request: Request, principal: Principal) -> Principal:
    """`_confirm` in a transaction of its own (the live stream's, which holds no session)."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with tenant_session(sessionmaker, principal.account_id) as session:
        return await _confirm(session, principal)


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> AsyncIterator[Principal]:
    """The caller, confirmed in the request's one transaction: the session (pinned to the
    caller's account) is left on `request.state` for the unit of work to carry on, so a
    request's auth, reads and writes are one BEGIN ... COMMIT. Closed (rolled back unless
    the unit of work committed) when the endpoint is done."""
    if credentials is None:
        raise unauthenticated("missing bearer token")
    settings: Settings = request.app.state.settings
    try:
        principal = decode(credentials.credentials, settings.jwt_secret)
    except InvalidToken as error:
        raise unauthenticated(f"invalid token: {error}") from error
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        await set_tenant(session, principal.account_id)
        confirmed_principal = await _confirm(session, principal)
        request.state.session = session
        try:
            yield confirmed_principal
        finally:
            request.state.session = None


PrincipalDep = Annotated[Principal, Depends(get_principal, scope="function")]


class Require:
    """`Depends(Require("engineer"))`: the caller's role must rank at least that high."""

    def __init__(self, role: str) -> None:
        self.role = role

    def __call__(self, principal: PrincipalDep) -> Principal:
        if RANK[principal.role] < RANK[self.role]:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"requires role {self.role} or above")
        return principal


Viewer = Annotated[Principal, Depends(Require("viewer"))]
Engineer = Annotated[Principal, Depends(Require("engineer"))]
Admin = Annotated[Principal, Depends(Require("admin"))]

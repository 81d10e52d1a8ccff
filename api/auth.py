"""Bearer-token authentication and role gates.

| role | may |
|---|---|
| viewer | read |
| engineer | create items and handoffs, claim, release, resolve, ... |
| admin, owner | also manage users, roles, calendars and policies |
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.tokens import InvalidToken, Principal, decode
from config import Settings
from db import tenant_session
from domain.models import User

RANK = {"viewer": 0, "engineer": 1, "admin": 2, "owner": 3}
bearer = HTTPBearer(auto_error=False, description="A token from `python -m api.tokens`.")


def unauthenticated(reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": "Bearer"}
    )


async def confirmed(request: Request, principal: Principal) -> Principal:
    """The token's user as the database knows them now: a deactivated or deleted user's
    token stops working at once, and a role change applies without a new token."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with tenant_session(sessionmaker, principal.account_id) as session:
        user = await session.scalar(
            select(User).where(
                User.id == principal.user_id, User.account_id == principal.account_id
            )
        )
    if user is None or not user.is_active or user.deleted_at is not None:
        raise unauthenticated("the token's user is not an active user of this account")
    return replace(principal, role=user.role)


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise unauthenticated("missing bearer token")
    settings: Settings = request.app.state.settings
    try:
        principal = decode(credentials.credentials, settings.jwt_secret)
    except InvalidToken as error:
        raise unauthenticated(f"invalid token: {error}") from error
    return await confirmed(request, principal)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


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

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
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.tokens import InvalidToken, Principal, decode
from config import Settings
from db import tenant_session

RANK = {"viewer": 0, "engineer": 1, "admin": 2, "owner": 3}
bearer = HTTPBearer(auto_error=False, description="A token from `python -m api.tokens`.")


def unauthenticated(reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": "Bearer"}
    )


REFUSED = {
    "inactive": "the token's user is not an active user of this account",
    "revoked": "the token was revoked (signed out everywhere, or the user's role, address or "
    "status changed): sign in again",
}
_PRINCIPAL = text("SELECT role, refusal FROM escalator_principal(:account, :user, :epoch)")


def refused(refusal: str, role: str) -> HTTPException:
    """`escalator_principal`'s refusal (or the create's 'forbidden', for `role`) as the
    answer."""
    if refusal == "forbidden":
        return HTTPException(status.HTTP_403_FORBIDDEN, f"requires role {role} or above")
    return unauthenticated(REFUSED[refusal])


async def _confirm(session: AsyncSession, principal: Principal) -> Principal:
    """Pin the transaction to the token's account and confirm its user as the database
    knows them now, in one statement: a deactivated or deleted user's token stops working
    at once, and a role change applies without a new token."""
    row = (
        await session.execute(
            _PRINCIPAL,
            {"account": principal.account_id, "user": principal.user_id, "epoch": principal.epoch},
        )
    ).one()
    if row.refusal is not None:
        raise refused(row.refusal, "viewer")  # never 'forbidden': any role is confirmed
    return replace(principal, role=row.role)


async def confirmed(request: Request, principal: Principal) -> Principal:
    """`_confirm` in a transaction of its own (the live stream's, which holds no session)."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with tenant_session(sessionmaker, principal.account_id) as session:
        return await _confirm(session, principal)


async def token_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller as their token says, not yet confirmed against their row."""
    if credentials is None:
        raise unauthenticated("missing bearer token")
    settings: Settings = request.app.state.settings
    try:
        return decode(credentials.credentials, settings.jwt_secret)
    except InvalidToken as error:
        raise unauthenticated(f"invalid token: {error}") from error


TokenDep = Annotated[Principal, Depends(token_principal)]


async def get_principal(request: Request, principal: TokenDep) -> AsyncIterator[Principal]:
    """The caller, confirmed in the request's one transaction: the session (pinned to the
    caller's account) is left on `request.state` for the unit of work to carry on, so a
    request's auth, reads and writes are one BEGIN ... COMMIT. Closed (rolled back unless
    the unit of work committed) when the endpoint is done."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
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

    async def __call__(self, principal: PrincipalDep) -> Principal:
        return self.ranked(principal)

    def ranked(self, principal: Principal) -> Principal:
        if RANK[principal.role] < RANK[self.role]:
            raise refused("forbidden", self.role)
        return principal


class RequireClaim(Require):
    """`Depends(RequireClaim("engineer"))`: the role the caller's token claims must rank at
    least that high, checked with no query, before the body is read. For an endpoint whose
    one statement confirms the caller and their role as the database knows them now (a
    demoted caller's old token is refused there, writing nothing)."""

    async def __call__(self, principal: TokenDep) -> Principal:
        return self.ranked(principal)


def may(role: str) -> tuple[str, ...]:
    """The roles that rank at least as high as `role`."""
    return tuple(r for r, rank in RANK.items() if rank >= RANK[role])


Viewer = Annotated[Principal, Depends(Require("viewer"))]
Engineer = Annotated[Principal, Depends(Require("engineer"))]
Admin = Annotated[Principal, Depends(Require("admin"))]
ClaimsEngineer = Annotated[Principal, Depends(RequireClaim("engineer"))]

"""Bearer-token authentication and role gates.

| role | may |
|---|---|
| viewer | read |
| engineer | create items and handoffs, claim, release, resolve, ... |
| admin, owner | also manage users, roles, calendars and policies |
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.tokens import InvalidToken, Principal, decode
from config import Settings

RANK = {"viewer": 0, "engineer": 1, "admin": 2, "owner": 3}
bearer = HTTPBearer(auto_error=False, description="A token from `python -m api.tokens`.")


def unauthenticated(reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": "Bearer"}
    )


def get_principal(
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
    if principal.role not in RANK:
        raise unauthenticated(f"unknown role {principal.role!r} in token")
    return principal


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

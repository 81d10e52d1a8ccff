"""Bearer tokens: HS256 JWTs carrying user, account and role.

Mint one from the command line:
`python -m api.tokens --user <uuid> --ttl 8h` (account and role are looked up)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import jwt
from pydantic import BaseModel, ConfigDict, ValidationError

from config import Settings
from domain.clock import utcnow

ALGORITHM = "HS256"


@dataclass(frozen=True, kw_only=True)
class Principal:
    user_id: uuid.UUID
    account_id: uuid.UUID
    role: str


class InvalidToken(Exception):
    pass


def mint(
    principal: Principal,
    secret: str,
    *,
    ttl: timedelta,
    now: datetime,
    audience: str | None = None,
) -> str:
    """`audience` narrows a token to one use (the SSE stream ticket); such a token is refused
    everywhere else."""
    claims: dict[str, object] = {
        "sub": str(principal.user_id),
        "acc": str(principal.account_id),
        "role": principal.role,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


class Claims(BaseModel):
    """What a token must carry, typed: a well-signed token with a list for `acc` is as
    invalid as a forged one."""

    model_config = ConfigDict(extra="ignore", strict=True)

    sub: uuid.UUID
    acc: uuid.UUID
    role: Literal["viewer", "engineer", "admin", "owner"]


def decode(token: str, secret: str, *, audience: str | None = None) -> Principal:
    try:
        raw = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            options={"require": ["sub", "acc", "exp", *(["aud"] if audience else [])]},
        )
        claims = Claims.model_validate(raw, strict=False)
    except jwt.PyJWTError as error:
        raise InvalidToken(str(error)) from error
    except ValidationError as error:
        where = ", ".join(".".join(map(str, e["loc"])) for e in error.errors())
        raise InvalidToken(f"malformed claims: {where}") from error
    return Principal(user_id=claims.sub, account_id=claims.acc, role=claims.role)


_TTL = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_ttl(text: str) -> timedelta:
    match = _TTL.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"TTL like 30m, 8h or 7d, not {text!r}")
    return timedelta(**{_UNIT[match[2]]: int(match[1])})


async def lookup(settings: Settings, user_id: uuid.UUID) -> Principal:
    """The user's account and role, read as the owner (a CLI has no tenant yet)."""
    from db import create_engine, create_sessionmaker
    from domain.models import User

    engine = create_engine(settings, owner=True)
    try:
        async with create_sessionmaker(engine)() as session:
            user = await session.get(User, user_id)
    finally:
        await engine.dispose()
    if user is None or user.deleted_at is not None or not user.is_active:
        raise SystemExit(f"no active user {user_id}")
    return Principal(user_id=user.id, account_id=user.account_id, role=user.role)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Mint an escalator bearer token. With only --user, the account and role "
        "are read from the database (DATABASE_URL)."
    )
    parser.add_argument("--user", type=uuid.UUID, required=True)
    parser.add_argument("--account", type=uuid.UUID)
    parser.add_argument("--role", choices=["viewer", "engineer", "admin", "owner"])
    parser.add_argument(
        "--ttl", type=parse_ttl, default=timedelta(hours=8), help="e.g. 30m, 8h, 7d"
    )
    args = parser.parse_args()
    settings = Settings()
    if args.account and args.role:
        principal = Principal(user_id=args.user, account_id=args.account, role=args.role)
    else:
        principal = asyncio.run(lookup(settings, args.user))
    print(mint(principal, settings.jwt_secret, ttl=args.ttl, now=utcnow()))  # noqa: T201


if __name__ == "__main__":
    main()

"""Bearer tokens: HS256 JWTs carrying user, account and role.

Mint one from the command line: `make token USER=ada@demo.escalator.test`, or
`python -m api.tokens --email <email> --ttl 8h` (account and role are looked up; with
`make run` up, no environment is needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
    epoch: int = 0  # the user's `token_epoch` when minted: a bump revokes the token


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
        "ep": principal.epoch,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    if audience is not None:
        claims["aud"] = audience
        claims["jti"] = str(uuid.uuid4())  # a narrowed token is single-use: its id is spent
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def token_id(token: str, secret: str, audience: str) -> uuid.UUID:
    """The id of a single-use token already checked by `decode(..., audience=...)`."""
    try:
        raw = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=audience)
        return uuid.UUID(str(raw["jti"]))
    except (jwt.PyJWTError, KeyError, ValueError) as error:
        raise InvalidToken(f"no single-use id: {error}") from error


class Claims(BaseModel):
    """What a token must carry, typed: a well-signed token with a list for `acc` is as
    invalid as a forged one."""

    model_config = ConfigDict(extra="ignore", strict=True)

    sub: uuid.UUID
    acc: uuid.UUID
    role: Literal["viewer", "engineer", "admin", "owner"]
    ep: int = 0


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
    return Principal(user_id=claims.sub, account_id=claims.acc, role=claims.role, epoch=claims.ep)


_TTL = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_ttl(text: str) -> timedelta:
    match = _TTL.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"TTL like 30m, 8h or 7d, not {text!r}")
    return timedelta(**{_UNIT[match[2]]: int(match[1])})


async def lookup(settings: Settings, user: uuid.UUID | str) -> Principal:
    """The user (by id, or by email) with their account and role, read as the owner (a CLI
    has no tenant yet)."""
    from sqlalchemy import func, select

    from db import create_engine, create_sessionmaker
    from domain.models import User

    active = (User.is_active.is_(True), User.deleted_at.is_(None))
    query = select(User).where(
        User.id == user if isinstance(user, uuid.UUID) else func.lower(User.email) == user.lower(),
        *active,
    )
    engine = create_engine(settings, owner=True)
    try:
        async with create_sessionmaker(engine)() as session:
            found = (await session.scalars(query.limit(2))).all()
    finally:
        await engine.dispose()
    if not found:
        raise SystemExit(f"no active user {user}")
    if len(found) > 1:
        raise SystemExit(f"{user} is a user of several accounts: pass --user <id> instead")
    one = found[0]
    return Principal(
        user_id=one.id, account_id=one.account_id, role=one.role, epoch=one.token_epoch
    )


def dev_stack_settings(settings: Settings) -> Settings:
    """With no DATABASE_URL in the shell, the one a running `make run` wrote down."""
    if settings.database_url is not None:
        return settings
    written = settings.state_dir / "stack.json"
    if not written.exists():
        raise SystemExit(
            "DATABASE_URL is not set and no dev stack is running here (no "
            f"{written}): start `make run`, or export DATABASE_URL (the owner's URL)"
        )
    stack = json.loads(written.read_text())
    return settings.model_copy(
        update={"database_url": stack["database_url"], "jwt_secret": stack["jwt_secret"]}
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Mint an escalator bearer token for a user, by --email or --user id; "
        "the account and role are read from the database (DATABASE_URL, or the running "
        "`make run`'s)."
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", type=uuid.UUID, help="the user's id")
    who.add_argument("--email", help="the user's email, e.g. ada@demo.escalator.test")
    parser.add_argument("--account", type=uuid.UUID)
    parser.add_argument("--role", choices=["viewer", "engineer", "admin", "owner"])
    parser.add_argument(
        "--ttl", type=parse_ttl, default=timedelta(hours=8), help="e.g. 30m, 8h, 7d"
    )
    args = parser.parse_args()
    settings = Settings()
    if args.user and args.account and args.role:
        principal = Principal(user_id=args.user, account_id=args.account, role=args.role)
    else:
        settings = dev_stack_settings(settings)
        principal = asyncio.run(lookup(settings, args.user or args.email))
    print(mint(principal, settings.jwt_secret, ttl=args.ttl, now=utcnow()))  # noqa: T201


if __name__ == "__main__":
    main()

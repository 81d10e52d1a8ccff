"""Links a person opens from a mail: a sign-in link, a claim link and the link that
confirms a new address.

Each is a signed token (HS256, the API's secret) with its own audience, so one can never
stand in for another or for a bearer token, and a `jti` that `used_link` records when it
is redeemed, which makes it single-use. A sign-in link lasts 15 minutes; a claim link is
scoped to one item and one recipient and lasts as long as its mail is worth acting on; an
address link names the address it confirms and lasts 24 hours.

The token travels in the URL's fragment (`/signin#link=...`): a browser never sends a
fragment to a server, so it reaches neither access logs, nor proxies, nor the `Referer` of
a page; the page reads it and POSTs it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import quote

import jwt
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.models import UsedLink

Purpose = Literal["sign_in", "claim", "address"]
ALGORITHM = "HS256"
TTL: dict[Purpose, timedelta] = {
    "sign_in": timedelta(minutes=15),
    "claim": timedelta(days=7),
    "address": timedelta(hours=24),
}
PAGES: dict[Purpose, str] = {"sign_in": "/signin", "claim": "/claim", "address": "/address"}


class InvalidLink(Exception):
    """A link that is forged, expired, malformed or for another purpose; the message says
    which, in words a person can act on."""


@dataclass(frozen=True, kw_only=True)
class Link:
    purpose: Purpose
    jti: uuid.UUID
    user_id: uuid.UUID
    account_id: uuid.UUID
    item_id: uuid.UUID | None
    expires_at: datetime
    email: str | None = None  # the address an address link confirms


class _Claims(BaseModel):
    model_config = ConfigDict(extra="ignore")

    jti: uuid.UUID
    sub: uuid.UUID
    acc: uuid.UUID
    item: uuid.UUID | None = None
    email: str | None = None
    exp: int


def mint(
    purpose: Purpose,
    secret: str,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    now: datetime,
    item_id: uuid.UUID | None = None,
    email: str | None = None,
    ttl: timedelta | None = None,
) -> str:
    ttl = ttl or TTL[purpose]
    claims: dict[str, object] = {
        "aud": f"link:{purpose}",
        "jti": str(uuid.uuid4()),
        "sub": str(user_id),
        "acc": str(account_id),
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    if item_id is not None:
        claims["item"] = str(item_id)
    if email is not None:
        claims["email"] = email
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def url(base: str, purpose: Purpose, token: str) -> str:
    return f"{base.rstrip('/')}{PAGES[purpose]}#link={quote(token)}"


def read(token: str, secret: str, purpose: Purpose) -> Link:
    try:
        raw = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=f"link:{purpose}",
            options={"require": ["jti", "sub", "acc", "exp", "aud"]},
        )
        claims = _Claims.model_validate(raw)
    except jwt.ExpiredSignatureError as error:
        raise InvalidLink("this link has expired: ask for a new one") from error
    except (jwt.PyJWTError, ValidationError) as error:
        raise InvalidLink("this link is not valid (it may have been cut short)") from error
    if purpose == "claim" and claims.item is None:
        raise InvalidLink("this link is not valid (it names no item)")
    if purpose == "address" and claims.email is None:
        raise InvalidLink("this link is not valid (it names no address)")
    return Link(
        purpose=purpose,
        jti=claims.jti,
        user_id=claims.sub,
        account_id=claims.acc,
        item_id=claims.item,
        email=claims.email,
        expires_at=datetime.fromtimestamp(claims.exp, tz=UTC),
    )


async def use(session: AsyncSession, link: Link) -> bool:
    """Record the link as used, in the caller's transaction: False if it already was."""
    inserted = await session.execute(
        insert(UsedLink)
        .values(
            jti=link.jti, account_id=link.account_id, purpose=link.purpose, user_id=link.user_id
        )
        .on_conflict_do_nothing()
        .returning(UsedLink.jti)
    )
    return inserted.first() is not None


async def used_at(session: AsyncSession, link: Link) -> datetime | None:
    row = await session.get(UsedLink, link.jti)
    return None if row is None else row.used_at

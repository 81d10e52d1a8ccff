"""Sign-in without a terminal, and claiming from a mail.

- `POST /v1/auth/sign-in-link` mails a single-use, 15-minute link to the address, if it is
  an active user's (the answer is the same either way: it never says who has an account).
  `POST /v1/auth/sign-in-link/view` says whom a link would sign in; `POST /v1/auth/session`
  redeems it for a bearer token (8 hours).
- Every notification carries a claim link, scoped to its item and recipient.
  `POST /v1/claim-links/view` only shows; `POST /v1/claim-links` claims, as that recipient,
  if their role may claim now, once.
- An address change mails a link to the new address; `POST /v1/auth/address` confirms it.

A link is never a query parameter: the mails carry it in the URL's fragment
(`/signin#link=...`), which browsers do not send, and the pages at `/signin`, `/claim` and
`/address` POST it. So it reaches no access log, proxy or `Referer`, and a mail scanner
that follows the link only fetches the page.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, BackgroundTasks, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

import metrics
from api.auth import RANK, Viewer
from api.deps import SessionmakerDep, SettingsDep, TemporalDep, UowDep
from api.errors import ErrorResponse
from api.schemas import AccountOut, MeOut
from api.tokens import Principal
from api.tokens import mint as mint_token
from config import Settings
from db import get_in_account, tenant_session
from domain import admin, lifecycle, links
from domain.admin import revoke_tokens
from domain.clock import utcnow
from domain.errors import BadLink, Forbidden, LinkUsed, NotFound, TooManyRequests
from domain.models import Account, Item, User
from workflows.starts import signal_item, start_sign_in
from workflows.types import ClaimSignal, SignIn

log = structlog.get_logger()
router = APIRouter(tags=["sign-in and mail links"])
SESSION_TTL = timedelta(hours=8)
WINDOW_SECONDS = 15 * 60
_TOKEN: dict[str, Any] = {"min_length": 20, "max_length": 2000, "pattern": r"^[A-Za-z0-9_.\-]+$"}
LinkToken = Annotated[str, Field(**_TOKEN)]
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "the database is unreachable or too busy"},
}
BAD_LINK: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the link is forged, cut short or expired"},
    **UNAVAILABLE,
}
CLAIM_CONFLICT = "claimed by someone else (who and when in `details`), or the link was used"
USED: dict[int | str, dict[str, Any]] = {
    **BAD_LINK,
    409: {"model": ErrorResponse, "description": "the link was used already"},
}


class SignInRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"email": "ada@demo.escalator.test"}]}
    )

    email: str = Field(
        min_length=3,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+$",
        examples=["ada@demo.escalator.test"],
    )


class SignInRequested(BaseModel):
    status: Literal["sent"] = "sent"
    message: str = Field(
        examples=["If ada@demo.escalator.test belongs to an active user, a link is on its way."]
    )


class Person(BaseModel):
    id: uuid.UUID
    name: str


class SignInLinkOut(BaseModel):
    user: Person
    email: str | None
    account: str
    role: str
    expires_at: datetime
    used: bool


class Redeem(BaseModel):
    link: LinkToken


class SessionOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds")
    user: Person
    role: str


class ClaimLinkOut(BaseModel):
    item_id: uuid.UUID
    title: str
    type: str
    kind: str
    state: str
    due_at: datetime | None
    recipient: Person
    claimed_by: Person | None
    claimed_at: datetime | None
    used_at: datetime | None = Field(description="when this link was used, if it was")
    expires_at: datetime


async def _request(session: AsyncSession, email: str, most: int) -> int | None:
    """The request's durable row (the worker answers it), or None when this address has
    had `most` links in 15 minutes: counted in Postgres for every API process."""
    made: int | None = await session.scalar(
        text("SELECT escalator_sign_in_request(:address, :most, make_interval(secs => :span))"),
        {"address": email, "most": most, "span": WINDOW_SECONDS},
    )
    return made


@router.get("/v1/me", response_model=MeOut, summary="Who the bearer token is")
async def me(uow: UowDep, principal: Viewer) -> MeOut:
    user = await get_in_account(uow.session, User, principal.user_id, principal.account_id)
    account = await uow.session.scalar(select(Account).where(Account.id == principal.account_id))
    if user is None or account is None:  # the gate has just confirmed both
        raise NotFound("the token's user is gone")
    return MeOut(
        id=user.id,
        name=user.name,
        email=user.email,
        role=principal.role,
        timezone=user.timezone,
        account=AccountOut(id=account.id, name=account.name),
    )


@router.post(
    "/v1/me/sign-out-everywhere",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke every token of the caller's, this one included",
)
async def sign_out_everywhere(uow: UowDep, principal: Viewer) -> None:
    """Every bearer token and stream ticket minted for you so far stops working, on every
    device; sign in again for a new one."""
    user = await get_in_account(uow.session, User, principal.user_id, principal.account_id)
    if user is None:  # the gate has just confirmed the user
        raise NotFound("the token's user is gone")
    revoke_tokens(user)
    log.info("auth.signed_out_everywhere", user_id=str(user.id))


@router.post(
    "/v1/auth/sign-in-link",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SignInRequested,
    responses={
        429: {"model": ErrorResponse, "description": "too many links for this address"},
        **UNAVAILABLE,
    },
    summary="Mail a sign-in link (single use, 15 minutes)",
)
async def request_sign_in(
    body: SignInRequest,
    settings: SettingsDep,
    sessionmaker: SessionmakerDep,
    temporal: TemporalDep,
    after: BackgroundTasks,
) -> SignInRequested:
    """Every request, for an address with an account or not, writes the same one row and
    nothing else, and is answered: the worker looks the address up and sends the mail through
    the delivery engine (`SignInMailWorkflow`, started after the answer; if Temporal is down,
    the reconciler starts it within a minute or so)."""
    email = body.email.strip().lower()
    async with sessionmaker() as session, session.begin():
        request = await _request(session, email, settings.sign_in_requests_per_window)
    if request is None:
        raise TooManyRequests(
            "too many sign-in links for this address: use the last one, or wait 15 minutes"
        )
    after.add_task(start_sign_in, temporal, settings.task_queue, SignIn(request_id=request))
    log.info("sign_in.requested", request=request)
    return SignInRequested(message=f"If {email} belongs to an active user, a link is on its way.")


@router.post(
    "/v1/auth/sign-in-link/view",
    response_model=SignInLinkOut,
    responses=BAD_LINK,
    summary="Whom a sign-in link is for (uses nothing)",
)
async def inspect_sign_in(
    body: Redeem, settings: SettingsDep, sessionmaker: SessionmakerDep
) -> SignInLinkOut:
    read = _read(body.link, settings, "sign_in")
    async with tenant_session(sessionmaker, read.account_id) as session:
        user = await _active_user(session, read)
        account = await session.scalar(select(Account).where(Account.id == read.account_id))
        return SignInLinkOut(
            user=Person(id=user.id, name=user.name),
            email=user.email,
            account=account.name if account else "",
            role=user.role,
            expires_at=read.expires_at,
            used=await links.used_at(session, read) is not None,
        )


@router.post(
    "/v1/auth/session",
    response_model=SessionOut,
    responses=USED,
    summary="Redeem a sign-in link for a bearer token (8 hours)",
)
async def redeem(body: Redeem, settings: SettingsDep, sessionmaker: SessionmakerDep) -> SessionOut:
    read = _read(body.link, settings, "sign_in")
    async with tenant_session(sessionmaker, read.account_id) as session:
        user = await _active_user(session, read)
        if not await links.use(session, read):
            raise LinkUsed("this sign-in link was used already: ask for a new one")
    principal = Principal(
        user_id=user.id, account_id=user.account_id, role=user.role, epoch=user.token_epoch
    )
    token = mint_token(principal, settings.jwt_secret, ttl=SESSION_TTL, now=utcnow())
    log.info("sign_in.redeemed", user_id=str(user.id))
    return SessionOut(
        access_token=token,
        expires_in=int(SESSION_TTL.total_seconds()),
        user=Person(id=user.id, name=user.name),
        role=user.role,
    )


class AddressConfirmed(BaseModel):
    user: Person
    email: str = Field(description="the user's address from now on")


@router.post(
    "/v1/auth/address",
    response_model=AddressConfirmed,
    responses={
        **BAD_LINK,
        409: {
            "model": ErrorResponse,
            "description": "the link was used already, or the change was withdrawn, replaced, "
            "or its address taken since",
        },
    },
    summary="Confirm a new address with the link mailed to it (once)",
)
async def confirm_address(
    body: Redeem, settings: SettingsDep, sessionmaker: SessionmakerDep
) -> AddressConfirmed:
    """The address becomes the user's: mail and sign-in links go to it from now on, and
    every token minted before stops working."""
    read = _read(body.link, settings, "address")
    assert read.email is not None  # links.read refuses an address link without one
    async with tenant_session(sessionmaker, read.account_id) as session:
        await _active_user(session, read)
        if not await links.use(session, read):
            raise LinkUsed("this confirmation link was used already")
        user = await admin.confirm_address(
            session, read.account_id, read.user_id, read.email, read.jti
        )
    log.info("auth.address_confirmed", user_id=str(user.id))
    return AddressConfirmed(user=Person(id=user.id, name=user.name), email=read.email)


@router.post(
    "/v1/claim-links/view",
    response_model=ClaimLinkOut,
    responses=BAD_LINK,
    summary="What a claim link would claim, and whether someone already has (claims nothing)",
)
async def inspect_claim(
    body: Redeem, settings: SettingsDep, sessionmaker: SessionmakerDep
) -> ClaimLinkOut:
    read = _read(body.link, settings, "claim")
    async with tenant_session(sessionmaker, read.account_id) as session:
        return await _claim_view(session, read)


@router.post(
    "/v1/claim-links",
    response_model=ClaimLinkOut,
    responses={
        **USED,
        403: {"model": ErrorResponse, "description": "the holder's role, now, may not claim"},
        409: {"model": ErrorResponse, "description": "claimed by someone, or the link was used"},
    },
    summary="Claim the item, as the mail's recipient, once",
)
async def claim_from_mail(
    body: Redeem, settings: SettingsDep, sessionmaker: SessionmakerDep, temporal: TemporalDep
) -> ClaimLinkOut:
    read = _read(body.link, settings, "claim")
    assert read.item_id is not None  # links.read refuses a claim link without one
    now = utcnow()
    async with tenant_session(sessionmaker, read.account_id) as session:
        holder = await _active_user(session, read)
        if RANK[holder.role] < RANK["engineer"]:  # the holder's role now, not at mailing
            raise Forbidden(
                f"your role ({holder.role}) may not claim items; ask an engineer or an admin",
                role=holder.role,
            )
        before = await _claim_view(session, read)  # the item must be in the link's account
        if not await links.use(session, read):
            raise LinkUsed("this claim link was used already", **_who(before))
        # Claimed by someone else: the error rolls back the use too, so the link still works
        # once that claim is released.
        done = await lifecycle.claim(session, read.account_id, read.item_id, read.user_id, now)
        view = await _claim_view(session, read)
    if done.changed:
        metrics.claimed(done.item.item_type, done.item.created_at, now)
        claimed = ClaimSignal(user_id=str(read.user_id), at=now, name=view.recipient.name)
        await signal_item(temporal, read.item_id, "claim", claimed)
    return view


def _read(token: str, settings: Settings, purpose: links.Purpose) -> links.Link:
    try:
        return links.read(token, settings.jwt_secret, purpose)
    except links.InvalidLink as error:
        raise BadLink(str(error)) from error


async def _active_user(session: AsyncSession, read: links.Link) -> User:
    user = await get_in_account(session, User, read.user_id, read.account_id)
    if user is None or not user.is_active or user.deleted_at is not None:
        raise BadLink("the link's user is no longer an active user of this account")
    return user


def _who(view: ClaimLinkOut) -> dict[str, Any]:
    claimer = view.claimed_by
    return {
        "claimed_by": None if claimer is None else {"id": str(claimer.id), "name": claimer.name},
        "claimed_at": view.claimed_at.isoformat() if view.claimed_at else None,
    }


async def _claim_view(session: AsyncSession, read: links.Link) -> ClaimLinkOut:
    item = await session.scalar(
        select(Item).where(Item.id == read.item_id, Item.account_id == read.account_id)
    )
    if item is None:
        raise BadLink("the link's item no longer exists")
    people = {
        u.id: u.name
        for u in await session.scalars(
            select(User).where(
                User.account_id == read.account_id,
                User.id.in_([read.user_id, item.claimed_by]),
            )
        )
    }
    return ClaimLinkOut(
        item_id=item.id,
        title=item.title,
        type=item.item_type,
        kind=item.kind,
        state=item.state,
        due_at=item.due_at,
        recipient=Person(id=read.user_id, name=people.get(read.user_id, "")),
        claimed_by=None
        if item.claimed_by is None
        else Person(id=item.claimed_by, name=people.get(item.claimed_by, "")),
        claimed_at=item.claimed_at,
        used_at=await links.used_at(session, read),
        expires_at=read.expires_at,
    )

"""`GET /v1/events/stream`: the account's live events as Server-Sent Events.

On connect: a `ready` event; then, if the client gives `Last-Event-ID` (or
`?last_event_id=`), every event after it still in the outbox (retention:
`ESCALATOR_PUSH_RETENTION_DAYS`); then live events, in id order, none twice. A comment line
every `ESCALATOR_SSE_HEARTBEAT_SECONDS` keeps proxies from closing an idle stream.

Browsers' EventSource cannot send headers, so `POST /v1/events/ticket` returns a 60-second
ticket bound to the caller, accepted as `?ticket=` once: a ticket copied from a log, a proxy
or a browser's history opens nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette.sse import EventSourceResponse

from api.auth import RANK, Engineer, Require, bearer, confirmed, unauthenticated
from api.deps import SessionmakerDep, SettingsDep
from api.events import Event, Hub
from api.tokens import InvalidToken, Principal, decode, mint, token_id
from db import tenant_session
from domain import push
from domain.clock import utcnow
from domain.models import PushEvent, UsedLink

router = APIRouter(prefix="/v1/events", tags=["events"])
TICKET_TTL = timedelta(seconds=60)
TICKET_AUDIENCE = "stream"
MAX_EVENT_ID = 2**63 - 1  # push_event.id is a bigint
REPLAY_PAGE = 200  # a resuming stream reads this many missed events per visit to the pool


class Ticket(BaseModel):
    ticket: str
    expires_in: int


@router.post(
    "/ticket", response_model=Ticket, summary="A single-use, 60-second ticket for EventSource"
)
async def ticket(principal: Engineer, settings: SettingsDep) -> Ticket:
    token = mint(
        principal, settings.jwt_secret, ttl=TICKET_TTL, now=utcnow(), audience=TICKET_AUDIENCE
    )
    return Ticket(ticket=token, expires_in=int(TICKET_TTL.total_seconds()))


class RequireStream(Require):
    """The role gate for the stream: a bearer token, or a ticket in the query string."""

    async def __call__(  # type: ignore[override]
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ticket: Annotated[str | None, Query(description="from POST /v1/events/ticket")] = None,
    ) -> Principal:
        secret = request.app.state.settings.jwt_secret
        try:
            if credentials is not None:
                principal = decode(credentials.credentials, secret)
            elif ticket is not None:
                principal = decode(ticket, secret, audience=TICKET_AUDIENCE)
                await _spend(request, principal, token_id(ticket, secret, TICKET_AUDIENCE))
            else:
                raise unauthenticated("missing bearer token or ticket")
        except InvalidToken as error:
            raise unauthenticated(f"invalid token: {error}") from error
        principal = await confirmed(request, principal)
        if RANK.get(principal.role, -1) < RANK[self.role]:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"requires role {self.role} or above")
        return principal


async def _spend(request: Request, principal: Principal, jti: uuid.UUID) -> None:
    """A ticket opens one stream: its id is recorded as used, and a second use (a ticket
    copied from a log, a proxy or a history) is refused. The account's rows of tickets that
    have expired since (refused by their signature alone) are dropped on the way."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with tenant_session(sessionmaker, principal.account_id) as session:
        await session.execute(
            delete(UsedLink).where(
                UsedLink.account_id == principal.account_id,
                UsedLink.purpose == "stream_ticket",
                UsedLink.used_at < utcnow() - TICKET_TTL,
            )
        )
        spent = await session.execute(
            insert(UsedLink)
            .values(
                jti=jti,
                account_id=principal.account_id,
                purpose="stream_ticket",
                user_id=principal.user_id,
            )
            .on_conflict_do_nothing()
            .returning(UsedLink.jti)
        )
        if spent.first() is None:
            raise InvalidToken("this ticket was used already: ask for a new one")


def _sse(event: Event | PushEvent) -> dict[str, Any]:
    return {"id": str(event.id), "event": event.kind, "data": json.dumps(event.payload)}


@router.get(
    "/stream",
    summary="Live events (SSE), resumable by Last-Event-ID",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    principal: Annotated[Principal, Depends(RequireStream("engineer"))],
    settings: SettingsDep,
    sessionmaker: SessionmakerDep,
    last_event_header: Annotated[
        int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_EVENT_ID)
    ] = None,
    last_event_id: Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID)] = None,
) -> EventSourceResponse:
    hub: Hub = request.app.state.hub
    resume_after = last_event_header if last_event_header is not None else last_event_id
    subscriber = hub.subscribe(principal.account_id)  # before replay: nothing slips between

    async def events() -> AsyncIterator[dict[str, Any]]:
        try:
            yield {"event": "ready", "data": json.dumps({"account_id": str(principal.account_id)})}
            last = -1
            if resume_after is not None:
                last = resume_after
                oldest = utcnow() - timedelta(days=settings.push_retention_days)
                while True:  # a page at a time, the connection back in the pool meanwhile
                    async with tenant_session(sessionmaker, principal.account_id) as session:
                        page = list(
                            await session.scalars(
                                push.replay_query(principal.account_id, last, oldest, REPLAY_PAGE)
                            )
                        )
                    for row in page:
                        yield _sse(row)
                        last = row.id
                    if len(page) < REPLAY_PAGE:
                        break
            while not subscriber.overflowed.is_set():
                getting = asyncio.ensure_future(subscriber.queue.get())
                overflow = asyncio.ensure_future(subscriber.overflowed.wait())
                try:
                    done, _ = await asyncio.wait(
                        {getting, overflow}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:  # also when the client left mid-wait: no task is left pending
                    overflow.cancel()
                    if not getting.done():
                        getting.cancel()
                if getting not in done:
                    break  # too slow: disconnect, and the client resumes by id
                event = getting.result()
                if event.id > last:
                    yield _sse(event)
                    last = event.id
        finally:
            hub.unsubscribe(subscriber)

    return EventSourceResponse(events(), ping=settings.sse_heartbeat_seconds)

"""Items: read with their plan, list, change, move through their lifecycle, and their record
(audit timeline, deliveries). Every write commits first, then signals the workflow."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, tuple_

import metrics
from api.auth import Admin, Engineer, Viewer
from api.deps import SettingsDep, TemporalDep, UnitOfWork, UowDep
from api.errors import ErrorResponse
from api.schemas import (
    AuditOut,
    DeliveryOut,
    EndpointRef,
    Instant,
    ItemOut,
    ItemPage,
    ItemPatch,
    PersonOut,
    RungOut,
    Why,
    next_rung,
)
from domain import items, lifecycle, limits
from domain import replan as domain_replan
from domain.clock import utcnow
from domain.errors import Invalid
from domain.models import AuditEvent, Delivery, Item, User, WebhookEndpoint
from domain.policy import base_event
from domain.recipients import HANDOFF_EVENT, HANDOFF_FAN_OUT, describe
from workflows.starts import signal_item
from workflows.types import AtSignal, ChangeDueSignal, ClaimSignal

log = structlog.get_logger()
router = APIRouter(prefix="/v1/items", tags=["items"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse, "description": "illegal transition, or claimed by someone"},
}


async def item_view(
    uow: UnitOfWork,
    item: Item,
    loaded: items.Policy | None = None,
    *,
    recipients: bool = True,
    names: dict[uuid.UUID | None, str] | None = None,
) -> ItemOut:
    """The item with its plan: on `loaded` when the caller has it, else on the item's pins;
    each rung's recipients unless `recipients=False`; its people's names, read unless
    given."""
    if loaded is None:
        loaded = await items.pinned_policy(uow.session, item)
    now = utcnow()
    plan = (
        await items.plan_item(uow.session, item, loaded, now)
        if recipients
        else items.bare_plan(item, loaded, now)
    )
    if names is None:
        names = await items.people_names(uow.session, item.account_id, [item])
    return view_of(item, loaded, plan, names, await items.stopped_by(uow.session, item))


def view_of(
    item: Item,
    loaded: items.Policy,
    plan: list[items.RungPlan],
    names: dict[uuid.UUID | None, str],
    stop: items.Stop | None,
) -> ItemOut:
    """The item with `plan` on `loaded` (a rung's recipients null where the plan left them
    out)."""
    # The recorded next rung; before the workflow recorded its plan, the first pending one.
    upcoming = next_rung(item)
    pending = [p.rung.name for p in plan if p.rung.status == "pending"]
    rung = upcoming[0] if upcoming else (pending[0] if pending else None)
    notifies = [
        [r.name for r in p.recipients]
        for p in plan
        if item.state == "open" and p.rung.name == rung and p.recipients is not None
    ]
    return ItemOut.of(
        item,
        names,
        policy_version=loaded.row.version,
        calendar_version=loaded.calendar_version.version,
        plan=[RungOut.of(p, loaded.calendar.tz, stop) for p in plan],
        next_notifies=notifies[0] if notifies else None,
    )


def _encode(item: Item, secret: str) -> str:
    """The position after `item`, signed: a cursor this API did not issue is a 400."""
    raw = base64.urlsafe_b64encode(
        json.dumps([item.created_at.isoformat(), str(item.id)]).encode()
    ).decode()
    return f"{raw}.{_sign(raw, secret)}"


def _sign(raw: str, secret: str) -> str:
    return hmac.new(secret.encode(), f"cursor:{raw}".encode(), hashlib.sha256).hexdigest()[:32]


def _decode(cursor: str, secret: str) -> tuple[datetime, uuid.UUID]:
    """Total: any string either decodes to the position this API encoded, or is a 400."""
    try:
        raw, _, signature = cursor.rpartition(".")
        if not hmac.compare_digest(signature.encode(), _sign(raw, secret).encode()):
            raise ValueError("not signed by this API")
        decoded = json.loads(base64.urlsafe_b64decode(raw.encode("ascii")))
        if not (isinstance(decoded, list) and all(isinstance(part, str) for part in decoded)):
            raise ValueError("not a pair of strings")
        created, item_id = decoded
        return limits.check_instant(datetime.fromisoformat(created)), uuid.UUID(item_id)
    except (ValueError, TypeError) as error:  # binascii and Unicode errors are ValueErrors
        raise Invalid("cursor is not one this API returned", field="cursor") from error


@router.get("", response_model=ItemPage, summary="List items, newest first")
async def list_items(
    uow: UowDep,
    _: Viewer,
    settings: SettingsDep,
    state: Literal["open", "paused", "claimed", "resolved", "cancelled"] | None = None,
    kind: Literal["task", "handoff"] | None = None,
    type: str | None = Query(default=None, max_length=64),
    assignee_id: uuid.UUID | None = None,
    claimed_by: uuid.UUID | None = None,
    due_from: Instant | None = None,
    due_to: Instant | None = None,
    q: str | None = Query(
        default=None, min_length=1, max_length=200, description="words in the title, any case"
    ),
    limit: int = Query(default=50, ge=1, le=200),
    cursor: str | None = Query(default=None, min_length=1, max_length=200),
) -> ItemPage:
    query = select(Item).where(Item.account_id == uow.principal.account_id)
    for word in (q or "").split():  # every word, anywhere in the title
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Item.title.ilike(f"%{escaped}%", escape="\\"))
    for column, value in (
        (Item.state, state),
        (Item.kind, kind),
        (Item.item_type, type),
        (Item.assignee_id, assignee_id),
        (Item.claimed_by, claimed_by),
    ):
        if value is not None:
            query = query.where(column == value)
    if due_from is not None:
        query = query.where(Item.due_at >= due_from)
    if due_to is not None:
        query = query.where(Item.due_at < due_to)
    if cursor:
        position = _decode(cursor, settings.jwt_secret)
        query = query.where(tuple_(Item.created_at, Item.id) < tuple_(*position))
    rows = list(
        await uow.session.scalars(
            query.order_by(Item.created_at.desc(), Item.id.desc()).limit(limit + 1)
        )
    )
    page = rows[:limit]
    names = await items.people_names(uow.session, uow.principal.account_id, page)
    return ItemPage(
        items=[ItemOut.of(i, names) for i in page],
        next_cursor=_encode(page[-1], settings.jwt_secret) if len(rows) > limit else None,
    )


@router.get(
    "/{item_id}", response_model=ItemOut, responses=NOT_FOUND, summary="An item and its plan"
)
async def get_item(item_id: uuid.UUID, uow: UowDep, _: Viewer) -> ItemOut:
    """The item with each rung's instant (UTC and calendar-local), its status, and who would
    be notified if it fired now."""
    item = await lifecycle.get_item(uow.session, uow.principal.account_id, item_id)
    return await item_view(uow, item)


@router.patch(
    "/{item_id}",
    response_model=ItemOut,
    responses=CONFLICT,
    summary="Change due, assignee or title",
)
async def patch_item(
    item_id: uuid.UUID, body: ItemPatch, uow: UowDep, principal: Engineer, temporal: TemporalDep
) -> ItemOut:
    account, now = principal.account_id, utcnow()
    item = await lifecycle.get_item(uow.session, account, item_id)
    if body.assignee_id is not None:
        await items.valid_user(uow.session, account, body.assignee_id, "assignee_id")
        item.assignee_id = body.assignee_id
    if body.title is not None:
        item.title = body.title
    if body.due_at is not None:
        item = (
            await lifecycle.change_due(
                uow.session, account, item_id, principal.user_id, now, body.due_at
            )
        ).item
        due = body.due_at
        uow.after_commit(
            lambda: _signal(temporal, item_id, "change_due", ChangeDueSignal(due_at=due))
        )
    await uow.session.flush()
    return await item_view(uow, item)


async def _signal(temporal: Any, item_id: uuid.UUID, name: str, arg: Any) -> None:
    await signal_item(temporal, item_id, name, arg)


def _claim_measured(
    item_type: str, created_at: datetime, claimed_at: datetime
) -> Callable[[], Awaitable[None]]:
    async def measure() -> None:  # committed: the claim counts
        metrics.claimed(item_type, created_at, claimed_at)

    return measure


def _lifecycle_route(verb: str, doc: str) -> None:
    async def act(
        item_id: uuid.UUID, uow: UowDep, principal: Engineer, temporal: TemporalDep
    ) -> ItemOut:
        now = utcnow()
        if verb == "claim":
            done = await lifecycle.claim(
                uow.session, principal.account_id, item_id, principal.user_id, now
            )
            names = await items.people_names(uow.session, principal.account_id, [done.item])
            signal: Any = ClaimSignal(
                user_id=str(principal.user_id), at=now, name=names.get(principal.user_id)
            )
        else:
            done = await lifecycle.transition(
                uow.session, principal.account_id, item_id, principal.user_id, now, verb
            )
            signal = AtSignal(at=now)
        log.info("item.transition", verb=verb, changed=done.changed)
        if done.changed:
            uow.after_commit(lambda: _signal(temporal, item_id, verb, signal))
            if verb == "claim":
                uow.after_commit(_claim_measured(done.item.item_type, done.item.created_at, now))
        return await item_view(uow, done.item)

    act.__name__ = f"{verb}_item"
    act.__doc__ = doc
    router.add_api_route(
        f"/{{item_id}}/{verb}",
        act,
        methods=["POST"],
        response_model=ItemOut,
        responses=CONFLICT,
        summary=doc.split(".")[0],
    )


for _verb, _doc in {
    "claim": "Claim the item. Race-safe: of concurrent claims exactly one wins; the others "
    "get 409 with the winner's id and time. Claiming what you hold is a 200 with no change.",
    "release": "Release a claim. Escalation resumes at the rung matching now.",
    "resolve": "Resolve the item. Its workflow ends; nothing more is sent.",
    "cancel": "Cancel the item. Its workflow ends; nothing more is sent.",
    "pause": "Pause the clock (waiting on the customer). Paused business time does not count.",
    "resume": "Resume the clock. Pending rungs move later by the paused business time.",
}.items():
    _lifecycle_route(_verb, _doc)


@router.post(
    "/{item_id}/replan",
    response_model=ItemOut,
    responses=NOT_FOUND,
    summary="Move to the latest policy and calendar versions",
)
async def replan(
    item_id: uuid.UUID, uow: UowDep, principal: Admin, temporal: TemporalDep
) -> ItemOut:
    """An item keeps the policy version and the calendar version it started with until
    this moves it to the latest of both (`POST /v1/replan` does many at once)."""
    item = await lifecycle.get_item(uow.session, principal.account_id, item_id)
    moved = await domain_replan.replan_item(
        uow.session, principal.account_id, principal.user_id, utcnow(), item_id
    )
    if moved is not None:
        uow.after_commit(lambda: _signal(temporal, item_id, "replan", None))
    return await item_view(uow, item)  # the same object the re-plan locked and moved


@router.get(
    "/{item_id}/audit",
    response_model=list[AuditOut],
    responses=NOT_FOUND,
    summary="The item's timeline",
)
async def item_audit(item_id: uuid.UUID, uow: UowDep, _: Viewer) -> list[AuditOut]:
    await lifecycle.get_item(uow.session, uow.principal.account_id, item_id)
    account_id = uow.principal.account_id
    rows = await uow.session.execute(
        select(AuditEvent, User.name)
        .outerjoin(User, (User.id == AuditEvent.actor_id) & (User.account_id == account_id))
        .where(AuditEvent.item_id == item_id, AuditEvent.account_id == account_id)
        .order_by(AuditEvent.id)
    )
    return [
        AuditOut(
            id=r.id,
            action=r.action,
            tier=r.tier,
            actor_id=r.actor_id,
            actor_name=name,
            data=r.data,
            created_at=r.created_at,
        )
        for r, name in rows
    ]


class NoteIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"text": "Valve replaced; watching."}]}
    )

    text: str = Field(min_length=1, max_length=10_000, description="plain text")


@router.post(
    "/{item_id}/notes",
    status_code=status.HTTP_201_CREATED,
    response_model=AuditOut,
    responses=NOT_FOUND,
    summary="Add a note to the item's timeline",
)
async def add_note(item_id: uuid.UUID, body: NoteIn, uow: UowDep, principal: Engineer) -> AuditOut:
    """Any state, ended items too ("resolved: the valve was replaced"). The note is an
    audit row (`noted`) with you as its author, and every open page hears of it."""
    if not body.text.strip():
        raise Invalid("a note needs some text", field="text")
    note_id = await lifecycle.add_note(
        uow.session, principal.account_id, item_id, principal.user_id, body.text.strip()
    )
    row = await uow.session.get(AuditEvent, note_id)
    names = await uow.session.execute(select(User.name).where(User.id == principal.user_id))
    assert row is not None  # written just above
    return AuditOut(
        id=row.id,
        action=row.action,
        tier=row.tier,
        actor_id=row.actor_id,
        actor_name=names.scalar_one_or_none(),
        data=row.data,
        created_at=row.created_at,
    )


@router.get(
    "/{item_id}/deliveries",
    response_model=list[DeliveryOut],
    responses=NOT_FOUND,
    summary="Every notification and its fate",
)
async def item_deliveries(item_id: uuid.UUID, uow: UowDep, _: Viewer) -> list[DeliveryOut]:
    account_id = uow.principal.account_id
    item = await lifecycle.get_item(uow.session, account_id, item_id)
    chains = _chains(await items.pinned_policy(uow.session, item))
    rows = await uow.session.execute(
        select(Delivery, User, WebhookEndpoint)
        .outerjoin(User, (User.id == Delivery.recipient_id) & (User.account_id == account_id))
        .outerjoin(
            WebhookEndpoint,
            (WebhookEndpoint.id == Delivery.endpoint_id)
            & (WebhookEndpoint.account_id == account_id),
        )
        .where(Delivery.item_id == item_id, Delivery.account_id == account_id)
        .order_by(Delivery.created_at, User.name, WebhookEndpoint.name)
    )
    return [
        DeliveryOut(
            id=d.id,
            channel=d.channel,
            recipient_id=d.recipient_id,
            recipient=PersonOut(id=user.id, name=user.name, email=user.email or "")
            if user
            else None,
            endpoint=EndpointRef(id=hook.id, name=hook.name, deleted=hook.deleted_at is not None)
            if hook
            else None,
            why=_why(chains.get(base_event(d.event_key)[0]), d.resolver_rank),  # repeats too
            event_key=d.event_key,
            status=d.status,
            attempts=d.attempts,
            last_error=d.last_error,
            response_code=d.response_code,
            deferred_until=d.deferred_until,
            sent_at=d.sent_at,
            created_at=d.created_at,
        )
        for d, user, hook in rows
    ]


def _chains(policy: items.Policy) -> dict[str, tuple[str, tuple[str, ...]]]:
    """event key -> (rung, recipient chain) of the pinned policy version, and the escalated
    handoff's fan-out."""
    chains = {
        rung.event_key: (name, rung.recipients)
        for name, rung in policy.rungs.items()
        if rung is not None
    }
    return {**chains, HANDOFF_EVENT: ("handoff", (HANDOFF_FAN_OUT,))}


def _why(chain: tuple[str, tuple[str, ...]] | None, rank: int | None) -> Why | None:
    if chain is None or rank is None or rank >= len(chain[1]):
        return None
    rung, resolvers = chain
    matched, before = resolvers[rank], list(resolvers[:rank])
    summary = describe(matched)
    if before:
        tried = ", then ".join(describe(r) for r in before)
        summary += f" (tried first: {tried}, with nobody valid)"
    return Why(rung=rung, matched=matched, fell_through=before, summary=summary)

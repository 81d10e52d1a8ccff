"""Where work comes in (tasks, handoffs), what is waiting (the queue), and what would
happen (preview)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Response, status
from sqlalchemy import select

from api.auth import ClaimsEngineer, Engineer, Viewer, may, refused
from api.deps import SessionmakerDep, SettingsDep, SingleDep, TemporalDep, UnitOfWork, UowDep
from api.errors import ErrorResponse
from api.routers.items import item_view, view_of
from api.schemas import (
    HandoffCreate,
    ItemOut,
    PreviewOut,
    PreviewRequest,
    RungOut,
    TaskCreate,
    next_rung,
)
from api.tokens import Principal
from db import tenant_session
from domain import items
from domain.clock import utcnow
from domain.models import Item
from logs import bind_item
from workflows.starts import start_item

router = APIRouter(prefix="/v1", tags=["intake"])
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Scoped to your account and this endpoint. A retry with the same key and "
        "the same body (from the same user) answers 201 with the same item, header "
        "`Idempotent-Replayed: true`, and starts no second workflow. The same key with a "
        "different body is a 422 `idempotency_key_reused`.",
    ),
]
REPLAYED = "Idempotent-Replayed"
# ASCII only, spelled out: Python's \w would also match "Ñ", which JSON Schema's does not.
SessionRef = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-]+$")]
BAD_INPUT: dict[int | str, dict[str, Any]] = {400: {"model": ErrorResponse}}


async def _started(
    made: items.Created,
    view: ItemOut,
    response: Response,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> ItemOut:
    """201 with the item, new or replayed (a replay says `Idempotent-Replayed: true`, as
    Stripe's does), once the item is committed: its workflow is started now, so the response
    can say whether it started. The worker stamps `workflow_started_at` when it runs."""
    item = made.item
    if not made.created:
        response.headers[REPLAYED] = "true"
    if item.workflow_started_at is None:
        started = await start_item(
            temporal,
            settings.task_queue,
            item.id,
            item.account_id,
            summary=f"{item.item_type}: {item.title}",
        )
        view.workflow = "started" if started else "pending"
    return view


def _new_view(made: items.Created) -> ItemOut:
    """A new item's answer, with no query: its plan on the policy the create read, without
    the rungs' recipients (GET the item for them)."""
    plan = items.bare_plan(made.item, made.policy, utcnow())
    return view_of(made.item, made.policy, plan, made.names, None)


CREATOR = "engineer"  # the least role that creates items


def _caller(principal: Principal) -> items.Caller:
    return items.Caller(
        account_id=principal.account_id,
        user_id=principal.user_id,
        epoch=principal.epoch,
        roles=may(CREATOR),
    )


@router.post(
    "/tasks",
    response_model=ItemOut,
    status_code=status.HTTP_201_CREATED,
    responses=BAD_INPUT,
    summary="Create a task (starts its escalation workflow)",
)
async def create_task(
    body: TaskCreate,
    response: Response,
    principal: ClaimsEngineer,
    single: SingleDep,
    sessionmaker: SessionmakerDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> ItemOut:
    """Creation is authoritative: the item is committed first, then its workflow is started.
    If Temporal is unreachable the item still exists, reports `workflow: pending`, and the
    reconciler starts the workflow later.

    One statement does the create, its own transaction (`escalator_create_item`): it
    confirms the caller (engineer or above), reads the type's policy, checks the assignee,
    and writes the item, its audit row and its event. The answer's plan leaves out the
    rungs' recipients (GET the item for them)."""
    try:
        async with single.connect() as connection:
            made = await items.create_task(
                connection,
                _caller(principal),
                item_type=body.type,
                title=body.title,
                assignee_id=body.assignee_id,
                due_at=body.due_at,
                idempotency=items.Idempotency.of(
                    idempotency_key, "tasks", principal.user_id, body.model_dump(mode="json")
                ),
            )
    except items.CallerRefused as refusal:
        raise refused(refusal.refusal, CREATOR) from None
    item = made.item
    bind_item(item.id)  # the rest of the request's lines name the new item
    if made.created:
        view = _new_view(made)
    else:  # a replay: the item as it is now
        async with tenant_session(sessionmaker, item.account_id) as session:
            uow = UnitOfWork(session, principal)
            view = await item_view(uow, item, made.policy, recipients=False)
    return await _started(made, view, response, temporal, settings)


@router.post(
    "/sessions/{session_ref}/handoffs",
    response_model=ItemOut,
    status_code=status.HTTP_201_CREATED,
    responses=BAD_INPUT,
    tags=["handoffs"],
    summary="Park or escalate a support session",
)
async def create_handoff(
    session_ref: SessionRef,
    body: HandoffCreate,
    response: Response,
    uow: UowDep,
    principal: Engineer,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> ItemOut:
    """`escalate` notifies every active engineer, admin and owner except you (after the
    commit, from the workflow), then reminds and escalates on the response target. `park` is
    private: nobody is notified and the clock stays stopped."""
    made = await items.create_handoff(
        uow.session,
        _caller(principal),
        session_ref=session_ref,
        intent=body.intent,
        title=body.title,
        notes=body.engineer_notes,
        priority=body.priority,
        snapshot=body.snapshot,
        idempotency=items.Idempotency.of(
            idempotency_key,
            "handoffs",
            principal.user_id,
            {"session_ref": session_ref, **body.model_dump(mode="json")},
        ),
        now=utcnow(),
    )
    bind_item(made.item.id)
    if made.created:
        view = _new_view(made)
    else:
        view = await item_view(uow, made.item, made.policy, recipients=False)
    await uow.commit()
    return await _started(made, view, response, temporal, settings)


@router.get(
    "/sessions/{session_ref}/handoffs",
    response_model=list[ItemOut],
    tags=["handoffs"],
    summary="A session's handoff history, newest first",
)
async def handoff_history(session_ref: SessionRef, uow: UowDep, _: Viewer) -> list[ItemOut]:
    rows = await uow.session.scalars(
        select(Item)
        .where(
            Item.account_id == uow.principal.account_id,
            Item.kind == "handoff",
            Item.session_ref == session_ref,
        )
        .order_by(Item.created_at.desc(), Item.id.desc())
    )
    found = list(rows)
    names = await items.people_names(uow.session, uow.principal.account_id, found)
    return [ItemOut.of(i, names) for i in found]


@router.get("/queue", response_model=list[ItemOut], summary="What needs someone now")
async def queue(uow: UowDep, _: Viewer) -> list[ItemOut]:
    """Open escalated handoffs, parked handoffs, and overdue or escalated tasks, most urgent
    first (highest tier, then longest overdue), with whose each is, who claimed it, and who
    its next rung would notify."""
    rows = await uow.session.execute(items.queue_query(uow.principal.account_id, utcnow()))
    found = [item for item, _ in rows]
    names = await items.people_names(uow.session, uow.principal.account_id, found)
    upcoming = [(item, rung[0]) for item in found if (rung := next_rung(item))]
    notifies = await items.next_recipients(uow.session, upcoming)
    return [ItemOut.of(i, names, next_notifies=notifies.get(i.id)) for i in found]


@router.post(
    "/preview", response_model=PreviewOut, responses=BAD_INPUT, summary="Who would be notified when"
)
async def preview(body: PreviewRequest, uow: UowDep, principal: Viewer) -> PreviewOut:
    """The plan and the recipients per rung for a task that is not created."""
    policy = await items.latest_policy(uow.session, principal.account_id, body.type)
    await items.valid_user(uow.session, principal.account_id, body.assignee_id, "assignee_id")
    loaded = await items.load_policy(uow.session, policy)
    draft = Item(  # never added to the session: nothing is written
        id=uuid.uuid4(),
        account_id=principal.account_id,
        kind="task",
        item_type=body.type,
        title="preview",
        assignee_id=body.assignee_id,
        due_at=body.due_at,
        policy_id=policy.id,
        calendar_version_id=loaded.calendar_version.id,
        pauses=[],
    )
    plan = await items.plan_item(uow.session, draft, loaded, utcnow())
    return PreviewOut(
        type=body.type,
        policy_version=policy.version,
        calendar_tz=loaded.calendar.tz,
        plan=[RungOut.of(p, loaded.calendar.tz) for p in plan],
    )

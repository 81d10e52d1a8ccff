"""Where work comes in (tasks, handoffs), what is waiting (the queue), and what would
happen (preview)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Response, status
from sqlalchemy import select

from api.auth import Engineer, Viewer
from api.deps import SettingsDep, TemporalDep, UnitOfWork, UowDep
from api.errors import ErrorResponse
from api.routers.items import item_view
from api.schemas import (
    HandoffCreate,
    ItemOut,
    PreviewOut,
    PreviewRequest,
    RungOut,
    TaskCreate,
    next_rung,
)
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


async def _created(
    uow: UnitOfWork,
    made: items.Created,
    response: Response,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> ItemOut:
    """201 with the item, new or replayed (a replay says `Idempotent-Replayed: true`, as
    Stripe's does). The lean path: the plan on the policy just read, without the rungs'
    recipients (GET the item for them); commit, then start the workflow, so the response
    can say whether it started. The worker stamps `workflow_started_at` when it runs."""
    item = made.item
    bind_item(item.id)  # the rest of the request's lines name the new item
    view = await item_view(uow, item, made.policy, recipients=False, names=made.names)
    if not made.created:
        response.headers[REPLAYED] = "true"
    if item.workflow_started_at is None:

        async def start() -> None:
            started = await start_item(
                temporal,
                settings.task_queue,
                item.id,
                item.account_id,
                summary=f"{item.item_type}: {item.title}",
            )
            view.workflow = "started" if started else "pending"

        uow.after_commit(start)
    await uow.commit()
    return view


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
    uow: UowDep,
    principal: Engineer,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> ItemOut:
    """Creation is authoritative: the item is committed first, then its workflow is started.
    If Temporal is unreachable the item still exists, reports `workflow: pending`, and the
    reconciler starts the workflow later."""
    made = await items.create_task(
        uow.session,
        account_id=principal.account_id,
        actor_id=principal.user_id,
        item_type=body.type,
        title=body.title,
        assignee_id=body.assignee_id,
        due_at=body.due_at,
        idempotency=items.Idempotency.of(
            idempotency_key, "tasks", principal.user_id, body.model_dump(mode="json")
        ),
    )
    return await _created(uow, made, response, temporal, settings)


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
        account_id=principal.account_id,
        actor_id=principal.user_id,
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
    return await _created(uow, made, response, temporal, settings)


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

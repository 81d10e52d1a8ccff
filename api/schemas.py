"""Request and response bodies. Every request field is bounded here, in the schema, so the
OpenAPI document states what the server accepts (`domain.limits` has the numbers).
Datetimes in requests carry a zone and fall between 1970 and 2200."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from domain import limits
from domain.demo import stable_id
from domain.items import RungPlan, Stop
from domain.models import Item

_EXAMPLE_DUE = "2027-03-05T10:00:00+01:00"
# The demo account's Erin Engineer (`make run`), so examples work when pasted there.
_EXAMPLE_USER = str(stable_id("demo", "user:erin"))


def _rfc3339(value: Any) -> Any:
    """What the schema says: an RFC 3339 string with seconds and a zone. Pydantic would
    otherwise take a JSON number as seconds since 1970, or "10:00" without its seconds."""
    if not isinstance(value, str) or not re.match(limits.INSTANT_PATTERN, value):
        raise ValueError(
            "must be an RFC 3339 date-time string with seconds and a timezone offset, e.g. "
            f"{_EXAMPLE_DUE}; years {limits.EARLIEST.year} to {limits.LATEST.year - 1}"
        )
    return value


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    AfterValidator(limits.check_instant),
    Field(
        description=f"with a zone offset; years {limits.EARLIEST.year} to {limits.LATEST.year - 1}",
        examples=[_EXAMPLE_DUE],
        json_schema_extra={"pattern": limits.INSTANT_PATTERN},
    ),
]
Snapshot = Annotated[
    dict[str, Any],
    AfterValidator(limits.check_snapshot),
    Field(
        description=f"free-form JSON the engineer saw: at most {limits.MAX_JSON_DEPTH} levels "
        f"deep and {limits.SNAPSHOT_LIMIT_BYTES} bytes encoded",
    ),
]


class TaskCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "CAPA",
                    "title": "Pump P-101 leaks",
                    "assignee_id": _EXAMPLE_USER,
                    "due_at": _EXAMPLE_DUE,
                }
            ]
        },
    )

    type: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=500)
    assignee_id: uuid.UUID
    due_at: Instant


class ItemPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"due_at": "2027-03-12T10:00:00+01:00"}]},
    )

    title: str | None = Field(default=None, min_length=1, max_length=500)
    assignee_id: uuid.UUID | None = None
    due_at: Instant | None = None


class HandoffCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "intent": "escalate",
                    "title": "VPN down at ACME",
                    "engineer_notes": "Tried restarting the tunnel; needs network admin.",
                    "priority": "high",
                    "snapshot": {"ticket": "T-1234", "steps": ["restart tunnel"]},
                }
            ]
        },
    )

    intent: Literal["park", "escalate"]
    title: str = Field(default="Support session handoff", min_length=1, max_length=500)
    engineer_notes: str | None = Field(default=None, max_length=10_000)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    snapshot: Snapshot = Field(default_factory=dict)


class PreviewRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"type": "CAPA", "due_at": _EXAMPLE_DUE, "assignee_id": _EXAMPLE_USER}]
        },
    )

    type: str = Field(min_length=1, max_length=64)
    due_at: Instant
    assignee_id: uuid.UUID


class PersonOut(BaseModel):
    id: uuid.UUID
    name: str
    email: str


class StopOut(BaseModel):
    reason: Literal["claimed", "resolved", "cancelled"]
    by: str | None = Field(description="who, by name (null if not on record)")
    at: datetime | None


class RungOut(BaseModel):
    name: str
    tier: int
    status: Literal["pending", "fired", "skipped", "stopped"] = Field(
        description="stopped: it will not fire, because the item was claimed, resolved or "
        "cancelled (`stopped` says by whom and when); a release makes it pending again"
    )
    stopped: StopOut | None = None
    at: datetime = Field(description="when it fires (pending) or fired/was skipped, UTC")
    at_local: str = Field(description="the same instant in the calendar's zone")
    event_key: str
    critical: bool
    recipients: list[PersonOut] | None = Field(
        description="who would be notified if it fired now; null in the create response "
        "(GET the item, or POST /v1/preview, for them)"
    )

    @classmethod
    def of(cls, plan: RungPlan, tz: str, stop: Stop | None = None) -> RungOut:
        from zoneinfo import ZoneInfo

        local = plan.rung.fire_at.astimezone(ZoneInfo(tz))
        stopped = stop is not None and plan.rung.status == "pending"
        return cls(
            name=plan.rung.name,
            tier=plan.rung.tier,
            status="stopped" if stopped else plan.rung.status,
            stopped=StopOut(reason=stop.reason, by=stop.by, at=stop.at)
            if stop is not None and stopped
            else None,
            at=plan.rung.fire_at,
            at_local=f"{local:%Y-%m-%d %H:%M} {tz}",
            event_key=plan.policy.event_key,
            critical=plan.policy.critical,
            recipients=None
            if plan.recipients is None
            else [
                PersonOut(id=uuid.UUID(r.user_id), name=r.name, email=r.email)
                for r in plan.recipients
            ],
        )


class ItemOut(BaseModel):
    id: uuid.UUID
    kind: str
    type: str
    title: str
    state: str
    assignee_id: uuid.UUID | None
    creator_id: uuid.UUID | None
    due_at: datetime | None
    claimed_by: uuid.UUID | None
    claimed_at: datetime | None
    policy_version: int | None = None
    calendar_version: int | None = Field(
        default=None, description="the version of the policy's calendar the item plans on"
    )
    intent: str | None = None
    engineer_notes: str | None = None
    priority: str | None = None
    session_ref: str | None = None
    snapshot: dict[str, Any] | None = None
    created_at: datetime
    workflow: Literal["started", "pending"] = Field(
        description="pending: Temporal was unreachable; the reconciler starts it"
    )
    tier: int | None = Field(
        default=None, description="the highest tier fired (0 remind, 1, 2), null if none"
    )
    claimer_name: str | None = Field(default=None, description="who claimed it, by name")
    assignee_name: str | None = Field(default=None, description="whose it is, by name")
    next_rung: str | None = Field(default=None, description="the next rung, while open")
    next_rung_at: datetime | None = Field(default=None, description="when it fires, UTC")
    next_notifies: list[str] | None = Field(
        default=None,
        description="who the next rung would notify if it fired now, by name (the queue "
        "and the item; null in lists)",
    )
    plan: list[RungOut] | None = None

    @classmethod
    def of(
        cls, item: Item, names: Mapping[uuid.UUID | None, str] | None = None, **extra: Any
    ) -> ItemOut:
        """The one read model: every endpoint that shows an item builds it here, so state,
        claimer and assignee (id and name) and tier agree wherever it is read. `names`: the
        people's names by id (`domain.items.people_names`)."""
        upcoming = next_rung(item)
        names = names or {}
        return cls(
            tier=fired_tier(item),
            claimer_name=names.get(item.claimed_by) if item.claimed_by else None,
            assignee_name=names.get(item.assignee_id) if item.assignee_id else None,
            next_rung=upcoming and upcoming[0],
            next_rung_at=upcoming and upcoming[1],
            id=item.id,
            kind=item.kind,
            type=item.item_type,
            title=item.title,
            state=item.state,
            assignee_id=item.assignee_id,
            creator_id=item.creator_id,
            due_at=item.due_at,
            claimed_by=item.claimed_by,
            claimed_at=item.claimed_at,
            intent=item.intent,
            engineer_notes=item.engineer_notes,
            priority=item.priority,
            session_ref=item.session_ref,
            snapshot=item.snapshot,
            created_at=item.created_at,
            workflow="started" if item.workflow_started_at else "pending",
            **extra,
        )


def next_rung(item: Item) -> tuple[str, datetime] | None:
    """The open item's next planned rung (the plan the workflow recorded), if any."""
    if item.state != "open":
        return None
    for rung in ("remind", "escalate_1", "escalate_2"):
        at = getattr(item, f"{rung}_at")
        done = getattr(item, f"{rung}_fired_at") or getattr(item, f"{rung}_skipped_at")
        if at is not None and done is None:
            return rung, at
    return None


def fired_tier(item: Item) -> int | None:
    for tier, fired_at in (
        (2, item.escalate_2_fired_at),
        (1, item.escalate_1_fired_at),
        (0, item.remind_fired_at),
    ):
        if fired_at is not None:
            return tier
    return None


class ItemPage(BaseModel):
    items: list[ItemOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class AuditOut(BaseModel):
    id: int
    action: str
    tier: int | None
    actor_id: uuid.UUID | None
    actor_name: str | None = Field(default=None, description="who did it, by name")
    data: dict[str, Any]
    created_at: datetime


class Why(BaseModel):
    """Why this person: the rung's recipient chain (of the policy version the item pins),
    which resolver matched, and which came first and found nobody valid."""

    rung: str
    matched: str = Field(examples=["assignee_manager"])
    fell_through: list[str] = Field(examples=[["assignee"]])
    summary: str = Field(
        examples=["the assignee's manager (tried first: the assignee, who had nobody valid)"]
    )


class EndpointRef(BaseModel):
    id: uuid.UUID
    name: str
    deleted: bool = Field(default=False, description="the endpoint was deleted since")


class DeliveryOut(BaseModel):
    """To a person (`recipient_id`, email) or to a webhook endpoint (`endpoint`)."""

    id: uuid.UUID
    channel: str
    recipient_id: uuid.UUID | None = Field(description="null for a webhook delivery")
    recipient: PersonOut | None = Field(default=None, description="who, by name and address")
    endpoint: EndpointRef | None = Field(default=None, description="a webhook's endpoint")
    why: Why | None = Field(
        default=None, description="null for rows no recipient chain produced (handoff fan-out)"
    )
    event_key: str
    status: str
    attempts: int
    last_error: str | None
    response_code: int | None = Field(default=None, description="a webhook's last HTTP status")
    deferred_until: datetime | None
    sent_at: datetime | None
    created_at: datetime


class PreviewOut(BaseModel):
    type: str
    policy_version: int
    calendar_tz: str
    plan: list[RungOut]


class AccountOut(BaseModel):
    id: uuid.UUID
    name: str


class MeOut(BaseModel):
    id: uuid.UUID
    name: str
    email: str | None
    role: str
    timezone: str
    account: AccountOut

"""SQLAlchemy 2 typed models: the source of truth.

Every tenant table carries `account_id` and is guarded by row-level security keyed on
`current_setting('app.account_id')` (see the initial migration). All timestamps are
`timestamptz`. Constraint names follow `NAMING_CONVENTION` so migrations are stable.
"""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

USER_ROLES = ("viewer", "engineer", "admin", "owner")
ITEM_KINDS = ("task", "handoff")
ITEM_STATES = ("open", "paused", "claimed", "resolved", "cancelled")
HANDOFF_INTENTS = ("park", "escalate")
DELIVERY_STATUSES = ("pending", "sending", "sent", "failed", "deferred", "suppressed")
RUNG_NAMES = ("remind", "escalate_1", "escalate_2")
WEBHOOK_FORMATS = ("standard", "slack")
REPLAN_JOB_STATES = ("running", "done", "failed")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _account_fk() -> Mapped[uuid.UUID]:
    return mapped_column(
        UUID(as_uuid=True), ForeignKey("account.id", ondelete="CASCADE"), index=True
    )


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Account(Base):
    __tablename__ = "account"

    id: Mapped[uuid.UUID] = _uuid_pk()
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()


class User(Base):
    __tablename__ = "app_user"
    __table_args__ = (
        UniqueConstraint("account_id", "email"),
        CheckConstraint(_one_of("role", USER_ROLES), name="role"),
        CheckConstraint(
            "(quiet_start IS NULL) = (quiet_end IS NULL)", name="quiet_hours_both_or_neither"
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    account_id: Mapped[uuid.UUID] = _account_fk()
    email: Mapped[str | None] = mapped_column(String(320))
    # An address change asked for and not yet confirmed from the new address (until then
    # every mail and sign-in link goes to `email`).
    pending_email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    manager_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("app_user.id", ondelete="SET NULL"), index=True
    )
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    quiet_start: Mapped[time | None] = mapped_column(Time())
    quiet_end: Mapped[time | None] = mapped_column(Time())
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Only tokens minted at the current epoch are accepted: bumping it revokes the rest.
    token_epoch: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = _created_at()


class Role(Base):
    """A named, per-account role such as `quality_manager` or `top_management`."""

    __tablename__ = "role"
    __table_args__ = (UniqueConstraint("account_id", "key"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    account_id: Mapped[uuid.UUID] = _account_fk()
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()


class RoleMember(Base):
    __tablename__ = "role_member"

    account_id: Mapped[uuid.UUID] = _account_fk()
    role_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("role.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("app_user.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
    created_at: Mapped[datetime] = _created_at()


class BusinessCalendarRow(Base):
    """Stored form of `domain.calendar.BusinessCalendar`; holidays expand from the
    country/subdivision rules of the `holidays` package plus the custom dates."""

    __tablename__ = "business_calendar"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    account_id: Mapped[uuid.UUID] = _account_fk()
    name: Mapped[str] = mapped_column(String(200))
    tz: Mapped[str] = mapped_column(String(64))
    # {"0": [["09:00", "17:00"]], ...}: weekday (0 = Monday) -> local [start, end) intervals.
    hours: Mapped[dict[str, Any]] = mapped_column(JSONB)
    holiday_country: Mapped[str | None] = mapped_column(String(8))
    holiday_subdivision: Mapped[str | None] = mapped_column(String(16))
    # ["2026-12-24", ...]
    custom_holidays: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'"))
    # The newest of its `business_calendar_version` rows; the fields above are that version.
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = _created_at()


class BusinessCalendarVersion(Base):
    """One version of a calendar's working time, never updated: an edit that changes the
    working time adds version max+1, and an item plans on the version it pinned until it is
    replanned (as with policies)."""

    __tablename__ = "business_calendar_version"
    __table_args__ = (
        UniqueConstraint("calendar_id", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    account_id: Mapped[uuid.UUID] = _account_fk()
    calendar_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("business_calendar.id", ondelete="RESTRICT"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    tz: Mapped[str] = mapped_column(String(64))
    hours: Mapped[dict[str, Any]] = mapped_column(JSONB)
    holiday_country: Mapped[str | None] = mapped_column(String(8))
    holiday_subdivision: Mapped[str | None] = mapped_column(String(16))
    custom_holidays: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'"))
    created_at: Mapped[datetime] = _created_at()


class SlaPolicy(Base):
    """One version of the SLA policy of an item type. Rows are never updated: a change is a
    new version, and an item pins the version it started with."""

    __tablename__ = "sla_policy"
    __table_args__ = (
        UniqueConstraint("account_id", "item_type", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    account_id: Mapped[uuid.UUID] = _account_fk()
    item_type: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    calendar_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("business_calendar.id", ondelete="RESTRICT"), index=True
    )
    # For handoffs: the response target that plays the role of `due_at`, e.g.
    # {"business_minutes": 30}. Null for tasks, whose due date is given.
    response_target: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # {"remind": {...} | null, "escalate_1": {...} | null, "escalate_2": {...} | null}; each
    # rung: offset, recipients (resolver chain), channels, event_key, class.
    rungs: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created_at()


class Item(Base):
    __tablename__ = "item"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_scope", "idempotency_key"),
        CheckConstraint(_one_of("kind", ITEM_KINDS), name="kind"),
        CheckConstraint(_one_of("state", ITEM_STATES), name="state"),
        CheckConstraint(f"intent IS NULL OR {_one_of('intent', HANDOFF_INTENTS)}", name="intent"),
        CheckConstraint("(kind = 'handoff') = (intent IS NOT NULL)", name="handoff_has_intent"),
        CheckConstraint("state <> 'claimed' OR claimed_by IS NOT NULL", name="claimed_has_claimer"),
        Index("ix_item_account_id_state_due_at", "account_id", "state", "due_at"),
        Index("ix_item_account_id_session_ref", "account_id", "session_ref"),
        # The reconciler's walk: only the items whose workflow has not applied their version.
        Index(
            "ix_item_lagging",
            "updated_at",
            "id",
            postgresql_where=text("applied_version < version AND workflow_started_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    account_id: Mapped[uuid.UUID] = _account_fk()
    kind: Mapped[str] = mapped_column(String(16))
    item_type: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(500))
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("app_user.id", ondelete="SET NULL"), index=True
    )
    creator_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("app_user.id", ondelete="SET NULL")
    )
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), server_default="open")
    policy_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("sla_policy.id", ondelete="RESTRICT"), index=True
    )
    # The calendar version the item plans on (of its policy's calendar), pinned like the
    # policy version: a calendar edit moves an item only when it is replanned.
    calendar_version_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("business_calendar_version.id", ondelete="RESTRICT"),
        index=True,
    )
    claimed_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("app_user.id", ondelete="SET NULL"), index=True
    )
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Every pause so far, [{"start": iso, "end": iso | null}]: paused business time pushes
    # the rungs later, so the API can plan exactly what the workflow plans.
    pauses: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'"))

    # The planned instant of each rung, and when it fired or was skipped (catch-up).
    remind_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    remind_fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    remind_skipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalate_1_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalate_1_fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalate_1_skipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalate_2_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalate_2_fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalate_2_skipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # Handoff fields (FlowPilot's shape).
    intent: Mapped[str | None] = mapped_column(String(16))
    engineer_notes: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[str | None] = mapped_column(String(16))
    session_ref: Mapped[str | None] = mapped_column(String(200))
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    # A retried create with the same key in the same scope (endpoint) is the same request:
    # `request_fingerprint` (SHA-256 of sender and body) tells a retry from a reuse.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    idempotency_scope: Mapped[str | None] = mapped_column(String(32))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # Bumped by every lifecycle change in its own transaction; `applied_version` is the one
    # the workflow has read back and acted on. A gap is a lost signal: the reconciler nudges.
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    applied_version: Mapped[int] = mapped_column(Integer, server_default="0")
    # Set once the workflow start was accepted; the reconciler starts the rest.
    workflow_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class WebhookEndpoint(Base):
    """An account's webhook receiver (Standard Webhooks). Soft-deleted: its deliveries keep
    pointing at it. `secret` signs every request; after a rotation `previous_secret` signs
    alongside it until `previous_secret_until`, so receivers can switch without a gap."""

    __tablename__ = "webhook_endpoint"
    __table_args__ = (CheckConstraint(_one_of("format", WEBHOOK_FORMATS), name="format"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    account_id: Mapped[uuid.UUID] = _account_fk()
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))  # "whsec_<base64>"
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # fnmatch patterns of event keys, e.g. ["task.*"]; empty: every event.
    event_filter: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'"))
    format: Mapped[str] = mapped_column(String(16), server_default="standard")
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # When the current run of failures began (cleared by any success): disabling waits for
    # a sustained outage, not a burst.
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Switched back on after escalator switched it off: its next success tells the admins.
    recovering: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Delivery(Base):
    """One notification on one channel: the dedup claim and the record in one row. It goes
    to a person (`recipient_id`) or to a webhook endpoint (`endpoint_id`), never both."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("recipient_id", "item_id", "event_key", "channel"),
        CheckConstraint(_one_of("status", DELIVERY_STATUSES), name="status"),
        CheckConstraint(
            "(recipient_id IS NULL) <> (endpoint_id IS NULL)", name="recipient_or_endpoint"
        ),
        # A person's rows are deduplicated by the constraint above (endpoint rows have no
        # recipient, and NULLs never conflict); an endpoint's by this one.
        Index(
            "uq_delivery_endpoint_id_item_id_event_key_channel",
            "endpoint_id",
            "item_id",
            "event_key",
            "channel",
            unique=True,
            postgresql_where=text("endpoint_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    account_id: Mapped[uuid.UUID] = _account_fk()
    # None for a sign-in mail (`auth.sign_in`), the one delivery that is about no item.
    item_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("item.id", ondelete="CASCADE"), index=True
    )
    recipient_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("app_user.id", ondelete="CASCADE")
    )
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("webhook_endpoint.id", ondelete="CASCADE")
    )
    event_key: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    # The matching resolver's place in the rung's chain (of the pinned policy): the "why".
    resolver_rank: Mapped[int | None] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(300))
    # A webhook's last HTTP status (null for email, or when no response came back).
    response_code: Mapped[int | None] = mapped_column(SmallInteger)
    deferred_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who made the transition a lifecycle webhook (`item.claimed@7`) tells of; else null.
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("app_user.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class AuditEvent(Base):
    """Append-only: a trigger rejects UPDATE and DELETE. `idempotency_key` makes retried
    writers record an event once."""

    __tablename__ = "audit_event"
    __table_args__ = (CheckConstraint("tier IS NULL OR tier BETWEEN 0 AND 2", name="tier_range"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = _account_fk()
    item_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("item.id", ondelete="RESTRICT"), index=True
    )
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("app_user.id", ondelete="RESTRICT")
    )
    action: Mapped[str] = mapped_column(String(64))
    tier: Mapped[int | None] = mapped_column(SmallInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    created_at: Mapped[datetime] = _created_at()


class PushEvent(Base):
    """The SSE outbox. The writer runs NOTIFY in the same transaction; API replicas LISTEN
    and fan out. Clients resume by `id` (`Last-Event-ID`)."""

    __tablename__ = "push_event"
    # A resuming stream's page is a range of this index (account, then id order).
    __table_args__ = (Index("ix_push_event_account_id_id", "account_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("account.id", ondelete="CASCADE")
    )
    item_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("item.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    dedup_key: Mapped[str] = mapped_column(String(300), unique=True)
    created_at: Mapped[datetime] = _created_at()


class UsedLink(Base):
    """A sign-in or claim link that was used: the links are signed tokens, and this row
    (its `jti`) is what makes each single-use."""

    __tablename__ = "used_link"

    jti: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    account_id: Mapped[uuid.UUID] = _account_fk()
    purpose: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("app_user.id", ondelete="CASCADE")
    )
    used_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class ReplanJob(Base):
    """A bulk re-plan (`POST /v1/replan`): which active items (of a calendar, a type or
    both), how far it got and what it moved so far. `ReplanWorkflow` (`replan-<id>`) runs
    it a batch at a time in item id order; `cursor` is the last item id done, and the
    counts grow with it in the same transaction."""

    __tablename__ = "replan_job"
    __table_args__ = (CheckConstraint(_one_of("state", REPLAN_JOB_STATES), name="state"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    account_id: Mapped[uuid.UUID] = _account_fk()
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("app_user.id", ondelete="SET NULL")
    )
    calendar_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("business_calendar.id", ondelete="RESTRICT")
    )
    item_type: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), server_default="running")
    matched: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    replanned: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    rungs_moved: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cursor: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = _created_at()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)


TENANT_TABLES = (
    "app_user",
    "role",
    "role_member",
    "business_calendar",
    "business_calendar_version",
    "sla_policy",
    "item",
    "delivery",
    "audit_event",
    "push_event",
    "used_link",
    "webhook_endpoint",
    "replan_job",
)


# Tables with row-level security and no policy at all: only a definer function reads them.
DEFINER_ONLY_TABLES = ("sign_in_request",)


class SignInRequest(Base):
    """One request for a sign-in link: the durable request the worker's
    `SignInMailWorkflow` (`sign-in-<id>`) answers, and the rate limit every API process
    shares (by the address's SHA-256). The address itself is kept only until the request is
    handled. Read and written only through definer functions
    (`escalator_sign_in_request` and the others of migration `c2d3e4f5a6b7`)."""

    __tablename__ = "sign_in_request"
    __table_args__ = (
        Index("ix_sign_in_request_address_hash_requested_at", "address_hash", "requested_at"),
        Index("ix_sign_in_request_requested_at", "requested_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    address_hash: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    address: Mapped[str | None] = mapped_column(String(320))
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

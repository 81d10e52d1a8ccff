"""A delivery row's state machine: every transition of `delivery.status`, named as a verb.

    pending ──attempt──▶ sending ──record──▶ sent | failed | pending (a transient error)
    pending ──attempt──▶ deferred (quiet hours) ──attempt, after them──▶ sending
    sending ──record(later)──▶ pending (not tried: its batch ran out of time)
    pending | sending ──give_up──▶ failed (out of attempts)
    pending | deferred | sending ──suppress_item──▶ suppressed (the item stopped being open)

`sent` and `failed` are final. What SMTP answered is the truth whatever the row says by the
time it is recorded: a claim may have suppressed the row while the mail was in flight (it
went out, or was refused, before the claim committed), and the record says so. Every other
outcome changes a row only while it is still `sending`, so a late record never undoes a
suppression or a concurrent attempt's result.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, case, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit, item_hooks
from domain.models import Delivery
from domain.people import Recipient

DELIVERY: Table = Delivery.__table__  # type: ignore[assignment]
FINAL = ("sent", "failed")
LIVE = ("pending", "deferred", "sending")  # what `suppress_item` ends
UNKNOWN_OUTCOME = (
    "the previous attempt's outcome is unknown (its worker stopped mid-send); sent again "
    "with the same Message-ID"
)
NOT_TRIED = "not tried yet: its batch ran out of time before this mail; sent next"


@dataclass(frozen=True, kw_only=True)
class Key:
    """Which rows: one item's notification (`event_key`) by email to these recipients."""

    account_id: uuid.UUID
    item_id: uuid.UUID
    event_key: str

    def where(self, recipient_ids: Sequence[uuid.UUID]) -> tuple[Any, ...]:
        return (
            DELIVERY.c.account_id == self.account_id,
            DELIVERY.c.item_id == self.item_id,
            DELIVERY.c.event_key == self.event_key,
            DELIVERY.c.channel == "email",
            DELIVERY.c.recipient_id.in_(recipient_ids),
        )

    def row(self, recipient_id: uuid.UUID) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "item_id": self.item_id,
            "recipient_id": recipient_id,
            "event_key": self.event_key,
            "channel": "email",
        }


@dataclass(frozen=True, kw_only=True)
class Result:
    """What one send did for one recipient, as `record` applies it."""

    recipient_id: uuid.UUID
    status: str  # sent | failed | retry | later | suppressed
    sent_at: datetime | None = None
    message_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class Attempted:
    """A mail's row as its attempt left it: what `not_now` and `final_outcome` read."""

    recipient_id: uuid.UUID
    status: str
    message_id: str | None = None
    sent_at: datetime | None = None
    last_error: str | None = None
    deferred_until: datetime | None = None

    @classmethod
    def of(cls, row: Any) -> Attempted:
        """From a delivery row, or its JSON (`escalator_fire_rung`'s `attempted`)."""
        values = row if isinstance(row, dict) else row._mapping
        return cls(
            recipient_id=uuid.UUID(str(values["recipient_id"])),
            status=values["status"],
            message_id=values["message_id"],
            sent_at=_instant(values["sent_at"]),
            last_error=values["last_error"],
            deferred_until=_instant(values["deferred_until"]),
        )


def _instant(value: datetime | str | None) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


_ATTEMPT = text(
    "SELECT * FROM escalator_attempt(:account, :item, :event, :at, :critical, :wanted, :unknown)"
).bindparams(bindparam("wanted", type_=JSONB))


async def attempt(
    session: AsyncSession, key: Key, at: datetime, critical: bool, wanted: Sequence[Recipient]
) -> list[Attempted]:
    """Each recipient's row into its attempt state (created if missing), in one call
    (`escalator_attempt`) that locks the rows in recipient order (two attempts never
    deadlock). A final row stays as it is; a recipient in their quiet hours at `at` is
    `deferred` to their end, unless the notification is `critical`; anyone else is
    `sending` with attempts + 1, and a row that was already `sending` notes the unknown
    outcome of the attempt before (RFC 1047). Returns every row as it now is."""
    if not wanted:
        return []
    params = {
        "account": key.account_id,
        "item": key.item_id,
        "event": key.event_key,
        "at": at,
        "critical": critical,
        "wanted": [
            {
                "id": r.user_id,
                "timezone": r.timezone,
                "quiet_start": r.quiet_start,
                "quiet_end": r.quiet_end,
            }
            for r in wanted
        ],
        "unknown": UNKNOWN_OUTCOME,
    }
    return [Attempted.of(row) for row in (await session.execute(_ATTEMPT, params)).all()]


async def ensure(session: AsyncSession, key: Key, recipient_ids: Sequence[uuid.UUID]) -> None:
    """The recipients' rows, created `pending` if missing (so the record shows whom a
    notification was for, even when it is suppressed before any attempt)."""
    if recipient_ids:
        await session.execute(
            insert(DELIVERY).on_conflict_do_nothing(),
            [key.row(r) for r in sorted(recipient_ids)],
        )


async def rows(
    session: AsyncSession, key: Key, recipient_ids: Sequence[uuid.UUID]
) -> Sequence[Any]:
    """The recipients' rows as they are, locked, in recipient order."""
    return await _locked(session, key, recipient_ids)


async def record(
    session: AsyncSession, key: Key, results: Sequence[Result], tier: int
) -> list[Any]:
    """A batch's outcomes, together, in one executemany UPDATE: `sent` on any row not sent
    yet, `failed` on a row in flight or suppressed meanwhile (SMTP answered before the item
    stopped being open), the rest only on rows still `sending` (see the module's
    docstring). A `failed` row gets its `delivery_failed` audit row. Returns the rows this
    made `failed`."""
    by_id = {r.recipient_id: r for r in results}
    rows = await _locked(session, key, list(by_id))
    changes, failed = [], []
    for row in rows:
        result = by_id[row.recipient_id]
        if result.status == "sent" and row.status != "sent":
            # keep the RFC 1047 note: this row was sent twice
            note = row.last_error if row.last_error == UNKNOWN_OUTCOME else None
            changes.append(
                _change(
                    row,
                    status="sent",
                    sent_at=result.sent_at,
                    message_id=result.message_id,
                    last_error=note,
                )
            )
        elif result.status == "failed" and row.status in ("sending", "suppressed"):
            # What SMTP answered before the item stopped being open is the truth.
            changes.append(_change(row, status="failed", last_error=result.error))
            failed.append(row)
        elif row.status == "sending" and result.status != "sent":
            status, error, attempts = {
                "retry": ("pending", result.error, row.attempts),
                "later": ("pending", NOT_TRIED, max(row.attempts - 1, 0)),
                "suppressed": ("suppressed", result.error, row.attempts),
            }[result.status]
            changes.append(_change(row, status=status, last_error=error, attempts=attempts))
    await _apply(session, changes)
    for row in failed:
        error = by_id[row.recipient_id].error or ""
        await audit.delivery_failed(
            session, row, tier, recipient_id=str(row.recipient_id), error=error
        )
    return failed


async def give_up(
    session: AsyncSession, key: Key, recipient_ids: Sequence[uuid.UUID], error: str, tier: int
) -> list[Any]:
    """Out of attempts: each named row still `pending` or `sending` becomes `failed` with
    the error and its `delivery_failed` audit row (key `<delivery>:failed`, so once). A row
    sent, suppressed, deferred or failed already is left alone. Returns the rows marked."""
    rows = [
        row
        for row in await _locked(session, key, recipient_ids)
        if row.status in ("pending", "sending")
    ]
    await _apply(session, [_change(row, status="failed", last_error=error) for row in rows])
    for row in rows:
        await audit.delivery_failed(
            session, row, tier, recipient_id=str(row.recipient_id), error=error
        )
    return rows


async def suppress_item(
    session: AsyncSession, account_id: uuid.UUID, item_id: uuid.UUID, reason: str
) -> int:
    """The item stopped being open: every row of it, on every channel, still waiting
    (`pending`, `deferred`) or in flight (`sending`) becomes `suppressed` with `reason`, at
    once; except the webhooks that tell of its transitions (`item.claimed@7`), which are
    about exactly that. Returns how many."""
    changed = await session.execute(
        update(DELIVERY)
        .where(
            DELIVERY.c.account_id == account_id,
            DELIVERY.c.item_id == item_id,
            DELIVERY.c.status.in_(LIVE),
            DELIVERY.c.event_key.not_like(f"%{item_hooks.MARK}%"),
        )
        .values(status="suppressed", last_error=reason, updated_at=func.now())
    )
    return int(changed.rowcount or 0)  # type: ignore[attr-defined]


async def _locked(
    session: AsyncSession, key: Key, recipient_ids: Sequence[uuid.UUID]
) -> Sequence[Any]:
    return (
        await session.execute(
            select(DELIVERY)
            .where(*key.where(recipient_ids))
            .order_by(DELIVERY.c.recipient_id)
            .with_for_update()
        )
    ).all()


def _change(row: Any, **values: Any) -> dict[str, Any]:
    """One row's new values, for `_apply`: every column it sets, the rest as they are."""
    return {
        "row_id": row.id,
        "status": values.get("status", row.status),
        "attempts": values.get("attempts", row.attempts),
        "last_error": values.get("last_error", row.last_error),
        "message_id": values.get("message_id", row.message_id),
        "sent_at": values.get("sent_at", row.sent_at),
        "deferred_until": values.get("deferred_until", row.deferred_until),
    }


_APPLY = (
    update(DELIVERY)
    .where(DELIVERY.c.id == bindparam("row_id"))
    .values(
        status=bindparam("status"),
        attempts=bindparam("attempts"),
        last_error=bindparam("last_error"),
        message_id=bindparam("message_id"),
        sent_at=bindparam("sent_at"),
        deferred_until=bindparam("deferred_until"),
        updated_at=func.now(),
    )
)


async def _apply(session: AsyncSession, changes: list[dict[str, Any]]) -> None:
    """Every row's change in one executemany UPDATE."""
    if changes:
        await session.execute(_APPLY, changes)


# ---- an account mail (a sign-in link, an address change): a row of its own, about no item ---


async def attempt_account_mail(
    session: AsyncSession,
    delivery_id: uuid.UUID,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    kind: str,
) -> Any:
    """The account mail's row into `sending` (created if missing, with `kind` as its event;
    attempts + 1; an attempt after one cut off mid-send notes the unknown outcome); a final
    row as it is."""
    upsert = insert(DELIVERY).values(
        id=delivery_id,
        account_id=account_id,
        item_id=None,
        recipient_id=user_id,
        event_key=kind,
        channel="email",
        status="sending",
        attempts=1,
    )
    row = DELIVERY.c
    final = row.status.in_(FINAL)
    return (
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=["id"],
                set_={
                    "status": case((final, row.status), else_=literal("sending")),
                    "attempts": case((final, row.attempts), else_=row.attempts + 1),
                    "last_error": case(
                        (row.status == "sending", literal(UNKNOWN_OUTCOME)), else_=row.last_error
                    ),
                    "updated_at": func.now(),
                },
            ).returning(*DELIVERY.c)
        )
    ).one()


async def record_account_mail(
    session: AsyncSession,
    delivery_id: uuid.UUID,
    *,
    status: str,
    error: str | None = None,
    sent_at: datetime | None = None,
    message_id: str | None = None,
) -> None:
    """The account mail's outcome: `sent` on any row not sent yet; `failed`, `suppressed`
    or `pending` (a transient error) only on a row still pending or in flight."""
    live = DELIVERY.c.status.in_(("pending", "sending"))
    condition = DELIVERY.c.status != "sent" if status == "sent" else live
    await session.execute(
        update(DELIVERY)
        .where(DELIVERY.c.id == delivery_id, condition)
        .values(
            status=status,
            last_error=error,
            sent_at=sent_at,
            message_id=message_id,
            updated_at=func.now(),
        )
    )

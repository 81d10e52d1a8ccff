"""`fire`: every rung, and a handoff's fan-out, fires in one call to Postgres
(`escalator_fire_rung`, one statement in autocommit, so one transaction).

In that call, under the item's row lock: the item is stamped (or, for a handoff's fan-out
and a rung's repeat, only locked) if it is still open; then the rung's audit row (after the
item's `fell_due` row when the rung fires at the instant the item falls due), the
recipients resolved (the handoff's escalator left out), `escalation_undeliverable` audited
if the chain came up empty, a delivery row per email recipient (in its attempt state when
`fire_and_send` sends the mails itself), and the push outbox rows with their NOTIFY
(`item.overdue` first). A claim's UPDATE waits for this lock (or this waits for the claim):
the rung and its push commit before the claim or not at all, so no channel notifies after a
claim commits. The mails then go out under the send guard (`activities.email`), which
re-checks the state.

Python decides the values (keys, audit data, event kinds); the function decides what
needs the database (the item's state, the people, quiet hours, the rows already there).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

import metrics
from activities.mail import MailItem, mail_item
from db import autocommit
from domain import deliveries, lifecycle, recipients
from workflows.types import FireRung, RungFired

# A handoff's fan-out, and a rung's repeat, have no stamp to set: they lock the open item
# as the stamp would.
HANDOFF = "handoff"


class RungActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._engine = autocommit(sessionmaker)

    @activity.defn
    async def fire_rung(self, request: FireRung) -> RungFired:
        """Side effect: one transaction (stamp, audit, deliveries, outbox rows), one call.
        Idempotency keys: the stamp is set once, the audit keys are the rung's (and the due
        instant's), the delivery rows are unique per (recipient, item, event_key, channel),
        and the push's dedup key is `<item>:<event_key>`, so a retry writes nothing twice.
        Writes nothing when the item is no longer open, and reports its state so the
        workflow follows the database."""
        return (await fire(self._engine, request)).rung


@dataclass(frozen=True, kw_only=True)
class Fired:
    rung: RungFired
    item: MailItem | None = None  # what the mails say of the item; None: not open
    # The mails' rows in their attempt state, when the call attempted them (`attempt`).
    attempted: list[deliveries.Attempted] | None = None


_FIRE = text(
    "SELECT * FROM escalator_fire_rung(:account, :item, :at, :stamp, :audits, :chain, :actor,"
    " :undeliverable, :email, :event, :attempt, :critical, :unknown, :events)"
).bindparams(
    bindparam("audits", type_=JSONB),
    bindparam("chain", type_=ARRAY(Text)),
    bindparam("undeliverable", type_=JSONB),
    bindparam("events", type_=JSONB),
)


async def fire(engine: AsyncEngine, request: FireRung, attempt: int | None = None) -> Fired:
    """The rung's one call on `engine` (in autocommit). `attempt`: the most recipients the
    caller mails itself; up to that many, their rows come back in their attempt state
    (`deliveries.attempt`'s rules), and more are left `pending` for `send_emails`."""
    async with engine.connect() as connection:
        try:
            row = (await connection.execute(_FIRE, _params(request, attempt))).one_or_none()
        except DBAPIError as error:
            if "unknown resolver" in str(error.orig):
                raise ValueError(str(error.orig)) from None  # a bad chain, not Postgres
            raise
    if row is None:
        raise ApplicationError(f"item {request.item_id} not found", non_retryable=True)
    if not row.recorded:
        claimer = str(row.claimed_by) if row.claimed_by else None
        unfired = RungFired(recorded=False, state=row.state, claimed_by=claimer, rung=request.rung)
        return Fired(rung=unfired)
    found = recipients.winners(
        [recipients.Found.from_json(person) for person in row.recipients], request.chain
    )
    if request.rung != HANDOFF:
        metrics.rung_fired(request.tier, row.item_type)
    fired = RungFired(
        rung=request.rung,
        recorded=True,
        state=row.state,
        claimed_by=None,
        recipients=list(found.recipients),
        tried=list(found.tried),
    )
    attempted = row.attempted
    return Fired(
        rung=fired,
        item=mail_item(row),
        attempted=None if attempted is None else [deliveries.Attempted.of(a) for a in attempted],
    )


def _params(request: FireRung, attempt: int | None) -> dict[str, Any]:
    """What Python decides of the rung: the keys, the audit rows, the events."""
    item = request.item_id
    audits: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    if request.fell_due is not None:  # audited with the rung, and pushed before it
        due = lifecycle.fell_due(uuid.UUID(item), request.fell_due)
        audits.append({"action": "fell_due", "tier": None, "data": due.data, "key": due.key})
        events.append(lifecycle.overdue_event(uuid.UUID(item), request.fell_due))
    if request.rung != HANDOFF:
        data: dict[str, Any] = {"rung": request.rung, "planned_at": request.planned_at.isoformat()}
        if request.repeat:
            data["repeat"] = request.repeat
        audits.append(
            {
                "action": "rung_repeated" if request.repeat else "rung_fired",
                "tier": request.tier,
                "data": data,
                "key": f"{item}:{request.rung}:repeat:{request.repeat}"
                if request.repeat
                else f"{item}:{request.rung}:fired",
            }
        )
    if "push" in request.channels:
        events.append(
            {
                "kind": request.push_kind,
                "dedup_key": f"{item}:{request.event_key}",
                "data": {
                    "tier": request.tier,
                    "rung": request.rung,
                    "event_key": request.event_key,
                },
                "names": True,  # the function adds `recipients`: the names mailed
            }
        )
    locks_only = request.rung == HANDOFF or request.repeat  # nothing to stamp
    return {
        "account": uuid.UUID(request.account_id),
        "item": uuid.UUID(item),
        "at": request.at,
        "stamp": None if locks_only else request.rung,
        "audits": audits,
        "chain": list(request.chain),
        "actor": uuid.UUID(request.actor_id) if request.actor_id else None,
        "undeliverable": {
            "action": "escalation_undeliverable",
            "tier": request.tier,
            "key": f"{item}:{request.event_key}:undeliverable",
            "data": {"rung": request.rung, "tried": ",".join(request.chain)},
        },
        "email": "email" in request.channels,
        "event": request.event_key,
        "attempt": attempt,
        "critical": request.critical,
        "unknown": deliveries.UNKNOWN_OUTCOME,
        "events": events,
    }

"""The demo account for the dev stack: idempotent, with stable ids so a second run changes
nothing and a printed token keeps working across restarts.

People (manager chain: engineers -> admin Ada -> owner Otto):
- Otto Owner (owner), Ada Admin (admin), Erin and Emil Engineer (engineer), Vera Viewer.
Named roles: quality_manager (Ada), top_management (Otto), qms_owner (Otto).
Calendars: "Berlin office" (Europe/Berlin, Mon-Fri 09:00-17:00, German holidays) and
"Always on" (24x7, no holidays).
Policies on the office calendar: CAPA (remind, escalate_1, escalate_2 at +3 business days),
DOC_ACK (no escalate_2, the seed's carve-out) and `handoff` (30 business minutes response
target). On the 24x7 calendar: DEMO, whose rungs are seconds apart, so a demo item reaches
tier 2 about two minutes after it is created, on any day at any hour.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import time
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.models import (
    Account,
    BusinessCalendarRow,
    BusinessCalendarVersion,
    Role,
    RoleMember,
    SlaPolicy,
    User,
)

_NAMESPACE = uuid.UUID("6f1d7c52-3b9e-4c1a-9e57-0d6f3f7f2a10")


def stable_id(slug: str, name: str) -> uuid.UUID:
    """A stable id per (account slug, thing), so seeding twice inserts nothing new."""
    return uuid.uuid5(_NAMESPACE, f"{slug}:{name}")


def demo_calendar_version(slug: str) -> uuid.UUID:
    """Version 1 of the seeded calendar, which seeded items pin."""
    return stable_id(slug, "calendar:berlin:1")


ACCOUNT_ID = stable_id("demo", "account")
OWNER_ID = stable_id("demo", "user:otto")


@dataclass(frozen=True)
class DemoUser:
    key: str
    name: str
    role: str
    manager: str | None
    quiet: tuple[time, time] | None = None


USERS = (
    DemoUser("otto", "Otto Owner", "owner", None),
    DemoUser("ada", "Ada Admin", "admin", "otto"),
    DemoUser("erin", "Erin Engineer", "engineer", "ada", quiet=(time(19), time(7))),
    DemoUser("emil", "Emil Engineer", "engineer", "ada"),
    DemoUser("vera", "Vera Viewer", "viewer", "ada"),
)
ROLES = {
    "quality_manager": ("Quality Manager", ["ada"]),
    "top_management": ("Top Management", ["otto"]),
    "qms_owner": ("QMS Owner", ["otto"]),
}
WEEKDAYS_9_TO_5 = {str(day): [["09:00", "17:00"]] for day in range(5)}
ALL_WEEK = {str(day): [["00:00", "24:00"]] for day in range(7)}
# The moving demo item: due this long after it is created, so its remind fires 15 s in,
# escalate_1 at 1.5 minutes and escalate_2 at 2.25 minutes.
DEMO_DUE_IN_SECONDS = 45


def rung(
    offset: dict[str, int], recipients: list[str], event_key: str, cls: str = "normal"
) -> dict[str, Any]:
    return {
        "offset": offset,
        "recipients": recipients,
        "channels": ["email", "push"],
        "event_key": event_key,
        "class": cls,
    }


TIER_1_CHAIN = ["assignee_manager", "role:quality_manager"]
TIER_2_CHAIN = ["role:top_management", "role:qms_owner"]
POLICIES: dict[str, dict[str, Any]] = {
    "CAPA": {
        "response_target": None,
        "rungs": {
            "remind": rung({"business_days": 1}, ["assignee"], "task.reminder"),
            "escalate_1": rung({"business_days": 1}, TIER_1_CHAIN, "task.escalated"),
            "escalate_2": rung(
                {"business_days": 3}, TIER_2_CHAIN, "task.escalated_final", "critical"
            ),
        },
    },
    "DOC_ACK": {
        "response_target": None,
        "rungs": {
            "remind": rung({"business_days": 1}, ["assignee"], "task.reminder"),
            "escalate_1": rung({"business_days": 2}, TIER_1_CHAIN, "task.escalated"),
            "escalate_2": None,
        },
    },
    "DEMO": {
        "response_target": None,
        "calendar": "always",
        "rungs": {
            "remind": rung({"business_seconds": 30}, ["assignee"], "task.reminder"),
            "escalate_1": rung({"business_seconds": 45}, TIER_1_CHAIN, "task.escalated"),
            "escalate_2": rung(
                {"business_seconds": 90}, TIER_2_CHAIN, "task.escalated_final", "critical"
            ),
        },
    },
    "handoff": {
        "response_target": {"business_minutes": 30},
        "rungs": {
            "remind": rung(
                {"business_minutes": 0}, ["account_roles:engineer,admin,owner"], "handoff.unclaimed"
            ),
            "escalate_1": rung({"business_minutes": 90}, TIER_1_CHAIN, "handoff.escalated_1"),
            "escalate_2": rung(
                {"business_days": 1}, TIER_2_CHAIN, "handoff.escalated_final", "critical"
            ),
        },
    },
}


async def seed_demo(
    session: AsyncSession, slug: str = "demo", name: str = "Demo GmbH"
) -> uuid.UUID:
    """Insert the account `slug` with its people, roles, calendar and policies if missing.
    Runs as the owner role (RLS does not apply). Tests seed several accounts this way."""

    def demo_id(thing: str) -> uuid.UUID:
        return stable_id(slug, thing)

    account_id = demo_id("account")
    await _insert(session, Account, [{"id": account_id, "slug": slug, "name": name}])
    await _insert(
        session,
        User,
        [
            {
                "id": demo_id(f"user:{u.key}"),
                "account_id": account_id,
                "email": f"{u.key}@{slug}.escalator.test",
                "name": u.name,
                "role": u.role,
                "timezone": "Europe/Berlin",
                "quiet_start": u.quiet[0] if u.quiet else None,
                "quiet_end": u.quiet[1] if u.quiet else None,
            }
            for u in USERS
        ],
    )
    for u in USERS:  # managers after everyone exists: the chain is self-referential
        if u.manager is not None:
            row = await session.get(User, demo_id(f"user:{u.key}"))
            assert row is not None
            row.manager_id = demo_id(f"user:{u.manager}")
    await _insert(
        session,
        Role,
        [
            {"id": demo_id(f"role:{key}"), "account_id": account_id, "key": key, "name": name}
            for key, (name, _) in ROLES.items()
        ],
    )
    await _insert(
        session,
        RoleMember,
        [
            {
                "account_id": account_id,
                "role_id": demo_id(f"role:{key}"),
                "user_id": demo_id(f"user:{member}"),
            }
            for key, (_, members) in ROLES.items()
            for member in members
        ],
    )
    calendars = {
        "berlin": ("Berlin office", _working_time("Europe/Berlin", WEEKDAYS_9_TO_5, holidays=True)),
        "always": ("Always on", _working_time("Europe/Berlin", ALL_WEEK, holidays=False)),
    }
    await _insert(
        session,
        BusinessCalendarRow,
        [
            {"id": demo_id(f"calendar:{key}"), "account_id": account_id, "name": name, **hours}
            for key, (name, hours) in calendars.items()
        ],
    )
    await _insert(
        session,
        BusinessCalendarVersion,
        [
            {
                "id": demo_id(f"calendar:{key}:1"),
                "account_id": account_id,
                "calendar_id": demo_id(f"calendar:{key}"),
                "version": 1,
                **hours,
            }
            for key, (_, hours) in calendars.items()
        ],
    )
    await _insert(
        session,
        SlaPolicy,
        [
            {
                "id": demo_id(f"policy:{item_type}:1"),
                "account_id": account_id,
                "item_type": item_type,
                "version": 1,
                "calendar_id": demo_id(f"calendar:{spec.get('calendar', 'berlin')}"),
                "response_target": spec["response_target"],
                "rungs": spec["rungs"],
            }
            for item_type, spec in POLICIES.items()
        ],
    )
    await session.flush()
    return account_id


def _working_time(tz: str, hours: dict[str, Any], *, holidays: bool) -> dict[str, Any]:
    return {
        "tz": tz,
        "hours": hours,
        "holiday_country": "DE" if holidays else None,
        "holiday_subdivision": "BE" if holidays else None,
        "custom_holidays": ["2026-12-24", "2026-12-31"] if holidays else [],
    }


async def _insert(session: AsyncSession, model: type[Any], rows: list[dict[str, Any]]) -> None:
    await session.execute(insert(model).values(rows).on_conflict_do_nothing())

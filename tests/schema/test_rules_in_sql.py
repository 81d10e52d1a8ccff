"""The rules a rung's one call applies in Postgres, held to what they mean: quiet hours
against a Python oracle on ordinary days, windows that wrap midnight and both DST turns, and
a push event's item summary against `domain.push.summary`, the publishers' other half."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain import push
from domain.models import Item
from tests.support.tenants import Tenant


def quiet_until(at: datetime, tz: str, start: time, end: time) -> datetime | None:
    """The oracle: the end of the local window [start, end) that `at` falls in, which may
    wrap midnight; a repeated wall time ends at its first occurrence (fold=0), a skipped one
    moves forward (through UTC)."""
    if start == end:
        return None
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    if start < end:
        quiet, end_date = start <= wall < end, local.date()
    else:
        quiet = wall >= start or wall < end
        end_date = local.date() + timedelta(days=1) if wall >= start else local.date()
    if not quiet:
        return None
    return datetime.combine(end_date, end, tzinfo=zone).astimezone(UTC)


WINDOWS = [
    ("Europe/Berlin", time(22), time(7)),
    ("Europe/Berlin", time(8), time(12)),
    ("America/New_York", time(0), time(1, 30)),  # ends inside the hour a clock turns back
    ("America/New_York", time(23), time(2, 30)),  # ends inside the hour a clock skips
    ("Asia/Kolkata", time(19, 45), time(6, 15)),
    ("UTC", time(9), time(9)),  # no quiet hours
]
DAYS = [date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 29), date(2026, 10, 25)]
DAYS += [date(2026, 10, 31), date(2026, 11, 1), date(2026, 12, 7)]


@pytest.mark.parametrize(("tz", "start", "end"), WINDOWS)
async def test_quiet_hours_in_postgres_agree_with_the_oracle_every_quarter_hour(
    owner_sessionmaker: async_sessionmaker[AsyncSession], tz: str, start: time, end: time
) -> None:
    instants = [
        datetime.combine(day, time(), tzinfo=UTC) + timedelta(minutes=15 * n)
        for day in DAYS
        for n in range(96)
    ]
    async with owner_sessionmaker() as session:
        found = (
            await session.execute(
                text(
                    "SELECT escalator_quiet_until(at, :tz, :start, :end)"
                    " FROM unnest(CAST(:instants AS timestamptz[])) WITH ORDINALITY AS t (at, n)"
                    " ORDER BY n"
                ),
                {"tz": tz, "start": start, "end": end, "instants": instants},
            )
        ).scalars()
        wrong = [
            (at, got, quiet_until(at, tz, start, end))
            for at, got in zip(instants, found, strict=True)
            if got != quiet_until(at, tz, start, end)
        ]
    assert wrong == []


@pytest.mark.parametrize(
    "due",
    [
        None,
        datetime(2026, 12, 7, 9, tzinfo=UTC),
        datetime(2026, 12, 7, 9, 0, 0, 100_000, tzinfo=UTC),
        datetime(2026, 12, 7, 10, 30, 5, 123_456, tzinfo=ZoneInfo("Asia/Tokyo")),
    ],
)
async def test_a_push_summary_made_in_postgres_is_the_one_python_makes(
    tenant: Tenant, owner_sessionmaker: async_sessionmaker[AsyncSession], due: datetime | None
) -> None:
    item_id = await tenant.add_item(due_at=due, title='Ölfilter "F-3" — ✓')
    async with owner_sessionmaker() as session, session.begin():
        await session.execute(
            update(Item)
            .where(Item.id == item_id)
            .values(state="claimed", claimed_by=tenant.user("emil"), priority="high")
        )
    async with owner_sessionmaker() as session:
        item = (await session.execute(select(Item).where(Item.id == item_id))).scalar_one()
        made = await session.scalar(
            text("SELECT escalator_summary(i) FROM item i WHERE i.id = :id"), {"id": item_id}
        )
    assert made == push.summary(item)

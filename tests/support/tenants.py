"""Committed test tenants. Tests whose code under test opens its own connections (activities,
workflows, the API) cannot see a rolled-back transaction, so each gets a fresh account with a
unique slug instead: isolation by tenant, the same wall the product itself relies on."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.demo import demo_calendar_version, seed_demo, stable_id
from domain.models import (
    TENANT_TABLES,
    AuditEvent,
    BusinessCalendarRow,
    BusinessCalendarVersion,
    Delivery,
    Item,
    PushEvent,
    SlaPolicy,
    User,
)


async def set_working_time(session: AsyncSession, account_id: uuid.UUID, **values: Any) -> None:
    """Rewrite the account's calendars in place, every version included: arranging a test's
    calendar, not an edit (an edit adds a version)."""
    for model in (BusinessCalendarRow, BusinessCalendarVersion):
        await session.execute(update(model).where(model.account_id == account_id).values(**values))


@dataclass
class Tenant:
    slug: str
    account_id: uuid.UUID
    owner: async_sessionmaker[AsyncSession]  # bypasses RLS: for arranging and inspecting

    @classmethod
    async def create(cls, owner: async_sessionmaker[AsyncSession]) -> Tenant:
        slug = f"t{uuid.uuid4().hex[:10]}"
        async with owner() as session, session.begin():
            account_id = await seed_demo(session, slug=slug, name=slug)
            # Hermetic by default: no holiday rules and no quiet hours unless a test adds them.
            await set_working_time(
                session,
                account_id,
                holiday_country=None,
                holiday_subdivision=None,
                custom_holidays=[],
            )
            await session.execute(
                update(User)
                .where(User.account_id == account_id)
                .values(quiet_start=None, quiet_end=None)
            )
        return cls(slug=slug, account_id=account_id, owner=owner)

    async def around_the_clock(self, rungs: dict[str, Any]) -> None:
        """A 24x7 calendar and these CAPA rungs: for runs in real time (seconds apart)."""
        always = {str(day): [["00:00", "24:00"]] for day in range(7)}
        async with self.owner() as session, session.begin():
            await set_working_time(session, self.account_id, hours=always)
            await session.execute(
                update(SlaPolicy)
                .where(SlaPolicy.id == stable_id(self.slug, "policy:CAPA:1"))
                .values(rungs=rungs)
            )

    async def add_engineers(self, count: int) -> list[uuid.UUID]:
        ids = [uuid.uuid4() for _ in range(count)]
        async with self.owner() as session, session.begin():
            session.add_all(
                User(
                    id=user_id,
                    account_id=self.account_id,
                    email=f"eng{n}@{self.slug}.escalator.test",
                    name=f"Engineer {n}",
                    role="engineer",
                )
                for n, user_id in enumerate(ids)
            )
        return ids

    def user(self, key: str) -> uuid.UUID:
        return stable_id(self.slug, f"user:{key}")

    def email(self, key: str) -> str:
        return f"{key}@{self.slug}.escalator.test"

    async def update_user(self, key: str, **values: Any) -> None:
        async with self.owner() as session, session.begin():
            await session.execute(update(User).where(User.id == self.user(key)).values(**values))

    async def add_item(
        self,
        *,
        due_at: datetime | None,
        item_type: str = "CAPA",
        kind: str = "task",
        assignee: str | None = "erin",
        creator: str = "ada",
        calendar: str = "berlin",  # or "always", the 24x7 one
        **values: Any,
    ) -> uuid.UUID:
        async with self.owner() as session, session.begin():
            item = Item(
                account_id=self.account_id,
                kind=kind,
                item_type=item_type,
                title=values.pop("title", f"{item_type} {uuid.uuid4().hex[:6]}"),
                assignee_id=self.user(assignee) if assignee else None,
                creator_id=self.user(creator),
                due_at=due_at,
                policy_id=stable_id(self.slug, f"policy:{item_type}:1"),
                calendar_version_id=stable_id(self.slug, f"calendar:{calendar}:1"),
                **values,
            )
            session.add(item)
        return item.id

    async def add_items(self, dues: list[datetime], item_type: str = "CAPA") -> list[uuid.UUID]:
        """Many tasks for Erin in one INSERT, one per due instant (benchmarks, bursts)."""
        ids = [uuid.uuid4() for _ in dues]
        rows = [
            {
                "id": item_id,
                "account_id": self.account_id,
                "kind": "task",
                "item_type": item_type,
                "title": f"{item_type} {item_id.hex[:6]}",
                "assignee_id": self.user("erin"),
                "creator_id": self.user("ada"),
                "due_at": due,
                "policy_id": stable_id(self.slug, f"policy:{item_type}:1"),
                "calendar_version_id": demo_calendar_version(self.slug),
            }
            for item_id, due in zip(ids, dues, strict=True)
        ]
        async with self.owner() as session, session.begin():
            for chunk in range(0, len(rows), 1000):  # within Postgres's bind-parameter limit
                await session.execute(insert(Item).values(rows[chunk : chunk + 1000]))
        return ids

    async def user_row(self, key: str) -> User:
        async with self.owner() as session:
            user = await session.get(User, self.user(key))
            assert user is not None
            return user

    async def item(self, item_id: uuid.UUID) -> Item:
        async with self.owner() as session:
            item = await session.get(Item, item_id)
            assert item is not None
            return item

    async def audit(self, item_id: uuid.UUID) -> list[tuple[str, int | None]]:
        async with self.owner() as session:
            rows = await session.execute(
                select(AuditEvent.action, AuditEvent.tier)
                .where(AuditEvent.item_id == item_id)
                .order_by(AuditEvent.id)
            )
            return [(action, tier) for action, tier in rows]

    async def deliveries(self, item_id: uuid.UUID) -> list[Delivery]:
        async with self.owner() as session:
            rows = await session.scalars(
                select(Delivery).where(Delivery.item_id == item_id).order_by(Delivery.created_at)
            )
            return list(rows)

    async def footprint(self) -> dict[str, int]:
        """How many rows the account has in every tenant table: equal before and after a
        refused request means nothing was written."""
        async with self.owner() as session:
            counts = {}
            for table in TENANT_TABLES:
                counts[table] = int(
                    await session.scalar(
                        text(f"SELECT count(*) FROM {table} WHERE account_id = :a"),
                        {"a": self.account_id},
                    )
                    or 0
                )
            return counts

    async def push_events(self, item_id: uuid.UUID) -> list[PushEvent]:
        async with self.owner() as session:
            rows = await session.scalars(
                select(PushEvent).where(PushEvent.item_id == item_id).order_by(PushEvent.id)
            )
            return list(rows)

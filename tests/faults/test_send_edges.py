"""The send path at its next edge, against the real processes of the fault suite: a bad
address among good ones, Postgres stopped while a rung's outcomes are recorded, a slow but
working SMTP server, a claim during a slow batch, and the rows an ended item leaves.

Each scenario prints lost, duplicates and timings; what it asserts is the guarantee.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from config import Settings
from db import create_engine, create_sessionmaker, tenant_session
from domain import lifecycle
from domain.clock import utcnow
from domain.demo import rung
from domain.models import Delivery, Role, RoleMember, User
from tests.faults.conftest import Stack, until_mails
from tests.support.tenants import Tenant

pytestmark = pytest.mark.faults
CROWD = {
    "remind": rung({"business_seconds": 0}, ["role:crowd"], "task.reminder"),
    "escalate_1": None,
    "escalate_2": None,
}
LIVE = ("pending", "deferred", "sending")


async def crowd(tenant: Tenant, count: int) -> list[uuid.UUID]:
    """`count` engineers, all in the named role `crowd` that the remind notifies."""
    ids = await tenant.add_engineers(count)
    role_id = uuid.uuid4()
    async with tenant.owner() as session, session.begin():
        session.add(Role(id=role_id, account_id=tenant.account_id, key="crowd", name="Crowd"))
        await session.flush()
        session.add_all(
            RoleMember(account_id=tenant.account_id, role_id=role_id, user_id=user_id)
            for user_id in ids
        )
    await tenant.around_the_clock(CROWD)
    return ids


async def rows(tenant: Tenant, item_id: uuid.UUID) -> list[Delivery]:
    async with tenant.owner() as session:
        return list(await session.scalars(select(Delivery).where(Delivery.item_id == item_id)))


async def settled(
    stack: Stack, tenant: Tenant, item_id: uuid.UUID, done: int, within: float = 180
) -> list[Delivery]:
    """The item's rows once `done` of them are final (sent, failed or suppressed)."""
    deadline = time.monotonic() + within
    while True:
        found = await rows(tenant, item_id)
        final = [d for d in found if d.status in ("sent", "failed", "suppressed")]
        if len(final) >= done or time.monotonic() > deadline:
            await asyncio.sleep(3)  # a late duplicate would show up now
            return await rows(tenant, item_id)
        await asyncio.sleep(0.25)


def mails_to(stack: Stack, item_id: uuid.UUID) -> Counter[str]:
    return Counter(
        m.rcpt_tos[0] for m in stack.sink.mails if m.message["X-Escalator-Item"] == str(item_id)
    )


def report(scenario: str, expected: int, per_address: Counter[str], **timings: float) -> None:
    duplicates = sum(n - 1 for n in per_address.values() if n > 1)
    lost = expected - len(per_address)
    spent = ", ".join(f"{name} {value:.1f} s" for name, value in timings.items())
    print(  # noqa: T201  (the suite's output is these lines)
        f"\n[faults] {scenario}: expected {expected}, lost {lost}, duplicates {duplicates}"
        + (f", {spent}" if spent else "")
    )


async def test_one_bad_address_among_ten(stack: Stack) -> None:
    """A recipient whose address cannot be encoded (stored before addresses were checked):
    the other nine get exactly one mail each, the bad one is `failed` with the reason."""
    tenant = await stack.tenant()
    ids = await crowd(tenant, 10)
    async with tenant.owner() as session, session.begin():
        await session.execute(update(User).where(User.id == ids[0]).values(email="jürgen@x.test"))
    started = time.monotonic()
    [item_id] = await stack.items_due(tenant, 1, utcnow())
    found = await settled(stack, tenant, item_id, done=10)
    sent = mails_to(stack, item_id)
    report("one bad address among 10", 9, sent, all_final=time.monotonic() - started)
    assert len(sent) == 9
    assert set(sent.values()) == {1}
    bad = next(d for d in found if d.recipient_id == ids[0])
    assert bad.status == "failed"
    assert "jürgen@x.test" in (bad.last_error or "")
    assert sorted(d.status for d in found) == ["failed"] + ["sent"] * 9


async def test_postgres_stopped_while_a_batch_is_recorded(stack: Stack) -> None:
    """Thirty recipients, one answering 550; Postgres stops while the mails are in flight
    and comes back 10 s later: nobody gets a second mail, and the rows end true."""
    tenant = await stack.tenant()
    ids = await crowd(tenant, 30)
    refused = f"eng0@{tenant.slug}.escalator.test"
    stack.sink.reject(refused)
    stack.sink.delay = 0.5
    [item_id] = await stack.items_due(tenant, 1, utcnow())
    await until_mails(stack, 1)
    stack.postgres.stop()
    await asyncio.sleep(10)
    stack.postgres.start()
    back = time.monotonic()
    found = await settled(stack, tenant, item_id, done=30)
    sent = mails_to(stack, item_id)
    report(
        "Postgres stopped while 30 outcomes are recorded", 29, sent, settled=time.monotonic() - back
    )
    assert set(sent.values()) == {1}  # 0 duplicates
    assert len(sent) == 29
    by_id = {d.recipient_id: d for d in found}
    assert by_id[ids[0]].status == "failed"
    assert sorted(d.status for d in found) == ["failed"] + ["sent"] * 29


@pytest.mark.parametrize("count", [25, 100])
async def test_a_slow_but_working_smtp_server(stack: Stack, count: int) -> None:
    """3 s a mail: every recipient gets exactly one, on the first attempt."""
    tenant = await stack.tenant()
    await crowd(tenant, count)
    stack.sink.delay = 3.0
    started = time.monotonic()
    [item_id] = await stack.items_due(tenant, 1, utcnow())
    found = await settled(stack, tenant, item_id, done=count, within=400)
    sent = mails_to(stack, item_id)
    report(f"SMTP 3 s a mail, {count} recipients", count, sent, all_sent=time.monotonic() - started)
    assert len(sent) == count
    assert set(sent.values()) == {1}
    assert {(d.status, d.attempts) for d in found} == {("sent", 1)}


async def test_a_claim_during_a_slow_batch(stack: Stack) -> None:
    """A hundred recipients at 3 s a mail; Emil claims once mails are going out. The claim
    waits for the mails in flight only, and no mail is accepted after it committed; the
    rows of the mails it stopped are `suppressed` at once."""
    tenant = await stack.tenant()
    await crowd(tenant, 100)
    stack.sink.delay = 3.0
    [item_id] = await stack.items_due(tenant, 1, utcnow())
    await until_mails(stack, 8)
    engine = create_engine(Settings(database_url=stack.url))
    asked = time.monotonic()
    async with tenant_session(create_sessionmaker(engine), tenant.account_id) as session:
        await lifecycle.claim(session, tenant.account_id, item_id, tenant.user("emil"), utcnow())
    answered_wall, answered = time.time(), time.monotonic()
    await engine.dispose()
    await asyncio.sleep(8)  # anything still going out would arrive now
    late = [m for m in stack.sink.mails if m.received_wall > answered_wall]
    found = await rows(tenant, item_id)
    statuses = Counter(d.status for d in found)
    sent = mails_to(stack, item_id)
    print(  # noqa: T201
        f"\n[faults] claim during a 100-recipient batch at 3 s a mail: answered in "
        f"{answered - asked:.2f} s, {len(sent)} mails before it, {len(late)} after; "
        f"rows {dict(statuses)}"
    )
    assert late == []
    assert answered - asked < 3.5  # at most the mails in flight (3 s), never the batch
    assert set(sent.values()) == {1}
    assert statuses["sent"] == len(sent)
    assert not any(d.status in LIVE for d in found)


async def test_no_row_stays_live_after_an_item_ends(stack: Stack) -> None:
    """Each of three items has a recipient in quiet hours (`deferred`) and one whose server
    answers 451 (`pending`, retried): after a claim, a resolve and a cancel, none of their
    rows is left `pending`, `deferred` or `sending`."""
    tenant = await stack.tenant()
    quiet, _failing = await crowd(tenant, 2)
    local = utcnow()
    async with tenant.owner() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == quiet)
            .values(
                timezone="UTC",
                quiet_start=(local - timedelta(hours=1)).time().replace(second=0, microsecond=0),
                quiet_end=(local + timedelta(hours=1)).time().replace(second=0, microsecond=0),
            )
        )
    stack.sink.reject(f"eng1@{tenant.slug}.escalator.test", "451 4.3.0 try again later")
    items = await stack.items_due(tenant, 3, utcnow())
    for item_id in items:
        deadline = time.monotonic() + 60
        while sorted(d.status for d in await rows(tenant, item_id)) != ["deferred", "pending"]:
            assert time.monotonic() < deadline, await rows(tenant, item_id)
            await asyncio.sleep(0.25)
    engine = create_engine(Settings(database_url=stack.url))
    sessionmaker = create_sessionmaker(engine)
    for item_id, verb in zip(items, ("claim", "resolve", "cancel"), strict=True):
        async with tenant_session(sessionmaker, tenant.account_id) as session:
            if verb == "claim":
                await lifecycle.claim(
                    session, tenant.account_id, item_id, tenant.user("emil"), utcnow()
                )
            else:
                await lifecycle.transition(
                    session, tenant.account_id, item_id, tenant.user("ada"), utcnow(), verb
                )
    await engine.dispose()
    left = {i: sorted(d.status for d in await rows(tenant, i)) for i in items}
    print(f"\n[faults] rows after claim, resolve and cancel: {left}")  # noqa: T201
    assert all(statuses == ["suppressed", "suppressed"] for statuses in left.values())

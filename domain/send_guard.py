"""The guard between a slow send and the transitions that end an item's notifications.

A send that can take long (a webhook POST waits up to its timeout on a receiver someone
else runs) must not hold the item's row lock: that would stall the next rung's stamp, and
with it the mails, for as long as the receiver dawdles. It takes a *shared* advisory lock
on the item instead, for its transaction, and re-reads the item's state after taking it.
Every transition that takes an item out of `open` (claim, resolve, cancel, pause) takes
the same lock *exclusively* before its UPDATE. So a transition waits for the sends in
flight, and a send that starts after a transition committed sees it and sends nothing:
no webhook goes out after a claim, while rungs and mails never wait for a receiver.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# The advisory lock space's class for this guard (two-key form; push ordering uses the
# one-key form, which never collides with it).
GUARD_CLASS = 7201
_EXCLUSIVE = text("SELECT pg_advisory_xact_lock(:guard, hashtext(:item))")
_SENDING_STATE = text("SELECT escalator_send_guard(:item, :account)")
_SHARED = text("SELECT pg_advisory_xact_lock_shared(:guard, hashtext(:item))")


async def transitioning(session: AsyncSession, item_id: uuid.UUID) -> None:
    """Wait for the item's sends in flight; later ones will see this transaction's change."""
    await session.execute(_EXCLUSIVE, {"guard": GUARD_CLASS, "item": str(item_id)})


async def sending(session: AsyncSession, item_id: uuid.UUID) -> None:
    """Hold off the item's transitions until this transaction ends; read the item after."""
    await session.execute(_SHARED, {"guard": GUARD_CLASS, "item": str(item_id)})


async def sending_state(
    session: AsyncSession, item_id: uuid.UUID, account_id: uuid.UUID
) -> str | None:
    """`sending`, then the item's state (None: no such item), in one round trip: the
    `escalator_send_guard` function pins the transaction to `account_id` (as
    `db.set_tenant`), takes the shared guard and reads the state under a snapshot taken
    after it. First in a transaction of its own, which then needs no `set_tenant`."""
    state: str | None = await session.scalar(
        _SENDING_STATE, {"item": item_id, "account": account_id}
    )
    return state

"""The guard between a slow send and the transitions that end an item's notifications.

A send that can take long (a webhook POST waits up to its timeout on a receiver someone
else runs) must not hold the item's row lock: that would stall the next rung's stamp, and
with it the mails, for as long as the receiver dawdles. It takes a *shared* advisory lock
on the item instead, for its transaction, and re-reads the item's state after taking it.
Every transition that takes an item out of `open` (claim, resolve, cancel, pause) takes
the same lock *exclusively* before its UPDATE. So a transition waits for the sends in
flight, and a send that starts after a transition committed sees it and sends nothing:
no webhook goes out after a claim, while rungs and mails never wait for a receiver.

A mail holds the guard at session level instead (`held`), on a connection in autocommit:
two calls around its SMTP commands and no transaction of its own.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from domain.deliveries import UNKNOWN_OUTCOME

# The advisory lock space's class for this guard (two-key form; push ordering uses the
# one-key form, which never collides with it).
GUARD_CLASS = 7201
_EXCLUSIVE = text("SELECT pg_advisory_xact_lock(:guard, hashtext(:item))")
_HOLD = text("SELECT escalator_send_hold(:item, :account)")
_RELEASE = text("SELECT pg_advisory_unlock_shared(:guard, hashtext(:item))")
_SENT = text(
    "SELECT escalator_send_sent(:item, :account, :recipient, :event, :sent_at, :message_id,"
    " :unknown)"
)
_SHARED = text("SELECT pg_advisory_xact_lock_shared(:guard, hashtext(:item))")


async def transitioning(session: AsyncSession, item_id: uuid.UUID) -> None:
    """Wait for the item's sends in flight; later ones will see this transaction's change."""
    await session.execute(_EXCLUSIVE, {"guard": GUARD_CLASS, "item": str(item_id)})


async def sending(session: AsyncSession, item_id: uuid.UUID) -> None:
    """Hold off the item's transitions until this transaction ends; read the item after."""
    await session.execute(_SHARED, {"guard": GUARD_CLASS, "item": str(item_id)})


class Held:
    """The send guard one mail holds (`held`): the item's state read after taking it."""

    def __init__(self, connection: AsyncConnection, item_id: uuid.UUID, account: uuid.UUID):
        self._connection, self._item, self._account = connection, item_id, account
        self.state: str | None = None
        self.released = False

    async def release(self) -> None:
        """Let the guard go: the item's transitions may go ahead."""
        await self._connection.execute(_RELEASE, {"guard": GUARD_CLASS, "item": str(self._item)})
        self.released = True

    async def release_sent(
        self, event_key: str, recipient_id: uuid.UUID, sent_at: datetime, message_id: str
    ) -> None:
        """The mail's `sent` on its delivery row, then let the guard go, in one call."""
        params = {
            "item": self._item,
            "account": self._account,
            "recipient": recipient_id,
            "event": event_key,
            "sent_at": sent_at,
            "message_id": message_id,
            "unknown": UNKNOWN_OUTCOME,
        }
        await self._connection.execute(_SENT, params)
        self.released = True


@contextlib.asynccontextmanager
async def held(
    engine: AsyncEngine, item_id: uuid.UUID, account_id: uuid.UUID
) -> AsyncIterator[Held]:
    """The item's send guard at session level, on a connection of `engine` in autocommit,
    with the item's state (None: no such item) read after taking it: one call
    (`escalator_send_hold`, which pins the account), and the guard already let go unless
    the item is open. Leave it with `Held.release` or `Held.release_sent`; a guard that was
    not let go (an error, a cancelled send) closes the connection instead, which lets go of
    it whatever state the connection is in."""
    async with engine.connect() as connection:
        guard = Held(connection, item_id, account_id)
        try:
            guard.state = await connection.scalar(_HOLD, {"item": item_id, "account": account_id})
            guard.released = guard.state != "open"
            yield guard
        finally:
            if not guard.released:
                await connection.invalidate()

"""Webhook endpoints: an account's receivers of Standard Webhooks, and what the sender needs.

Like every service these flush and never commit, scope every query to the caller's account
(RLS is the second wall), and check everything before writing. A deleted endpoint is gone
for the API (404, left out of lists) but stays in the table, so the deliveries made to it
still name it.

Secrets are `whsec_<base64 of 32 random bytes>` (what Standard Webhooks libraries expect),
shown once on creation and once per rotation. A rotation keeps the old secret signing next
to the new one for `ROTATION_GRACE`; rotating again inside that window drops the oldest.
Admin writes are audited as account-level rows (no item), without secrets (nor URL paths).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit, destinations, item_hooks
from domain.errors import Conflict, Invalid, NotFound
from domain.item_hooks import matches as matches
from domain.items import pinned_policy
from domain.lifecycle import get_item
from domain.models import WEBHOOK_FORMATS, Delivery, WebhookEndpoint
from domain.planning import RUNG_TIERS

ROTATION_GRACE = timedelta(hours=24)
BY_ADMIN = "disabled by an admin"
MAX_URL = 2000
# The statuses after which a delivery is never attempted again.
FINAL = ("sent", "failed", "suppressed")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host, at most `MAX_URL` characters; else `Invalid`
    with the reason."""
    if len(url) > MAX_URL:
        raise Invalid(f"url is longer than {MAX_URL} characters", field="url")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise Invalid("url must not contain spaces or control characters", field="url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port out of range or not a number)
    except ValueError as error:
        raise Invalid(f"url is not a valid URL: {error}", field="url") from error
    if parts.scheme.lower() not in ("http", "https"):
        raise Invalid("url must start with http:// or https://", field="url")
    if not parts.hostname:
        raise Invalid("url must name a host", field="url")
    return url


def signing_secrets(endpoint: Any, now: datetime) -> list[str]:
    """The secrets that sign a request sent at `now`: the current one, plus the previous
    one during its grace period (Standard Webhooks sends the signatures space-separated)."""
    found = [endpoint.secret]
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and now < until:
        found.append(endpoint.previous_secret)
    return found


@dataclass(frozen=True, kw_only=True)
class LastDelivery:
    status: str
    response_code: int | None
    at: datetime


async def get_endpoint(
    session: AsyncSession, account_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    """The endpoint unless it is deleted or another account's (both 404)."""
    endpoint = await session.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.account_id == account_id,
            WebhookEndpoint.deleted_at.is_(None),
        )
    )
    if endpoint is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return endpoint


async def list_endpoints(session: AsyncSession, account_id: uuid.UUID) -> list[WebhookEndpoint]:
    return list(
        await session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.account_id == account_id, WebhookEndpoint.deleted_at.is_(None))
            .order_by(WebhookEndpoint.name, WebhookEndpoint.id)
        )
    )


async def last_deliveries(
    session: AsyncSession, account_id: uuid.UUID, endpoint_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, LastDelivery]:
    """Each endpoint's most recently changed delivery, in one query (DISTINCT ON)."""
    if not endpoint_ids:
        return {}
    rows = await session.execute(
        select(Delivery.endpoint_id, Delivery.status, Delivery.response_code, Delivery.updated_at)
        .where(Delivery.account_id == account_id, Delivery.endpoint_id.in_(endpoint_ids))
        .order_by(Delivery.endpoint_id, Delivery.updated_at.desc())
        .ext(distinct_on(Delivery.endpoint_id))
    )
    return {
        r.endpoint_id: LastDelivery(status=r.status, response_code=r.response_code, at=r.updated_at)
        for r in rows
    }


async def create_endpoint(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    actor_id: uuid.UUID,
    values: Mapping[str, Any],
    allow_private: bool = False,
) -> WebhookEndpoint:
    """`values`: name, url, event_filter, format. The new secret is on the returned row.
    Without `allow_private`, a URL whose host is not public is refused."""
    await _check_destination(values, allow_private)
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        account_id=account_id,
        secret=new_secret(),
        enabled=True,
        consecutive_failures=0,
        event_filter=[],
        format="standard",
    )
    _apply(endpoint, values)
    session.add(endpoint)
    await session.flush()
    await _audit(session, endpoint, actor_id, "webhook_created", _described(endpoint))
    return endpoint


async def update_endpoint(
    session: AsyncSession,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    actor_id: uuid.UUID,
    changes: Mapping[str, Any],
    now: datetime,
    allow_private: bool = True,
) -> WebhookEndpoint:
    """`changes`: any of name, url, event_filter, format, enabled. Re-enabling clears the
    disable (reason, time, failure count) and, after escalator's own switch-off, has the
    next success tell the admins (`recovering`); disabling records who did it."""
    endpoint = await get_endpoint(session, account_id, endpoint_id)
    await _check_destination(changes, allow_private)
    _apply(endpoint, changes)
    if "enabled" in changes and changes["enabled"] != endpoint.enabled:
        endpoint.enabled = bool(changes["enabled"])
        if endpoint.enabled:
            endpoint.recovering = endpoint.disabled_reason not in (None, BY_ADMIN)
            endpoint.disabled_at, endpoint.disabled_reason = None, None
            endpoint.consecutive_failures, endpoint.failing_since = 0, None
        else:
            endpoint.disabled_at, endpoint.disabled_reason = now, BY_ADMIN
            endpoint.recovering = False
    endpoint.updated_at = now  # set, not left to onupdate: the answer shows it
    await session.flush()
    data = {k: v for k, v in changes.items() if k in ("name", "event_filter", "format")}
    if "url" in changes:
        data["url"] = _origin(endpoint.url)
    if "enabled" in changes:
        data["enabled"] = bool(changes["enabled"])
    await _audit(session, endpoint, actor_id, "webhook_updated", data)
    return endpoint


async def rotate_secret(
    session: AsyncSession,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    actor_id: uuid.UUID,
    now: datetime,
) -> WebhookEndpoint:
    """A new secret; the current one keeps signing beside it until `now + ROTATION_GRACE`."""
    endpoint = await get_endpoint(session, account_id, endpoint_id)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = now + ROTATION_GRACE
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    await session.flush()
    until = endpoint.previous_secret_until.isoformat()
    await _audit(session, endpoint, actor_id, "webhook_secret_rotated", {"old_valid_until": until})
    return endpoint


async def delete_endpoint(
    session: AsyncSession,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    actor_id: uuid.UUID,
    now: datetime,
) -> None:
    """Soft delete: it receives nothing more and is gone from the API; its deliveries stay."""
    endpoint = await get_endpoint(session, account_id, endpoint_id)
    endpoint.deleted_at = endpoint.updated_at = now
    await session.flush()
    await _audit(session, endpoint, actor_id, "webhook_deleted", {})


async def endpoint_deliveries(
    session: AsyncSession, account_id: uuid.UUID, endpoint_id: uuid.UUID, limit: int
) -> list[Delivery]:
    """The endpoint's latest deliveries, newest first."""
    endpoint = await get_endpoint(session, account_id, endpoint_id)
    return list(
        await session.scalars(
            select(Delivery)
            .where(Delivery.account_id == account_id, Delivery.endpoint_id == endpoint.id)
            .order_by(Delivery.created_at.desc(), Delivery.id)
            .limit(limit)
        )
    )


async def _check_destination(values: Mapping[str, Any], allow_private: bool) -> None:
    if "url" in values and not allow_private:
        await destinations.refuse_private(check_url(values["url"]))


def _apply(endpoint: WebhookEndpoint, values: Mapping[str, Any]) -> None:
    if "name" in values:
        endpoint.name = values["name"]
    if "url" in values:
        endpoint.url = check_url(values["url"])
    if "event_filter" in values:
        endpoint.event_filter = list(dict.fromkeys(values["event_filter"]))  # no duplicates
    if "format" in values:
        if values["format"] not in WEBHOOK_FORMATS:
            raise Invalid(f"format must be one of {', '.join(WEBHOOK_FORMATS)}", field="format")
        endpoint.format = values["format"]


def _origin(url: str) -> str:
    """The URL as the audit trail keeps it: scheme and host only. Paths often carry a
    credential (a Slack incoming-webhook URL is one), and audit rows are forever."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}"


def _described(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "name": endpoint.name,
        "url": _origin(endpoint.url),
        "event_filter": endpoint.event_filter,
        "format": endpoint.format,
    }


async def _audit(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    actor_id: uuid.UUID,
    action: str,
    data: dict[str, Any],
) -> None:
    """An account-level audit row (no item) naming the endpoint; never its secret."""
    await audit.record(
        session,
        account_id=endpoint.account_id,
        item_id=None,
        actor_id=actor_id,
        action=action,
        key=f"{endpoint.id}:{action}:{uuid.uuid4()}",  # every admin write is its own event
        data={"endpoint_id": str(endpoint.id), "endpoint_name": endpoint.name, **data},
    )


@dataclass(frozen=True, kw_only=True)
class Resend:
    """A delivery made `pending` again, and what its POST needs."""

    delivery_id: uuid.UUID
    item_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_key: str
    rung: str
    tier: int


async def resend(
    session: AsyncSession,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
    *,
    actor_id: uuid.UUID,
) -> Resend:
    """A `failed` or `suppressed` delivery to an enabled endpoint, about an item still
    open, made `pending` again (audited `delivery_resent` with its actor); the caller
    starts its POST after the commit. Anything else is a 409 that says why."""
    endpoint = await get_endpoint(session, account_id, endpoint_id)
    row = await session.scalar(
        select(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.account_id == account_id,
            Delivery.endpoint_id == endpoint.id,
        )
        .with_for_update()
    )
    if row is None or row.item_id is None:
        raise NotFound(f"delivery {delivery_id} of webhook endpoint {endpoint_id} not found")
    if row.status not in ("failed", "suppressed"):
        raise Conflict(
            f"only a failed or suppressed delivery is sent again; this one is {row.status}"
        )
    if not endpoint.enabled:
        raise Conflict("the endpoint is disabled: enable it first, then send again")
    item = await get_item(session, account_id, row.item_id)
    lifecycle = item_hooks.is_lifecycle(row.event_key)  # tells of a transition: any state
    if item.state != "open" and not lifecycle:
        raise Conflict(f"the item is {item.state}: there is nothing to tell its receiver now")
    event = item_hooks.event_name(row.event_key)
    policy = await pinned_policy(session, item)
    rung = next((n for n, r in policy.rungs.items() if r and r.event_key == event), None)
    row.status, row.last_error = "pending", None
    await audit.record(
        session,
        account_id=account_id,
        item_id=item.id,
        action="delivery_resent",
        actor_id=actor_id,
        key=f"{row.id}:resent:{uuid.uuid4()}",
        data={"endpoint": endpoint.name, "event_key": row.event_key},
    )
    await session.flush()
    return Resend(
        delivery_id=row.id,
        item_id=item.id,
        endpoint_id=endpoint.id,
        event_key=row.event_key,
        rung=rung or (event.removeprefix("item.") if lifecycle else "handoff"),
        tier=RUNG_TIERS[rung] if rung else 0,
    )

"""What a webhook says, how it is signed (Standard Webhooks), and how it is sent.

Two bodies: `standard` ({"type", "timestamp", "data"}, as Standard Webhooks recommends) and
`slack` (an incoming-webhook message: fallback `text` plus `blocks`). Bodies are serialised
once, compactly, and the signature covers exactly those bytes. A POST never follows a
redirect and never reads the answer's body: the status code is the whole answer.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import structlog
from standardwebhooks.webhooks import Webhook

from domain import item_hooks
from domain.destinations import Pinned
from domain.policy import base_event
from workflows.webhook_types import SendWebhook

log = structlog.get_logger()

TRANSIENT = (408, 429)  # with every 5xx and every failure to get an answer: retried
MAX_RETRY_AFTER = timedelta(hours=1)
RUNG_LABELS = {
    "remind": "Reminder",
    "escalate_1": "Escalation, tier 1",
    "escalate_2": "Escalation, tier 2",
}


@dataclass(frozen=True, kw_only=True)
class Person:
    id: str
    name: str
    status: str | None = None  # a notified person's: their mail's delivery status

    def json(self) -> dict[str, str]:
        found = {"id": self.id, "name": self.name}
        return found if self.status is None else {**found, "status": self.status}


@dataclass(frozen=True, kw_only=True)
class People:
    """Who an event is about: a rung's `notified` people, a transition's actor (`by`)."""

    notified: list[Person] = field(default_factory=list)
    by: Person | None = None


@dataclass(frozen=True, kw_only=True)
class HookItem:
    """What a webhook may say about its item."""

    id: str
    kind: str
    item_type: str
    title: str
    due_at: datetime | None
    zone: str = "UTC"  # the pinned calendar's: Slack shows the due instant in it
    assignee_id: str | None = None
    assignee_name: str | None = None
    state: str = "open"
    people: People = field(default_factory=People)


def body(fmt: str, request: SendWebhook, item: HookItem, url: str) -> bytes:
    """The request body in the endpoint's format, as the bytes that are signed and sent."""
    payload = slack(request, item, url) if fmt == "slack" else standard(request, item, url)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def standard(request: SendWebhook, item: HookItem, url: str) -> dict[str, Any]:
    """`data` has the item (with its state now and its assignee) and, for a rung, the rung,
    its tier and the people its mails went to (`notified`); for a transition
    (`item.claimed`), who made it (`by`)."""
    _, repeat = base_event(request.event_key)
    about: dict[str, Any]
    if item_hooks.is_lifecycle(request.event_key):
        by = item.people.by
        about = {"by": by.json() if by else None}
    else:
        about = {
            **({"repeat": repeat} if repeat else {}),  # the rung's nth repeat: still unclaimed
            "rung": request.rung,
            "tier": request.tier,
            "notified": [p.json() for p in item.people.notified],
        }
    return {
        "type": item_hooks.event_name(request.event_key),
        "timestamp": request.at.isoformat(),
        "data": {
            "id": item.id,
            "kind": item.kind,
            "item_type": item.item_type,
            "title": item.title,
            "state": item.state,
            "due_at": item.due_at.isoformat() if item.due_at else None,
            "assignee": None
            if item.assignee_id is None
            else {"id": item.assignee_id, "name": item.assignee_name},
            **about,
            "url": url,
        },
    }


def slack(request: SendWebhook, item: HookItem, url: str) -> dict[str, Any]:
    label = RUNG_LABELS.get(request.rung, request.rung)
    context = f"`{request.event_key}` · {request.rung} (tier {request.tier})"
    if item_hooks.is_lifecycle(request.event_key):
        by = item.people.by
        label = request.rung.replace("_", " ").capitalize() + (
            f" by {_escape(by.name)}" if by else ""
        )
        context = f"`{item_hooks.event_name(request.event_key)}` · now {item.state}"
    due = (
        item.due_at.astimezone(ZoneInfo(item.zone)).strftime("%a %d %b %Y %H:%M %Z")
        if item.due_at
        else "no due date"
    )
    title = _escape(item.title)
    return {
        "text": f"{label}: {title}",  # the notification's fallback text
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*{label}*: <{url}|{title}>\n{_escape(item.item_type)} · due {due}",
                },
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": context,
                    }
                ],
            },
        ],
    }


def headers(msg_id: str, at: datetime, payload: bytes, secrets: list[str]) -> dict[str, str]:
    """Standard Webhooks headers: one `v1,` signature per secret, space-separated (during
    a rotation the receiver may hold either secret)."""
    signature = " ".join(Webhook(secret).sign(msg_id, at, payload) for secret in secrets)
    return {
        "content-type": "application/json",
        "user-agent": "escalator-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


@dataclass(frozen=True, kw_only=True)
class Answer:
    """One POST's result: a status code, or the reason no answer came."""

    code: int | None
    error: str
    retry_after: timedelta | None = None  # a 429/503's Retry-After, for the next retry
    refused: bool = False  # never sent: the destination is not allowed (no retry)

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300

    @property
    def transient(self) -> bool:
        """Worth retrying: no answer at all, a 5xx, 408 or 429."""
        if self.refused:
            return False
        return self.code is None or self.code >= 500 or self.code in TRANSIENT


async def post(
    url: str,
    content: bytes,
    headers: dict[str, str],
    *,
    within: float,
    transport: httpx.AsyncBaseTransport | None = None,
    pinned: Pinned | None = None,
) -> Answer:
    """The POST, answered within `within` seconds in all (a server dripping bytes too).
    `pinned`: connect to that checked address, the URL's host kept for TLS (SNI and the
    certificate's name) and the `Host` header. What went wrong is said coarsely (no
    answer, connection failed, HTTP status): the detail goes to the worker's log only."""
    target = httpx.URL(url)
    extensions: dict[str, Any] = {}
    if pinned is not None:
        headers = {**headers, "Host": target.netloc.decode("ascii")}
        if target.scheme == "https":
            extensions["sni_hostname"] = pinned.host
        target = target.copy_with(host=pinned.address)
    try:
        async with (
            asyncio.timeout(within),
            httpx.AsyncClient(
                timeout=within, follow_redirects=False, transport=transport
            ) as client,
            client.stream(
                "POST", target, content=content, headers=headers, extensions=extensions
            ) as response,
        ):
            code = response.status_code
            return Answer(
                code=code,
                error=f"HTTP {code} {response.reason_phrase}".strip(),
                retry_after=_retry_after(response),
            )
    except (TimeoutError, httpx.TimeoutException):
        return Answer(code=None, error=f"no answer within {within:g} s")
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as error:
        log.warning("webhook.connection_failed", error=f"{type(error).__name__}: {error}")
        return Answer(code=None, error="connection failed")


def _retry_after(response: httpx.Response) -> timedelta | None:
    """A 429/503's Retry-After in seconds (capped)."""
    value = response.headers.get("retry-after", "")
    if response.status_code not in (429, 503) or not value.isdigit():
        return None
    return min(timedelta(seconds=int(value)), MAX_RETRY_AFTER)


def _escape(text: str) -> str:
    """Slack's three control characters in mrkdwn text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

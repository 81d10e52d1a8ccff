"""Messages between the workflow and the webhook activities (`activities/webhook.py`).

As in `workflows.types`: frozen, keyword-only dataclasses, JSON-friendly fields, and every
field added later gets a default so old histories still decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class PlanWebhooks:
    """One rung's webhook fan-out: a `pending` row per matching endpoint."""

    item_id: str
    account_id: str
    event_key: str
    rung: str
    tier: int


@dataclass(frozen=True, kw_only=True)
class SendWebhook:
    """One POST to one endpoint. `at` is the workflow's now: the event's timestamp in the
    payload (the same on every retry, so the body is too)."""

    item_id: str
    account_id: str
    endpoint_id: str
    event_key: str
    rung: str
    tier: int
    at: datetime


@dataclass(frozen=True, kw_only=True)
class WebhookOutcome:
    """What became of one endpoint's delivery. Never `pending`: a transient failure is
    raised (retryable) after its attempt is recorded."""

    status: str  # sent | failed | suppressed
    response_code: int | None = None
    sent_at: datetime | None = None
    error: str | None = None  # why failed or suppressed
    attempts: int = 0
    endpoint_disabled: bool = False  # this attempt disabled the endpoint (410, N failures)
    endpoint_recovered: bool = False  # this attempt was the first to reach it after that


@dataclass(frozen=True, kw_only=True)
class EndpointNews:
    """The account's admins are to hear of an endpoint: `webhook.disabled` (escalator
    switched it off) or `webhook.recovered` (it works again)."""

    account_id: str
    endpoint_id: str
    kind: str


@dataclass(frozen=True, kw_only=True)
class WebhookFailure:
    """A delivery whose retries ran out: recorded `failed` (unless already final)."""

    item_id: str
    account_id: str
    endpoint_id: str
    event_key: str
    error: str
    tier: int | None = None  # the rung's tier, for the audit row

"""Webhook endpoint request and response bodies.

Shape is checked here (422); whether the URL is a usable http(s) URL with a host is checked
by `domain.webhooks` (400, with the reason). The secret appears only in `WebhookSecretOut`,
the answer to a create and to a rotation.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from api.admin_schemas import Name
from domain.models import Delivery, WebhookEndpoint
from domain.webhooks import MAX_URL, LastDelivery

URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\s]+"


def _http_url(value: str) -> str:
    if not re.match(URL_PATTERN, value):
        raise ValueError("must be an http:// or https:// URL that names a host")
    return value


Url = Annotated[
    str,
    AfterValidator(_http_url),
    Field(
        min_length=1,
        max_length=MAX_URL,
        description="http:// or https://, with a host",
        json_schema_extra={"pattern": URL_PATTERN},
        examples=["https://hooks.example.com/escalator"],
    ),
]
# fnmatch patterns over event keys (`[a-z0-9_.]`): `*`, `?` and `[...]` sets.
EventPattern = Annotated[
    str, Field(pattern=r"^[a-z0-9_.*?\[\]!-]{1,100}$", examples=["task.*", "handoff.escalated"])
]
EventFilter = Annotated[
    list[EventPattern],
    Field(
        max_length=50,
        description="event-key patterns (fnmatch: `task.*`); empty: every event",
    ),
]
Format = Literal["standard", "slack"]
_FORMAT_DOC = "`standard` (Standard Webhooks JSON) or `slack` (a Slack incoming-webhook body)"


def _no_default(schema: JsonDict) -> None:
    schema.pop("default", None)


# A field that may be left out but not sent as null: its schema shows no null default.
_ABSENT: Any = Field(default=None, json_schema_extra=_no_default)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # `"enabled": 0` is a mistake, not false
        json_schema_extra={
            "examples": [
                {
                    "name": "Ops on-call",
                    "url": "https://hooks.example.com/escalator",
                    "event_filter": ["task.*"],
                    "format": "standard",
                }
            ]
        },
    )

    name: Name
    url: Url
    event_filter: EventFilter = Field(default_factory=list)
    format: Format = Field(default="standard", description=_FORMAT_DOC)


class WebhookPatch(BaseModel):
    """Only the fields sent change. `enabled: true` on a disabled endpoint clears the
    disable and its failure count."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # `"enabled": 0` is a mistake, not false
        json_schema_extra={"examples": [{"enabled": True}, {"event_filter": ["task.escalated"]}]},
    )

    name: Name | SkipJsonSchema[None] = _ABSENT
    url: Url | SkipJsonSchema[None] = _ABSENT
    event_filter: EventFilter | SkipJsonSchema[None] = _ABSENT
    format: Format | SkipJsonSchema[None] = _ABSENT
    enabled: bool | SkipJsonSchema[None] = _ABSENT

    @model_validator(mode="after")
    def _no_nulls(self) -> WebhookPatch:
        nulls = [k for k in self.model_fields_set if getattr(self, k) is None]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} cannot be null")
        return self


class LastDeliveryOut(BaseModel):
    status: str
    response_code: int | None
    at: datetime


class WebhookOut(BaseModel):
    id: uuid.UUID
    name: str
    url: str
    event_filter: list[str]
    format: str
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None = Field(
        description='why it stopped receiving: "410 Gone", "10 consecutive failures", an admin'
    )
    consecutive_failures: int
    failing_since: datetime | None = Field(
        default=None, description="when its current run of failures began (null: none)"
    )
    previous_secret_valid_until: datetime | None = Field(
        description="after a rotation: until when the old secret still signs, beside the new"
    )
    last_delivery: LastDeliveryOut | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(
        cls,
        endpoint: WebhookEndpoint,
        last: LastDelivery | None = None,
        now: datetime | None = None,
    ) -> WebhookOut:
        until = endpoint.previous_secret_until
        return cls(
            id=endpoint.id,
            name=endpoint.name,
            url=endpoint.url,
            event_filter=endpoint.event_filter,
            format=endpoint.format,
            enabled=endpoint.enabled,
            disabled_at=endpoint.disabled_at,
            disabled_reason=endpoint.disabled_reason,
            consecutive_failures=endpoint.consecutive_failures,
            failing_since=endpoint.failing_since,
            previous_secret_valid_until=until if until and (now is None or until > now) else None,
            last_delivery=None
            if last is None
            else LastDeliveryOut(status=last.status, response_code=last.response_code, at=last.at),
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class WebhookSecretOut(WebhookOut):
    secret: str = Field(
        description="`whsec_<base64>`: verify signatures with it. Shown only now; store it."
    )

    @classmethod
    def with_secret(cls, endpoint: WebhookEndpoint, now: datetime) -> WebhookSecretOut:
        return cls(**WebhookOut.of(endpoint, now=now).model_dump(), secret=endpoint.secret)


class WebhookDeliveryOut(BaseModel):
    id: uuid.UUID = Field(description="also the `webhook-id` header the receiver saw")
    item_id: uuid.UUID
    event_key: str
    status: str
    attempts: int
    response_code: int | None
    last_error: str | None
    sent_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Delivery) -> WebhookDeliveryOut:
        return cls(
            id=row.id,
            item_id=row.item_id,
            event_key=row.event_key,
            status=row.status,
            attempts=row.attempts,
            response_code=row.response_code,
            last_error=row.last_error,
            sent_at=row.sent_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

"""Who a notification goes to, as the workflow carries it: pure data (no database), so the
workflow's message types can hold it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Recipient:
    user_id: str
    email: str
    name: str
    timezone: str
    quiet_start: str | None = None  # "HH:MM" local; None = no quiet hours
    quiet_end: str | None = None

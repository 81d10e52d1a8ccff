"""Quiet hours: a `normal` notification inside a recipient's quiet window waits for its end."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Quiet(Protocol):
    """A recipient's quiet window ("HH:MM" local, either None: none) and zone."""

    @property
    def timezone(self) -> str: ...
    @property
    def quiet_start(self) -> str | None: ...
    @property
    def quiet_end(self) -> str | None: ...


def quiet_until_of(recipient: Quiet, at: datetime) -> datetime | None:
    """`quiet_until` for a recipient as the workflow carries one."""
    start = time.fromisoformat(recipient.quiet_start) if recipient.quiet_start else None
    end = time.fromisoformat(recipient.quiet_end) if recipient.quiet_end else None
    return quiet_until(at, recipient.timezone, start, end)


def quiet_until(at: datetime, tz: str, start: time | None, end: time | None) -> datetime | None:
    """The end of the quiet window `at` falls in, or `None` when `at` is not quiet.

    The window is local wall time `[start, end)` in the recipient's zone and may wrap past
    midnight (22:00-07:00). `start == end` means no quiet hours.
    """
    if at.utcoffset() is None:
        raise ValueError("quiet_until needs an aware datetime")
    if start is None or end is None or start == end:
        return None
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    if start < end:
        quiet = start <= wall < end
        end_date = local.date()
    else:  # wraps midnight
        quiet = wall >= start or wall < end
        end_date = local.date() + timedelta(days=1) if wall >= start else local.date()
    if not quiet:
        return None
    # fold=0 and a round trip through UTC: a wall time that DST skips moves forward.
    return datetime.combine(end_date, end, tzinfo=zone).astimezone(ZoneInfo("UTC"))

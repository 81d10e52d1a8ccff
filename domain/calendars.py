"""Stored calendars to `BusinessCalendar`s, with holiday rules expanded to plain dates."""

from __future__ import annotations

import json
import uuid
from functools import lru_cache

from sqlalchemy import Select, select

from domain.calendar import BusinessCalendar
from domain.holidays_expand import build_calendar
from domain.models import BusinessCalendarRow, BusinessCalendarVersion

WORKING_TIME = ("tz", "hours", "holiday_country", "holiday_subdivision", "custom_holidays")


def versions_query(
    account_id: uuid.UUID, calendar_id: uuid.UUID
) -> Select[BusinessCalendarVersion]:
    """A calendar's versions, newest first."""
    return (
        select(BusinessCalendarVersion)
        .where(
            BusinessCalendarVersion.account_id == account_id,
            BusinessCalendarVersion.calendar_id == calendar_id,
        )
        .order_by(BusinessCalendarVersion.version.desc())
    )


def calendar_from_row(row: BusinessCalendarRow | BusinessCalendarVersion) -> BusinessCalendar:
    return _build(
        row.tz,
        json.dumps(row.hours, sort_keys=True),
        row.holiday_country,
        row.holiday_subdivision,
        tuple(row.custom_holidays),
    )


# Expanding seventeen years of holiday rules costs milliseconds; a calendar is the same
# value for the same stored fields, so build each once per process.
@lru_cache(maxsize=256)
def _build(
    tz: str, hours: str, country: str | None, subdivision: str | None, custom: tuple[str, ...]
) -> BusinessCalendar:
    # from_dict validates the stored JSON (hours, custom dates) with the calendar's messages.
    stored = BusinessCalendar.from_dict({"tz": tz, "hours": json.loads(hours), "holidays": custom})
    return build_calendar(
        tz, stored.hours, country=country, subdivision=subdivision, custom=stored.holidays
    )

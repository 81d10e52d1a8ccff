"""Stored calendars to `BusinessCalendar`s, with holiday rules expanded to plain dates."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from functools import lru_cache

from sqlalchemy import Select, select

from domain.calendar import BusinessCalendar
from domain.calendar_preview import WorkingDay, preview_days
from domain.holidays_expand import build_calendar, holiday_names
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


def preview(row: BusinessCalendarRow, now: datetime, days: int) -> list[WorkingDay]:
    """The calendar as stored, day by day for `days` local dates from today in its zone."""
    cal = calendar_from_row(row)
    first = now.astimezone(cal.zone).date()
    years = range(first.year, (first + timedelta(days=days)).year + 1)
    country, subdivision = row.holiday_country, row.holiday_subdivision
    names = holiday_names(country, subdivision, years) if country else {}
    custom = {date.fromisoformat(day) for day in row.custom_holidays}
    return preview_days(cal, first, days, holiday_names=names, custom=custom)


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

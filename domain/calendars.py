"""Stored calendars to `BusinessCalendar`s, with holiday rules expanded to plain dates."""

from __future__ import annotations

from domain.calendar import BusinessCalendar
from domain.holidays_expand import build_calendar
from domain.models import BusinessCalendarRow


def calendar_from_row(row: BusinessCalendarRow) -> BusinessCalendar:
    # from_dict validates the stored JSON (hours, custom dates) with the calendar's messages.
    stored = BusinessCalendar.from_dict(
        {"tz": row.tz, "hours": row.hours, "holidays": row.custom_holidays}
    )
    return build_calendar(
        row.tz,
        stored.hours,
        country=row.holiday_country,
        subdivision=row.holiday_subdivision,
        custom=stored.holidays,
    )

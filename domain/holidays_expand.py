"""Build a BusinessCalendar from country/subdivision holiday rules plus custom dates.

This is the one module that imports the `holidays` package. The calendar maths only ever sees
the expanded set of dates, so a workflow receives a plain, JSON-safe calendar and never
evaluates holiday rules itself (rules change between package releases; a replay must not).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import holidays as holiday_rules

from domain.calendar import BusinessCalendar, HoursSpec

# Rules are expanded for a fixed window rather than "around now" so that building the same
# calendar twice gives the same value. Dates outside the window count as ordinary days.
DEFAULT_YEARS = range(2024, 2041)


def build_calendar(
    tz: str,
    hours: HoursSpec,
    country: str | None = None,
    subdivision: str | None = None,
    custom: Iterable[date] = (),
    years: Iterable[int] = DEFAULT_YEARS,
) -> BusinessCalendar:
    """Expand `country`/`subdivision` holidays (e.g. "DE"/"BE") for `years`, add `custom`."""
    dates = set(custom)
    if country is None:
        if subdivision is not None:
            raise ValueError(f"subdivision {subdivision!r} given without a country")
    else:
        dates |= expand_holidays(country, subdivision, years)
    return BusinessCalendar(tz=tz, hours=hours, holidays=dates)


def expand_holidays(country: str, subdivision: str | None, years: Iterable[int]) -> set[date]:
    return set(holiday_names(country, subdivision, years))


def holiday_names(country: str, subdivision: str | None, years: Iterable[int]) -> dict[date, str]:
    """Each holiday of `country`/`subdivision` in `years`, with its name in English
    ("Christmas Day"; several on one date are joined by "; ")."""
    supported: dict[str, list[str]] = holiday_rules.list_supported_countries()
    if country not in supported:
        raise ValueError(f"unknown holiday country {country!r} (use an ISO code like 'DE')")
    if subdivision is not None and subdivision not in supported[country]:
        known = ", ".join(supported[country]) or "none"
        raise ValueError(
            f"unknown subdivision {subdivision!r} for {country} (known: {known})",
        )
    try:
        rules = holiday_rules.country_holidays(
            country, subdiv=subdivision, years=list(years), language="en_US"
        )
    except NotImplementedError as exc:  # the package's own "not available" signal
        raise ValueError(str(exc)) from exc
    return dict(rules.items())

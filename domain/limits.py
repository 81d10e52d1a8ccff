"""The bounds every input is held to, in one place, so the API's schemas, the domain checks
and the docs all say the same thing.

They exist because each unbounded value once became a 500: a 256-deep JSON snapshot that
could be stored but not read back, a due date in year 1 or 9999 that the calendar maths
overflowed on, an offset of 10**30 business days.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

# Instants (due dates, filters) and dates must fall in these years, read in the offset the
# caller wrote them in (so a JSON Schema pattern on the text can say exactly the same).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
YEAR_PATTERN = r"^(19[7-9][0-9]|2[01][0-9][0-9])-"
# An instant as the API takes it: RFC 3339 with seconds and a zone, in the years above.
INSTANT_PATTERN = (
    r"^(19[7-9][0-9]|2[01][0-9][0-9])-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)

# Free-form JSON (a handoff's snapshot): nesting depth and encoded size.
MAX_JSON_DEPTH = 32
SNAPSHOT_LIMIT_BYTES = 64 * 1024

# The largest offset a policy rung or response target may name, in each unit: a year.
MAX_OFFSET = {
    "business_days": 366,
    "business_hours": 366 * 24,
    "business_minutes": 366 * 24 * 60,
    "business_seconds": 366 * 24 * 60 * 60,
}


def check_instant(value: datetime) -> datetime:
    """`value` if it carries a zone and lies in [EARLIEST, LATEST); ValueError otherwise."""
    if value.utcoffset() is None:
        raise ValueError("needs a timezone offset, e.g. 2026-11-27T10:00:00+01:00")
    check_year(value.year)
    return value


def check_year(year: int) -> None:
    if not EARLIEST.year <= year < LATEST.year:
        raise ValueError(f"the year must be {EARLIEST.year} to {LATEST.year - 1}, got {year}")


def json_depth(value: Any) -> int:
    """How deeply `value` nests objects and arrays (a scalar is 0), without recursion, so
    a hostile document cannot exhaust the stack while being measured."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        current, depth = pending.pop()
        if isinstance(current, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth  # deep enough to refuse; no need to measure the rest
            children = current.values() if isinstance(current, dict) else current
            pending.extend((child, depth) for child in children)
    return deepest


def check_snapshot(value: dict[str, Any]) -> dict[str, Any]:
    depth = json_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > SNAPSHOT_LIMIT_BYTES:
        raise ValueError(f"is {size} bytes encoded; the limit is {SNAPSHOT_LIMIT_BYTES}")
    return value

"""GET /v1/calendars/{id}/preview: a calendar's working time day by day from today in its
zone, as it is after the latest edit; any role reads it; 1 to 31 days."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.clock import utcnow
from domain.demo import WEEKDAYS_9_TO_5, stable_id
from tests.api.conftest import Api
from tests.support.errors import error
from tests.support.tenants import Tenant

# Fourteen hours ahead of UTC: its today is often not UTC's.
KIRITIMATI = "Pacific/Kiritimati"


def today(tz: str) -> date:
    return utcnow().astimezone(ZoneInfo(tz)).date()


def expected_day(day: date, custom: set[date]) -> dict[str, Any]:
    if day in custom:
        return {"date": day.isoformat(), "hours": [], "off": "custom", "reason": "custom holiday"}
    if day.weekday() >= 5:
        return {"date": day.isoformat(), "hours": [], "off": "weekend", "reason": "weekend"}
    return {"date": day.isoformat(), "hours": [["09:00", "17:00"]], "off": None, "reason": None}


async def test_two_weeks_from_today_in_the_calendars_zone(
    api_without_temporal: Api, tenant: Tenant
) -> None:
    api = api_without_temporal
    ada = api.headers(tenant, "ada")
    first = today(KIRITIMATI)
    custom = {first + timedelta(days=2), first + timedelta(days=9)}
    body = {
        "name": "Line Islands",
        "tz": KIRITIMATI,
        "hours": WEEKDAYS_9_TO_5,
        "custom_holidays": sorted(d.isoformat() for d in custom),
    }
    created = await api.client.post("/v1/calendars", json=body, headers=ada)
    assert created.status_code == 201, created.text
    calendar_id = created.json()["id"]

    vera = api.headers(tenant, "vera")  # a viewer reads it, as every other calendar GET
    answered = await api.client.get(f"/v1/calendars/{calendar_id}/preview", headers=vera)
    assert answered.status_code == 200, answered.text
    preview = answered.json()
    assert (preview["calendar_id"], preview["version"], preview["tz"]) == (
        calendar_id,
        1,
        KIRITIMATI,
    )
    assert preview["days"] == [expected_day(first + timedelta(days=n), custom) for n in range(14)]

    # An edit shows at once: the preview is of the newest version.
    changed = {**body, "hours": {"5": [["10:00", "14:00"]]}, "custom_holidays": []}
    replaced = await api.client.put(f"/v1/calendars/{calendar_id}", json=changed, headers=ada)
    assert replaced.status_code == 200, replaced.text
    after = (
        await api.client.get(f"/v1/calendars/{calendar_id}/preview?days=7", headers=vera)
    ).json()
    assert after["version"] == 2
    assert [d["hours"] for d in after["days"]] == [
        [["10:00", "14:00"]] if (first + timedelta(days=n)).weekday() == 5 else [] for n in range(7)
    ]
    assert {d["off"] for d in after["days"] if not d["hours"]} == {"weekend"}


async def test_one_to_thirty_one_days_and_only_the_accounts_calendars(
    api_without_temporal: Api, tenant: Tenant
) -> None:
    api = api_without_temporal
    ada = api.headers(tenant, "ada")
    url = f"/v1/calendars/{stable_id(tenant.slug, 'calendar:berlin')}/preview"
    for days in (1, 31):
        answered = await api.client.get(f"{url}?days={days}", headers=ada)
        assert answered.status_code == 200, answered.text
        assert len(answered.json()["days"]) == days
        assert answered.json()["days"][0]["date"] == today("Europe/Berlin").isoformat()
    for wrong, reason in ((0, "greater than or equal to 1"), (32, "less than or equal to 31")):
        refused = error(await api.client.get(f"{url}?days={wrong}", headers=ada), 422)
        assert refused["code"] == "invalid_payload"
        assert refused["message"] == f"query.days: Input should be {reason}"

    assert error(await api.client.get(f"/v1/calendars/{uuid.uuid4()}/preview", headers=ada), 404)
    other = await Tenant.create(tenant.owner)
    foreign = f"/v1/calendars/{stable_id(other.slug, 'calendar:berlin')}/preview"
    assert error(await api.client.get(foreign, headers=ada), 404)["code"] == "not_found"

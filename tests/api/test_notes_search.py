"""Notes on an item's timeline, and finding items by their title (issue 22 item 7's API)."""

from __future__ import annotations

import uuid

from tests.api.conftest import Api
from tests.support.errors import error
from tests.support.tenants import Tenant


async def test_a_note_joins_the_timeline_with_its_author_even_after_resolve(
    api_without_temporal: Api, tenant: Tenant
) -> None:
    api = api_without_temporal
    item_id = (await api.task(tenant)).json()["id"]
    emil, vera = api.headers(tenant, "emil"), api.headers(tenant, "vera")
    url = f"/v1/items/{item_id}"
    assert (await api.client.post(f"{url}/resolve", headers=emil)).status_code == 200
    noted = await api.client.post(f"{url}/notes", json={"text": "Valve replaced."}, headers=emil)
    assert noted.status_code == 201, noted.text
    assert (noted.json()["action"], noted.json()["actor_name"]) == ("noted", "Emil Engineer")
    timeline = (await api.client.get(f"{url}/audit", headers=vera)).json()
    assert [(e["action"], e["data"].get("text")) for e in timeline][-2:] == [
        ("resolved", None),
        ("noted", "Valve replaced."),
    ]
    assert error(await api.client.post(f"{url}/notes", json={"text": "x"}, headers=vera), 403)
    blank = await api.client.post(f"{url}/notes", json={"text": "  "}, headers=emil)
    assert error(blank, 400)["code"] == "invalid"
    missing = await api.client.post(
        f"/v1/items/{uuid.uuid4()}/notes", json={"text": "x"}, headers=emil
    )
    assert error(missing, 404)["code"] == "not_found"


async def test_items_are_found_by_words_of_their_title(
    api_without_temporal: Api, tenant: Tenant
) -> None:
    api = api_without_temporal
    for title in ("Pump P-101 leaks", "Calibrate scale S-7", "100% of pumps_checked"):
        assert (await api.task(tenant, title=title)).status_code == 201
    vera = api.headers(tenant, "vera")

    async def titles(q: str) -> list[str]:
        page = await api.client.get("/v1/items", params={"q": q}, headers=vera)
        assert page.status_code == 200, page.text
        return sorted(i["title"] for i in page.json()["items"])

    assert await titles("PUMP") == ["100% of pumps_checked", "Pump P-101 leaks"]
    assert await titles("pump leaks") == ["Pump P-101 leaks"]
    assert await titles("100%") == ["100% of pumps_checked"]  # % and _ are literal
    assert await titles("s_checked") == ["100% of pumps_checked"]
    assert await titles("s%checked") == []

"""Every endpoint, read off the app itself so a new one cannot be forgotten:
- the role matrix: one rank below the endpoint's gate gets 403, the gate itself gets in;
- no token is 401;
- the tenant matrix: another account's ids are 404, and no list shows a foreign row."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.routing import APIRoute

from api.app import create_app
from api.auth import RANK, Require
from domain import links
from domain.clock import utcnow
from tests.api.conftest import Api
from tests.support.tenants import Tenant

BY_RANK = {rank: role for role, rank in RANK.items()}
MEMBER = {"viewer": "vera", "engineer": "emil", "admin": "ada", "owner": "otto"}
BODIES: dict[str, dict[str, Any]] = {
    "PATCH /v1/items/{item_id}": {"title": "renamed"},
    "POST /v1/items/{item_id}/notes": {"text": "a note"},
}
# Never completes over the in-process transport; getting in is covered in test_events.py.
ENDLESS = {"GET /v1/events/stream"}


def _gate(route: APIRoute) -> str | None:
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if isinstance(dependency.call, Require):
            return dependency.call.role
        pending.extend(dependency.dependencies)
    return None


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """Flatten the app's routes (FastAPI keeps included routers as wrappers)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += _api_routes(route.original_router.routes)
    return found


ALL_ROUTES = [
    (method, route.path, _gate(route))
    for route in _api_routes(create_app().routes)
    if route.path.startswith("/v1")
    for method in sorted(route.methods or ())
]
# No bearer token: the credential is a signed, single-use link from a mail (or the address a
# sign-in link is mailed to). tests/api/test_links.py and test_address_change.py cover them,
# forged links included.
BY_LINK = {
    ("POST", "/v1/auth/sign-in-link"),
    ("POST", "/v1/auth/sign-in-link/view"),
    ("POST", "/v1/auth/session"),
    ("POST", "/v1/auth/address"),
    ("POST", "/v1/claim-links/view"),
    ("POST", "/v1/claim-links"),
}
ROUTES = [(m, p, gate) for m, p, gate in ALL_ROUTES if (m, p) not in BY_LINK]


async def test_a_claim_link_claims_with_its_holders_role_at_the_moment_of_use(
    api: Api, tenant: Tenant
) -> None:
    """The link routes' matrix: a claim link acts with its holder's role as it is when the
    link is used. A viewer's (mailed as assignee or role member) is refused; an engineer
    demoted after the mail went out is refused; nothing changes either time."""
    for who, expected in (("vera", 403), ("emil", 200)):
        item_id = uuid.UUID((await api.task(tenant)).json()["id"])
        link = mint_link(api, tenant, who, item_id)
        claimed = await api.client.post("/v1/claim-links", json={"link": link})
        assert claimed.status_code == expected, claimed.text
        if expected == 403:
            assert claimed.json()["error"]["code"] == "forbidden"
            assert (await tenant.item(item_id)).state == "open"
            again = await api.client.post("/v1/claim-links/view", json={"link": link})
            assert again.json()["used_at"] is None  # the link was not spent
    item_id = uuid.UUID((await api.task(tenant)).json()["id"])
    link = mint_link(api, tenant, "erin", item_id)
    await tenant.update_user("erin", role="viewer")  # demoted after the mail went out
    demoted = await api.client.post("/v1/claim-links", json={"link": link})
    assert demoted.status_code == 403, demoted.text
    assert (await tenant.item(item_id)).state == "open"


def mint_link(api: Api, tenant: Tenant, who: str, item_id: uuid.UUID) -> str:
    return links.mint(
        "claim",
        api.settings.jwt_secret,
        user_id=tenant.user(who),
        account_id=tenant.account_id,
        item_id=item_id,
        now=utcnow(),
    )


def _url(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path


def _fill(path: str, item_id: uuid.UUID) -> str:
    """Path parameters: an item id where one is asked for, a harmless value elsewhere."""
    filled = _url(path, {"item_id": str(item_id), "session_ref": "sess-1"})
    return filled.replace("{", "").replace("}", "")  # any other id: a valid-looking word


def test_every_v1_endpoint_has_a_role_gate() -> None:
    """Every one but the link endpoints, which are exactly the ones listed."""
    assert ROUTES, "no /v1 routes found"
    assert {(m, p) for m, p, gate in ALL_ROUTES if gate is None} == BY_LINK


@pytest.mark.parametrize(("method", "path", "gate"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
async def test_role_matrix(api: Api, tenant: Tenant, method: str, path: str, gate: str) -> None:
    item_id = uuid.UUID((await api.task(tenant)).json()["id"])
    url = _fill(path, item_id)
    body = BODIES.get(f"{method} {path}")
    anonymous = await api.client.request(method, url, json=body)
    assert anonymous.status_code == 401
    if RANK[gate] > 0:
        below = MEMBER[BY_RANK[RANK[gate] - 1]]
        refused = await api.client.request(
            method, url, json=body, headers=api.headers(tenant, below)
        )
        assert refused.status_code == 403, refused.text
    if f"{method} {path}" in ENDLESS:
        return
    allowed = await api.client.request(
        method, url, json=body, headers=api.headers(tenant, MEMBER[gate])
    )
    assert allowed.status_code not in (401, 403, 500), allowed.text


ITEM_ROUTES = [(m, p, g) for m, p, g in ROUTES if "{item_id}" in p]


@pytest.mark.parametrize(
    ("method", "path", "gate"), ITEM_ROUTES, ids=[f"{m} {p}" for m, p, _ in ITEM_ROUTES]
)
async def test_another_accounts_item_is_404(
    api: Api, tenant: Tenant, method: str, path: str, gate: str
) -> None:
    other = await Tenant.create(tenant.owner)
    foreign = uuid.UUID((await api.task(other)).json()["id"])
    response = await api.client.request(
        method,
        _fill(path, foreign),
        json=BODIES.get(f"{method} {path}"),
        headers=api.headers(tenant, "otto"),
    )
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


async def test_no_list_ever_shows_a_foreign_row(api: Api, tenant: Tenant) -> None:
    other = await Tenant.create(tenant.owner)
    await api.task(other)
    await api.client.post(
        "/v1/sessions/shared-ref/handoffs",
        json={"intent": "escalate"},
        headers=api.headers(other, "erin"),
    )
    mine = (await api.task(tenant)).json()["id"]
    headers = api.headers(tenant, "otto")
    listed = (await api.client.get("/v1/items", headers=headers)).json()["items"]
    assert [i["id"] for i in listed] == [mine]
    assert (await api.client.get("/v1/queue", headers=headers)).json() == []
    history = await api.client.get("/v1/sessions/shared-ref/handoffs", headers=headers)
    assert history.json() == []

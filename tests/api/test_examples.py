"""Every request-body example in the OpenAPI document works when pasted into the API docs
of `make run`: sent as the demo account's owner, each is answered 2xx (issue 22 found the
task example refused: its user was nobody in the demo, its due date past)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.tokens import Principal, mint
from domain.clock import utcnow
from domain.demo import seed_demo, stable_id
from tests.api.conftest import Api

HOUR = timedelta(hours=1)
# Path parameters as the demo has them; the item is one the task example creates.
PATHS = {
    "session_ref": "acme-vpn",
    "user_id": str(stable_id("demo", "user:emil")),
    "key": "quality_manager",
    "calendar_id": str(stable_id("demo", "calendar:berlin")),
    "item_type": "CAPA",
}


def examples(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    components = schema["components"]["schemas"]
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema", {})
            ref = body.get("$ref", "").rsplit("/", 1)[-1]
            for example in components.get(ref, {}).get("examples", [])[:1]:
                found.append((method.upper(), path, example))
    return found


async def test_every_body_example_works_on_the_demo_account(
    api_without_temporal: Api, owner_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with owner_sessionmaker() as session, session.begin():
        account_id = await seed_demo(session)
    api = api_without_temporal
    otto = Principal(user_id=stable_id("demo", "user:otto"), account_id=account_id, role="owner")
    bearer = mint(otto, api.settings.jwt_secret, ttl=timedelta(hours=1), now=utcnow())
    headers = {"Authorization": f"Bearer {bearer}"}
    found = examples(api.app.openapi())
    assert len(found) >= 8, found
    ids = dict(PATHS)
    # The item and the webhook others act on first.
    order = sorted(found, key=lambda f: (f[1] != "/v1/tasks", f[1] != "/v1/webhooks"))
    refused = []
    for method, path, example in order:
        url = path.format(**ids)
        answered = await api.client.request(method, url, json=example, headers=headers)
        if answered.status_code >= 300:
            refused.append((method, path, answered.status_code, answered.text[:300]))
        if path == "/v1/tasks":
            ids["item_id"] = answered.json()["id"]
        if path == "/v1/webhooks":
            ids["webhook_id"] = answered.json()["id"]
    assert refused == []


async def test_each_error_status_shows_an_example_of_what_it_really_answers(
    api_without_temporal: Api, owner_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Issue 22 found every error example the same `not_found`: each status now shows its
    own, and the code in it is the one a real request with that status gets."""
    async with owner_sessionmaker() as session, session.begin():
        account_id = await seed_demo(session)
    api = api_without_temporal
    vera = Principal(user_id=stable_id("demo", "user:vera"), account_id=account_id, role="viewer")
    otto = Principal(user_id=stable_id("demo", "user:otto"), account_id=account_id, role="owner")
    as_vera, as_otto = (
        {"Authorization": f"Bearer {mint(p, api.settings.jwt_secret, ttl=HOUR, now=utcnow())}"}
        for p in (vera, otto)
    )
    operation = api.app.openapi()["paths"]["/v1/tasks"]["post"]["responses"]
    shown = {
        status: entry["content"]["application/json"]["example"]["error"]
        for status, entry in operation.items()
        if status >= "400"
    }
    assert len({e["code"] for e in shown.values()}) == len(shown), shown  # all different
    due = (utcnow() + timedelta(days=3)).isoformat()
    task = {"type": "CAPA", "title": "t", "assignee_id": PATHS["user_id"], "due_at": due}
    real = {
        "400": await api.client.post("/v1/tasks", json={**task, "type": "CAPX"}, headers=as_otto),
        "401": await api.client.post("/v1/tasks", json=task),
        "403": await api.client.post("/v1/tasks", json=task, headers=as_vera),
        "422": await api.client.post("/v1/tasks", json={"title": 5}, headers=as_otto),
    }
    for status, answered in real.items():
        assert answered.status_code == int(status), answered.text
        got = answered.json()["error"]
        assert got["code"] == shown[status]["code"], (status, got)
    assert real["400"].json()["error"]["message"] == shown["400"]["message"]

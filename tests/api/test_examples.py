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

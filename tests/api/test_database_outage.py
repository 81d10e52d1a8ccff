"""With Postgres stopped, every endpoint answers 503 `database_unavailable` in the error
shape with `Retry-After` (liveness stays 200, readiness says why it is 503); when Postgres
is back, the same API process serves again without a restart.

Uses an embedded Postgres of its own, really stopped and started with `pg_ctl`."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.tokens import Principal, mint
from config import Settings
from db import IDLE_PING_SECONDS, create_engine, create_sessionmaker, migrate
from domain import links
from domain.clock import utcnow
from domain.demo import stable_id
from mailsink import free_port
from tests.support.errors import error
from tests.support.live import serve
from tests.support.pg import StoppablePostgres
from tests.support.tenants import Tenant


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoppablePostgres]:
    server = StoppablePostgres(Path(tmp_path_factory.mktemp("outage-pg")))
    migrate(server.url)
    yield server
    server.close()


def concrete(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)


def example_body(operation: dict[str, Any], schemas: dict[str, Any]) -> Any:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    schema = content["schema"]
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return (schema.get("examples") or [{}])[0]


async def _account(
    postgres: StoppablePostgres, settings: Settings
) -> tuple[Settings, Tenant, uuid.UUID, dict[str, str]]:
    """Settings on this Postgres (Temporal unreachable), an account with one item, and its
    owner's bearer header."""
    ours = settings.model_copy(
        update={
            "database_url": postgres.url,
            "app_database_url": None,
            "temporal_address": f"127.0.0.1:{free_port()}",
        }
    )
    owner = create_engine(ours, owner=True)
    tenant = await Tenant.create(create_sessionmaker(owner))
    item_id = await tenant.add_item(due_at=utcnow())
    await owner.dispose()
    principal = Principal(user_id=tenant.user("otto"), account_id=tenant.account_id, role="owner")
    token = mint(principal, ours.jwt_secret, ttl=timedelta(hours=1), now=utcnow())
    return ours, tenant, item_id, {"Authorization": f"Bearer {token}"}


async def test_a_request_after_a_postgres_restart_meets_no_dead_connection(
    postgres: StoppablePostgres, settings: Settings
) -> None:
    """Both of the API's pools (the request's transaction, a create's one call) hold a
    connection that the restart killed; one that sat idle is pinged and replaced, so the
    first requests after the restart are answered, not 503."""
    ours, tenant, _, auth = await _account(postgres, settings)
    task = {
        "type": "CAPA",
        "title": "after the restart",
        "assignee_id": str(tenant.user("erin")),
        "due_at": (utcnow() + timedelta(days=3)).isoformat(),
    }
    with serve(ours) as base:
        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=15) as client:
            assert (await client.get("/v1/queue")).status_code == 200
            assert (await client.post("/v1/tasks", json=task)).status_code == 201
            postgres.stop()
            postgres.start()
            await asyncio.sleep(IDLE_PING_SECONDS)
            queue = await client.get("/v1/queue")
            assert queue.status_code == 200, queue.text
            created = await client.post("/v1/tasks", json=task)
            assert created.status_code == 201, created.text


async def test_every_endpoint_is_503_while_postgres_is_down_and_recovers_without_restart(
    postgres: StoppablePostgres, settings: Settings
) -> None:
    ours, tenant, item_id, auth = await _account(postgres, settings)
    ids = {
        "item_id": str(item_id),
        "user_id": str(tenant.user("erin")),
        "calendar_id": str(stable_id(tenant.slug, "calendar:berlin")),
        "key": "quality_manager",
        "item_type": "CAPA",
        "session_ref": "acme-vpn",
        "webhook_id": str(uuid.uuid4()),  # 503 before it is ever looked up
        "delivery_id": str(uuid.uuid4()),
        "job_id": str(uuid.uuid4()),
    }
    schema = create_app(ours).openapi()
    # The link endpoints' credential is a signed link, which no example can hold.
    linked = {
        purpose: links.mint(
            purpose,
            ours.jwt_secret,
            user_id=tenant.user("erin"),
            account_id=tenant.account_id,
            item_id=item_id,
            now=utcnow(),
        )
        for purpose in ("sign_in", "claim")
    }
    linked["address"] = links.mint(
        "address",
        ours.jwt_secret,
        user_id=tenant.user("ada"),
        account_id=tenant.account_id,
        email="ada.new@example.com",
        now=utcnow(),
    )
    by_link = {
        ("POST", "/v1/auth/sign-in-link/view"): {"link": linked["sign_in"]},
        ("POST", "/v1/auth/session"): {"link": linked["sign_in"]},
        ("POST", "/v1/claim-links/view"): {"link": linked["claim"]},
        ("POST", "/v1/claim-links"): {"link": linked["claim"]},
        ("POST", "/v1/auth/address"): {"link": linked["address"]},
    }
    operations = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items() if path.startswith("/v1/") else ():
            url, body = concrete(path, ids), example_body(op, schema["components"]["schemas"])
            link = by_link.get((method.upper(), path))
            url, body = (url + link, body) if isinstance(link, str) else (url, link or body)
            operations.append((method.upper(), url, body))
    assert len(operations) > 30

    with serve(ours) as base:
        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=15) as client:
            assert (await client.get("/v1/queue")).status_code == 200
            postgres.stop()
            try:
                for method, url, body in operations:
                    response = await client.request(method, url, json=body)
                    problem = error(response, 503)
                    assert problem["code"] == "database_unavailable", (method, url)
                    assert response.headers["retry-after"] == "5", (method, url)
                assert (await client.get("/health/live")).status_code == 200
                ready = await client.get("/health/ready")
                assert (ready.status_code, ready.json()["database"]) == (503, "unavailable")
            finally:
                postgres.start()
            deadline = time.monotonic() + 30
            while (await client.get("/v1/queue")).status_code != 200:
                assert time.monotonic() < deadline, "the API did not recover on its own"
                await asyncio.sleep(0.5)
            assert (await client.get(f"/v1/items/{item_id}")).status_code == 200
            assert (await client.get("/health/ready")).json()["database"] == "ok"

"""schemathesis against the app's own OpenAPI schema, over real HTTP (uvicorn in a thread)
with an owner's token and real Postgres: no operation answers any generated input with a
5xx. Temporal is deliberately unreachable here: creation must still never fail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from api.app import create_app
from api.tokens import Principal, mint
from config import Settings
from db import create_engine, create_sessionmaker
from domain.clock import utcnow
from mailsink import free_port
from tests.support.live import serve
from tests.support.tenants import Tenant

# The SSE stream never ends, so it cannot be answered-and-checked; test_events.py covers it.
schema = schemathesis.openapi.from_dict(create_app().openapi()).exclude(path="/v1/events/stream")


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[str]:
    dead_temporal = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    with serve(dead_temporal) as url:
        yield url


@pytest.fixture(scope="module")
def owner_token(settings: Settings) -> str:
    async def make() -> Tenant:
        engine = create_engine(settings, owner=True)
        try:
            return await Tenant.create(create_sessionmaker(engine))
        finally:
            await engine.dispose()

    tenant = asyncio.run(make())
    principal = Principal(user_id=tenant.user("otto"), account_id=tenant.account_id, role="owner")
    return mint(principal, settings.jwt_secret, ttl=timedelta(hours=1), now=utcnow())


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_operation_answers_with_a_5xx(case, live_server: str, owner_token: str) -> None:  # type: ignore[no-untyped-def]
    response = case.call(base_url=live_server, headers={"Authorization": f"Bearer {owner_token}"})
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"

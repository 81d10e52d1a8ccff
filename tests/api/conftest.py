"""The real app (lifespan and all) over httpx's ASGI transport, against real Postgres and the
real dev server, with a worker on this test's own task queue."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.tokens import Principal, mint
from config import Settings
from domain.clock import utcnow
from domain.demo import USERS
from mailsink import MailSink, free_port
from tests.support.tenants import Tenant
from worker import build_worker

ROLES = {u.key: u.role for u in USERS}


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    def headers(self, tenant: Tenant, who: str | uuid.UUID, **claims: object) -> dict[str, str]:
        """A bearer token for demo user `who` (a key such as "ada") or any user id."""
        user_id = who if isinstance(who, uuid.UUID) else tenant.user(who)
        role = claims.get("role") or ROLES.get(str(who), "engineer")
        principal = Principal(user_id=user_id, account_id=tenant.account_id, role=str(role))
        ttl = claims.get("ttl", timedelta(hours=1))
        token = mint(principal, self.settings.jwt_secret, ttl=ttl, now=utcnow())  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"}

    async def task(self, tenant: Tenant, who: str = "ada", **body: object) -> httpx.Response:
        payload = {
            "type": "CAPA",
            "title": "Pump P-101 leaks",
            "assignee_id": str(tenant.user("erin")),
            "due_at": (utcnow() + timedelta(days=10)).isoformat(),
            **body,
        }
        return await self.client.post("/v1/tasks", json=payload, headers=self.headers(tenant, who))


async def running_app(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(app, client, settings)


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    mail_sink: MailSink,
    engine: AsyncEngine,
) -> AsyncIterator[Api]:
    worker_settings = settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "task_queue": f"api-{uuid.uuid4()}",
            "smtp_port": mail_sink.port,
        }
    )
    async with build_worker(dev_env.client, worker_settings, engine):
        async for running in running_app(worker_settings):
            for _ in range(100):  # the app connects to Temporal in the background
                if running.app.state.temporal.client is not None:
                    break
                await asyncio.sleep(0.05)
            yield running


@pytest.fixture
async def api_without_temporal(settings: Settings) -> AsyncIterator[Api]:
    """The real app with Temporal unreachable: creation must still never fail."""
    dead = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    async for running in running_app(dead):
        yield running

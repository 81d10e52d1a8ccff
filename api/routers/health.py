"""Liveness and readiness, Kubernetes style.

- `GET /health/live`: the process answers. Never touches a dependency, so a database outage
  does not get the API restarted (it recovers on its own when Postgres returns).
- `GET /health/ready`: one real round trip to each of Postgres (`SELECT 1`) and Temporal
  (its gRPC health check), each bounded by `ESCALATOR_READY_TIMEOUT_SECONDS`. 503 while
  Postgres is down: nothing can be served without it. Temporal down is reported as
  `degraded` with 200, because creating and claiming items still works (workflows start
  and catch up when it returns), so taking the API out of rotation would only hurt.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import text

from api.deps import EngineDep, SettingsDep

router = APIRouter(prefix="/health", tags=["health"])
Check = Literal["ok", "unavailable", "connecting"]


class Live(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    database: Check
    temporal: Check = Field(description="connecting: the API has not reached it since start")


@router.get("/live", response_model=Live, summary="The process is up")
async def live() -> Live:
    return Live(status="ok")


@router.get(
    "/ready",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "Postgres cannot be reached"}},
    summary="Postgres and Temporal, each checked with a real call",
)
async def ready(
    request: Request, response: Response, engine: EngineDep, settings: SettingsDep
) -> Ready:
    timeout = settings.ready_timeout_seconds

    async def database() -> Check:
        async def probe() -> None:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

        try:
            await asyncio.wait_for(probe(), timeout)
        except Exception:  # any failure or timeout is "unavailable"; the body says which part
            return "unavailable"
        return "ok"

    async def temporal() -> Check:
        client = request.app.state.temporal.client
        if client is None:
            return "connecting"
        try:
            healthy = await asyncio.wait_for(client.service_client.check_health(), timeout)
        except Exception:  # unreachable or timed out
            return "unavailable"
        return "ok" if healthy else "unavailable"

    db, tp = await asyncio.gather(database(), temporal())
    if db != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Ready(status="unavailable", database=db, temporal=tp)
    return Ready(status="ok" if tp == "ok" else "degraded", database=db, temporal=tp)

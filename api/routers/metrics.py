"""`GET /metrics`: Prometheus's scrape of this API process (see `metrics`).

Each scrape first counts the open items by state and tier (one aggregate over every
account, through the definer function made for it: no row leaves the database), bounded by
the readiness timeout; while Postgres is away the last count stands. With
`ESCALATOR_METRICS_TOKEN` set the scrape needs it as a bearer token: the item types in the
labels are each account's own words.
"""

from __future__ import annotations

import asyncio
import hmac

import structlog
from fastapi import APIRouter, Request, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import metrics
from api.deps import EngineDep, SettingsDep
from config import Settings
from domain.errors import DomainError

router = APIRouter(tags=["operations"])
log = structlog.get_logger()


class MetricsTokenRequired(DomainError):
    status = 401
    code = "metrics_token_required"


@router.get("/metrics", include_in_schema=False)
async def scrape(request: Request, engine: EngineDep, settings: SettingsDep) -> Response:
    if not settings.metrics_open:
        token = settings.metrics_token
        given = request.headers.get("authorization", "")
        wanted = f"Bearer {token.get_secret_value()}" if token is not None else None
        if wanted is None or not hmac.compare_digest(given.encode(), wanted.encode()):
            raise MetricsTokenRequired(
                "/metrics needs ESCALATOR_METRICS_TOKEN as a bearer token outside dev "
                "(or scrape the internal port, ESCALATOR_API_METRICS_PORT)"
            )
    await refresh_open_items(engine, settings)
    return Response(metrics.exposition(metrics.WORKER_ONLY), media_type=metrics.CONTENT_TYPE_LATEST)


async def refresh_open_items(engine: AsyncEngine, settings: Settings) -> None:
    try:
        await asyncio.wait_for(_count_open_items(engine), settings.ready_timeout_seconds)
    except Exception as error:  # the scrape still answers, with the last count
        log.warning("metrics.open_items_unavailable", error=repr(error))


async def serve_internally(engine: AsyncEngine, settings: Settings) -> None:
    """The API's metrics on `api_metrics_host:api_metrics_port` with no token (an internal
    interface), the open-item counts refreshed every 15 s; until cancelled."""
    server = metrics.MetricsServer(
        settings.api_metrics_host, settings.api_metrics_port, None, metrics.WORKER_ONLY
    )
    server.start()
    log.info("api.metrics", port=server.port)
    try:
        while True:
            await refresh_open_items(engine, settings)
            await asyncio.sleep(15)
    finally:
        server.stop()


async def _count_open_items(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT * FROM escalator_item_counts()"))
        metrics.set_open_items([(row.state, row.tier, row.items) for row in rows])

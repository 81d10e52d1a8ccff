"""The FastAPI app factory and its lifespan.

The engine, sessionmaker and Temporal client are built once here and reached through the
`Annotated` dependencies in `api.deps`. Temporal being down must never stop the API from
serving (creating an item is authoritative), so the client connects in the background.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from opentelemetry.sdk.trace import TracerProvider
from temporalio.client import Client

import tracing
from api import docs, errors, openapi, pages
from api.events import Hub
from api.middleware import RequestContext
from api.routers import events, health, intake, items, links, metrics, replan
from api.routers.admin import router as admin_router
from api.routers.webhooks import router as webhooks_router
from config import Settings
from db import create_engine, create_sessionmaker, refuse_rls_bypass
from logs import configure_logging
from temporal_connection import Connection, connection

log = structlog.get_logger()
STATIC = Path(__file__).with_name("static")


class TemporalHolder:
    """The Temporal client once connected; `None` until then."""

    def __init__(self) -> None:
        self.client: Client | None = None

    async def keep_connecting(self, to: Connection, **extra: Any) -> None:
        delay = 0.5
        while self.client is None:
            try:
                self.client = await to.connect(**extra)
                log.info("temporal.connected", address=to.target)
            except Exception as error:  # any failure here means "not yet": keep trying
                log.warning("temporal.unreachable", address=to.target, error=str(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


async def _stop(tasks: list[asyncio.Task[None]], grace: float = 5.0) -> None:
    """Cancel the background tasks and wait a bounded while: shutdown never hangs on one."""
    for task in tasks:
        task.cancel()
    _, stuck = await asyncio.wait(tasks, timeout=grace)
    for task in stuck:
        log.error("shutdown.task_stuck", task=task.get_name())


def create_app(
    settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    """The app. Tracing follows the settings unless a provider is given (tests pass one
    with an in-memory exporter)."""
    settings = settings or Settings()
    configure_logging(settings.log_format)
    traces = tracer_provider or tracing.provider(settings, "escalator-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        await refuse_rls_bypass(engine, wait=settings.db_startup_timeout_seconds)
        # Statements that are each a whole transaction (a create's one call): no BEGIN and
        # COMMIT around them. Each holds its connection for one round trip, so the pool
        # does not overflow (an overflow connection is opened and closed per use).
        single = create_engine(settings, isolation_level="AUTOCOMMIT", max_overflow=0)
        to = connection(settings)  # bad TLS settings stop the start, with the reason
        temporal = TemporalHolder()
        hub = Hub(settings.async_app_database_url, buffer=settings.sse_buffer)
        background = [
            asyncio.create_task(
                temporal.keep_connecting(to, **tracing.connect_options(traces)),
                name="temporal-connect",
            ),
            asyncio.create_task(hub.run(), name="push-hub"),
        ]
        if settings.api_metrics_port:
            internal = metrics.serve_internally(engine, settings)
            background.append(asyncio.create_task(internal, name="api-metrics"))
        app.state.settings = settings
        app.state.engine = engine
        app.state.single = single
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.temporal = temporal
        app.state.hub = hub
        try:
            yield
        finally:
            await _stop(background)
            await engine.dispose()
            await single.dispose()
            if tracer_provider is None:  # ours to flush; a given one is the caller's
                tracing.shutdown(traces)

    app = FastAPI(
        title="escalator",
        summary="Makes sure work gets picked up: durable escalations on business time.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by api.docs from a PyPI package's assets: no CDN
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(intake.router)
    app.include_router(items.router)
    app.include_router(admin_router)
    app.include_router(webhooks_router)
    app.include_router(replan.router)
    app.include_router(events.router)
    app.include_router(links.router)
    app.include_router(pages.router)
    tracing.instrument_app(app, traces)
    openapi.install(app)
    docs.install(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

"""Tracing: the request that creates an item, the workflow start, the workflow run and its
activities are one trace (FastAPI instrumentation plus Temporal's tracing interceptor), seen
through an in-memory exporter. And with tracing off, nothing is instrumented."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import tracing
from api.app import create_app
from config import Settings
from mailsink import MailSink
from tests.api.conftest import Api
from tests.support.tenants import Tenant
from worker import build_worker


@pytest.fixture
async def traced(
    dev_env: WorkflowEnvironment, settings: Settings, mail_sink: MailSink, engine: AsyncEngine
) -> AsyncIterator[tuple[Api, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    on_queue = settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "task_queue": f"traced-{uuid.uuid4()}",
            "smtp_port": mail_sink.port,
        }
    )
    config = dev_env.client.config()
    config["interceptors"] = tracing.temporal_interceptors(provider)
    client = Client(**config)
    app = create_app(on_queue, tracer_provider=provider)
    async with build_worker(client, on_queue, engine), app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for _ in range(100):  # the app connects to Temporal in the background
                if app.state.temporal.client is not None:
                    break
                await asyncio.sleep(0.05)
            yield Api(app, http, on_queue), exporter


def _named(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


async def test_creating_an_item_and_its_workflow_share_one_trace(
    traced: tuple[Api, InMemorySpanExporter], tenant: Tenant
) -> None:
    api, exporter = traced
    created = await api.task(tenant)
    assert created.status_code == 201, created.text
    assert created.json()["workflow"] == "started"

    for _ in range(100):  # the workflow's first activities run on the worker
        spans = exporter.get_finished_spans()
        if _named(spans, "RunActivity:record_applied_version"):
            break
        await asyncio.sleep(0.1)
    [request] = [s for s in spans if s.name == "POST /v1/tasks"]
    assert request.context is not None
    trace_id = request.context.trace_id
    for name in ("StartWorkflow:EscalationWorkflow", "RunWorkflow:EscalationWorkflow"):
        found = _named(spans, name)
        assert found, f"no {name} span among {sorted({s.name for s in spans})}"
        assert all(s.context is not None and s.context.trace_id == trace_id for s in found)
    activities = _named(spans, "RunActivity:")
    assert {"RunActivity:load_item", "RunActivity:record_applied_version"} <= {
        s.name for s in activities
    }
    assert all(s.context is not None and s.context.trace_id == trace_id for s in activities)


def test_tracing_is_off_without_an_endpoint(settings: Settings) -> None:
    assert tracing.provider(settings, "escalator-api") is None
    assert tracing.temporal_interceptors(None) == []
    on = settings.model_copy(update={"otel_exporter_otlp_endpoint": "http://127.0.0.1:4318"})
    provider = tracing.provider(on, "escalator-api")
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "escalator-api"
    provider.shutdown()

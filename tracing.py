"""OpenTelemetry tracing, on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard
variable; the OTLP/HTTP exporter reads it and its siblings, e.g. `OTEL_EXPORTER_OTLP_HEADERS`).

The API's requests are spans (FastAPI instrumentation), and Temporal's tracing interceptor
carries the context in workflow and activity headers: the request that creates an item, the
workflow start, the workflow run and its activities are one trace. Off, nothing is
instrumented and nothing is paid.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

from config import Settings
from logs import redact

# Probes and scrapes every few seconds would drown the traces that matter.
UNTRACED_URLS = "health/live,health/ready,metrics"


def provider(settings: Settings, service: str) -> TracerProvider | None:
    """The tracer provider the settings ask for, exporting over OTLP/HTTP; None when
    tracing is off."""
    if not settings.otel_exporter_otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    made = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name or service})
    )
    made.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(), max_queue_size=settings.otel_bsp_max_queue_size)
    )
    return made


def temporal_interceptors(tracer_provider: TracerProvider | None) -> list[Interceptor]:
    """Client (and so worker) interceptors: Temporal's tracing one when tracing is on."""
    if tracer_provider is None:
        return []
    return [TracingInterceptor(tracer_provider.get_tracer("escalator.temporal"))]


# The span attributes that carry the request's address: their secrets are redacted (a
# sign-in link, an SSE ticket), as in the logs.
_ADDRESS_ATTRIBUTES = ("http.target", "http.url", "url.full", "url.query")


def _redact_address(span: Span, scope: dict[str, Any]) -> None:
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for name in _ADDRESS_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str):
            span.set_attribute(name, redact(value))
    query = scope.get("query_string", b"")
    if query:
        span.set_attribute("url.query", redact("?" + query.decode("latin-1"))[1:])


def instrument_app(app: FastAPI, tracer_provider: TracerProvider | None) -> None:
    if tracer_provider is not None:
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=tracer_provider,
            excluded_urls=UNTRACED_URLS,
            server_request_hook=_redact_address,
        )


def shutdown(tracer_provider: TracerProvider | None) -> None:
    """Flush what is buffered (bounded by the exporter's own timeout)."""
    if tracer_provider is not None:
        tracer_provider.shutdown()


def connect_options(tracer_provider: TracerProvider | None, **extra: Any) -> dict[str, Any]:
    interceptors = temporal_interceptors(tracer_provider)
    return {**extra, **({"interceptors": interceptors} if interceptors else {})}

"""The attacker's tour of issue 21, one finding a test: what a browser is told about framing
and scripts, and that no secret carried in a URL reaches a log line or a span."""

from __future__ import annotations

import logging
import uuid

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config import Settings
from domain import links
from domain.clock import utcnow
from tests.api.conftest import Api
from tests.api.test_logs import _lines, json_api
from tests.api.test_tracing import traced
from tests.support.tenants import Tenant

__all__ = ["json_api", "traced"]


@pytest.mark.parametrize("path", ["/", "/signin", "/claim", "/items/x", "/static/queue.js"])
async def test_pages_run_only_their_own_scripts_and_cannot_be_framed(
    json_api: Api, path: str
) -> None:
    response = await json_api.client.get(path)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_api_docs_cannot_be_framed_either(json_api: Api) -> None:
    for path in ("/docs", "/redoc", "/v1/me"):
        response = await json_api.client.get(path)
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path
        assert response.headers["referrer-policy"] == "no-referrer"


def _sign_in_token(settings: Settings, tenant: Tenant) -> str:
    return links.mint(
        "sign_in",
        settings.jwt_secret,
        user_id=tenant.user("ada"),
        account_id=tenant.account_id,
        now=utcnow(),
    )


async def test_no_link_ticket_or_webhook_address_reaches_a_log_line(
    json_api: Api, tenant: Tenant, capsys: pytest.CaptureFixture[str]
) -> None:
    """uvicorn's access line of a sign-in link and an SSE ticket, and httpx's line of a
    webhook POST, as the loggers write them: the secrets are gone, the rest is there."""
    token = _sign_in_token(json_api.settings, tenant)
    ticket = uuid.uuid4().hex
    hook = "https://hooks.example.com/services/T0/B0/s3cr3tPath?token=abc"
    capsys.readouterr()
    access = logging.getLogger("uvicorn.access")
    access.info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/signin?link={token}", "1.1", 200
    )
    access.info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5",
        "GET",
        f"/v1/events/stream?ticket={ticket}",
        "1.1",
        200,
    )
    logging.getLogger("httpx").info('HTTP Request: POST %s "HTTP/1.1 200 OK"', hook)
    out = capsys.readouterr().out
    lines = _lines(out)
    assert len(lines) == 3, out
    assert token not in out
    assert ticket not in out
    assert "s3cr3tPath" not in out
    assert "token=abc" not in out
    assert "/signin?link=[redacted]" in lines[0]["event"]
    assert "https://hooks.example.com/" in lines[2]["event"]


async def test_no_link_reaches_a_span(
    traced: tuple[Api, InMemorySpanExporter], tenant: Tenant
) -> None:
    api, exporter = traced
    token = _sign_in_token(api.settings, tenant)
    shown = await api.client.get("/v1/auth/sign-in-link", params={"link": token})
    assert shown.status_code == 200, shown.text
    spans = exporter.get_finished_spans()
    assert spans
    for span in spans:
        for value in (span.attributes or {}).values():
            assert token not in str(value), (span.name, span.attributes)
    recorded = [
        str(v)
        for s in spans
        for k, v in (s.attributes or {}).items()
        if "query" in k or k == "http.target"
    ]
    assert any("[redacted]" in v for v in recorded), recorded

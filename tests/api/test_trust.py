"""The attacker's tour of issue 21, one finding a test: what a browser is told about framing
and scripts, and that no secret carried in a URL reaches a log line or a span."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError
from sqlalchemy import text

from api.tokens import Principal, mint
from config import DEV_JWT_SECRET, Settings
from domain import links
from domain.clock import utcnow
from mailsink import free_port
from tests.api.conftest import Api, running_app
from tests.api.test_logs import _lines, json_api
from tests.api.test_tracing import traced
from tests.support.tenants import Tenant

__all__ = ["json_api", "traced"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path", ["/", "/signin", "/claim", "/address", "/items/x", "/static/queue.js"]
)
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
    access.setLevel(logging.INFO)  # as uvicorn sets it when it serves
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
    """Links travel in fragments and bodies now; a link put in a query string anyway (an
    old bookmark, a hand-made URL) is still redacted from the span."""
    api, exporter = traced
    token = _sign_in_token(api.settings, tenant)
    shown = await api.client.get("/signin", params={"link": token})
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


@pytest.mark.parametrize(
    "secret", [DEV_JWT_SECRET, "change-me-in-compose", "Change-Me-Please-0123456789abcdef", "short"]
)
def test_outside_dev_a_known_or_short_secret_stops_the_start(secret: str) -> None:
    with pytest.raises(ValidationError, match="ESCALATOR_JWT_SECRET"):
        Settings(environment="prod", jwt_secret=secret)
    assert Settings(environment="dev", jwt_secret=secret).jwt_secret == secret
    assert Settings(environment="prod", jwt_secret="9f" * 32).environment == "prod"


def test_the_compose_file_ships_no_secret_and_publishes_no_metrics() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    shared = compose["x-escalator-env"]
    assert shared["ESCALATOR_JWT_SECRET"].startswith("${ESCALATOR_JWT_SECRET:?")
    assert shared["ESCALATOR_ENVIRONMENT"] == "${ESCALATOR_ENVIRONMENT:-prod}"
    services = compose["services"]
    assert services["api"]["ports"] == ["8000:8000"]
    assert "ports" not in services["worker"]


@pytest.fixture
async def prod_api(settings: Settings) -> AsyncIterator[Api]:
    """The app as deployed: prod, a real secret, a metrics token, the internal metrics port."""
    prod = settings.model_copy(
        update={
            "environment": "prod",
            "jwt_secret": "7c" * 32,
            "temporal_address": f"127.0.0.1:{free_port()}",
            "metrics_token": None,
            "api_metrics_port": free_port(),
        }
    )
    async for running in running_app(prod):
        yield running


async def test_outside_dev_the_public_metrics_need_a_token(prod_api: Api) -> None:
    refused = await prod_api.client.get("/metrics")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "metrics_token_required"
    internal = f"http://127.0.0.1:{prod_api.settings.api_metrics_port}/metrics"
    async with httpx.AsyncClient() as client:
        for _ in range(50):  # the internal port starts with the app
            with contextlib.suppress(httpx.ConnectError):
                scraped = await client.get(internal, timeout=5)
                break
            await asyncio.sleep(0.1)
    assert scraped.status_code == 200
    assert "escalator_open_items" in scraped.text


async def _epoch_headers(
    api: Api, tenant: Tenant, who: str, ttl: timedelta = timedelta(hours=1)
) -> dict[str, str]:
    """A token minted as the app does it: at the user's current token epoch."""
    user = await tenant.user_row(who)
    principal = Principal(
        user_id=user.id, account_id=tenant.account_id, role=user.role, epoch=user.token_epoch
    )
    token = mint(principal, api.settings.jwt_secret, ttl=ttl, now=utcnow())
    return {"Authorization": f"Bearer {token}"}


async def test_sign_out_everywhere_revokes_every_earlier_token(
    json_api: Api, tenant: Tenant
) -> None:
    phone = await _epoch_headers(json_api, tenant, "emil")
    laptop = await _epoch_headers(json_api, tenant, "emil", ttl=timedelta(hours=8))
    assert (await json_api.client.get("/v1/me", headers=laptop)).status_code == 200
    out = await json_api.client.post("/v1/me/sign-out-everywhere", headers=phone)
    assert out.status_code == 204, out.text
    for stale in (phone, laptop):
        refused = await json_api.client.get("/v1/me", headers=stale)
        assert refused.status_code == 401
        assert "revoked" in refused.json()["error"]["message"]
    fresh = await _epoch_headers(json_api, tenant, "emil")
    assert (await json_api.client.get("/v1/me", headers=fresh)).status_code == 200


@pytest.mark.parametrize(
    ("change", "undo"),
    [
        ({"is_active": False}, {"is_active": True}),  # reactivation does not revive tokens
        ({"role": "viewer"}, {"role": "engineer"}),
    ],
)
async def test_a_status_or_role_change_revokes_earlier_tokens(
    json_api: Api, tenant: Tenant, change: dict[str, object], undo: dict[str, object] | None
) -> None:
    before = await _epoch_headers(json_api, tenant, "emil")
    ada = await _epoch_headers(json_api, tenant, "ada")
    url = f"/v1/users/{tenant.user('emil')}"
    assert (await json_api.client.patch(url, json=change, headers=ada)).status_code == 200
    if undo is not None:
        assert (await json_api.client.patch(url, json=undo, headers=ada)).status_code == 200
    assert (await json_api.client.get("/v1/me", headers=before)).status_code == 401


async def test_the_sign_in_limit_is_one_for_every_api_process(
    settings: Settings, tenant: Tenant
) -> None:
    """Two API processes (two apps on one database): five links from the first, and the
    sixth is refused by the second too; the limit lives in Postgres, not in memory."""
    dead = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    address = {"email": tenant.email("erin")}
    async for first in running_app(dead):
        async for second in running_app(dead):
            for _ in range(dead.sign_in_requests_per_window):
                asked = await first.client.post("/v1/auth/sign-in-link", json=address)
                assert asked.status_code == 202, asked.text
            refused = await second.client.post("/v1/auth/sign-in-link", json=address)
            assert refused.status_code == 429, refused.text
            other = await second.client.post(
                "/v1/auth/sign-in-link", json={"email": tenant.email("ada")}
            )
            assert other.status_code == 202
    async with tenant.owner() as session:
        stored = await session.scalar(
            text("SELECT count(*) FROM sign_in_request WHERE address_hash = :hash"),
            {"hash": hashlib.sha256(tenant.email("erin").encode()).hexdigest()},
        )
        leaked = await session.scalar(
            text("SELECT count(*) FROM sign_in_request WHERE address_hash LIKE '%@%'")
        )
    assert stored == dead.sign_in_requests_per_window  # the refused one wrote nothing
    assert leaked == 0  # hashes, never addresses

"""Liveness touches nothing; readiness really calls Postgres and Temporal and says which one
is missing."""

from __future__ import annotations

from temporalio.client import Client

from mailsink import free_port
from tests.api.conftest import Api


async def test_readiness_calls_temporal_for_real(api: Api) -> None:
    ready = await api.client.get("/health/ready")
    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ok", "database": "ok", "temporal": "ok"},
    )
    # A client whose server has gone away: holding a client object proves nothing.
    api.app.state.temporal.client = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    degraded = await api.client.get("/health/ready")
    assert (degraded.status_code, degraded.json()) == (
        200,
        {"status": "degraded", "database": "ok", "temporal": "unavailable"},
    )
    assert (await api.client.get("/health/live")).json() == {"status": "ok"}


async def test_readiness_reports_a_temporal_not_yet_reached(api_without_temporal: Api) -> None:
    ready = await api_without_temporal.client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["temporal"] == "connecting"

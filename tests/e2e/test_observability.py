"""Metrics and logs end to end: the real worker process (metrics port, JSON logs), the real
app in-process, the dev server, Postgres and an SMTP sink. Rungs fire, a person claims, and
then both `/metrics` pages are scraped: every figure moved, and every series the Grafana
dashboard charts exists."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from config import Settings
from domain.clock import utcnow
from domain.demo import rung
from mailsink import MailSink, free_port
from tests.api.conftest import Api, running_app
from tests.support.dashboard import metric_names
from tests.support.tenants import Tenant

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "escalator.json"
Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass
class Worker:
    task_queue: str
    metrics_url: str
    log: Path


@pytest.fixture
def worker(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    mail_sink: MailSink,
    tmp_path: Path,
) -> Iterator[Worker]:
    port = free_port()
    running = Worker(f"obs-{uuid.uuid4()}", f"http://127.0.0.1:{port}/metrics", tmp_path / "log")
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "ESCALATOR_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "ESCALATOR_TASK_QUEUE": running.task_queue,
        "ESCALATOR_SMTP_PORT": str(mail_sink.port),
        "ESCALATOR_WORKER_METRICS_PORT": str(port),
        "ESCALATOR_LOG_FORMAT": "json",
    }
    with running.log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
        try:
            yield running
        finally:
            process.terminate()
            process.wait(timeout=20)


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, worker: Worker
) -> AsyncIterator[Api]:
    on_queue = settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "task_queue": worker.task_queue,
        }
    )
    async for running in running_app(on_queue):
        for _ in range(100):  # the app connects to Temporal in the background
            if running.app.state.temporal.client is not None:
                break
            await asyncio.sleep(0.05)
        yield running


def samples(page: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    """The sum over the series of `name` whose labels include `labels`."""
    return sum(
        v for have, v in found.get(name, []) if all(have.get(k) == w for k, w in labels.items())
    )


def series_names(page: str) -> set[str]:
    """The series names exactly as exposed (the parser would add `_total` to the SDK's
    counters, which have none)."""
    return {
        line.split("{")[0].split(" ")[0]
        for line in page.splitlines()
        if line and not line.startswith("#")
    }


async def scrape(url: str, client: httpx.AsyncClient | None = None) -> Samples:
    if client is not None:
        response = await client.get(url)
    else:
        async with httpx.AsyncClient() as plain:
            response = await plain.get(url)
    assert response.status_code == 200, response.text
    return samples(response.text)


@pytest.mark.e2e
async def test_rungs_and_a_claim_move_the_metrics_the_dashboard_charts(
    api: Api, worker: Worker, tenant: Tenant, mail_sink: MailSink
) -> None:
    await tenant.around_the_clock(
        {
            "remind": rung({"business_seconds": 2}, ["assignee"], "task.reminder"),
            "escalate_1": rung({"business_seconds": 2}, ["assignee_manager"], "task.escalated"),
            "escalate_2": rung({"business_seconds": 600}, ["role:top_management"], "task.final"),
        }
    )
    api_before = await scrape("/metrics", api.client)
    created = await api.task(tenant, due_at=(utcnow() + timedelta(seconds=5)).isoformat())
    assert created.status_code == 201, created.text
    item_id = created.json()["id"]
    # A sign-in mail goes out through a (non-local) activity: the SDK's activity metrics
    # appear too (a small rung mails from its local activity).
    asked = await api.client.post("/v1/auth/sign-in-link", json={"email": tenant.email("ada")})
    assert asked.status_code == 202, asked.text

    for _ in range(60):  # both rungs fired and mailed, and the sign-in mail went out
        rung_mails = [m for m in mail_sink.mails if "Pump" in m.subject]
        signed = [m for m in mail_sink.mails if "sign-in link" in m.subject]
        if len(rung_mails) >= 2 and signed:
            break
        await asyncio.sleep(1)
    claim = await api.client.post(f"/v1/items/{item_id}/claim", headers=api.headers(tenant, "emil"))
    assert claim.status_code == 200, claim.text

    on_worker = await scrape(worker.metrics_url)
    for tier in ("0", "1"):
        assert value(on_worker, "escalator_rungs_fired_total", tier=tier, item_type="CAPA") >= 1
        lateness = value(
            on_worker, "escalator_rung_lateness_seconds_count", tier=tier, item_type="CAPA"
        )
        assert lateness >= 1, f"no lateness observed for tier {tier}"
    assert value(on_worker, "escalator_deliveries_total", channel="email", status="sent") >= 2
    assert value(on_worker, "temporal_workflow_task_schedule_to_start_latency_count") >= 1
    assert value(on_worker, "temporal_worker_task_slots_available") > 0

    on_api = await scrape("/metrics", api.client)
    claimed = value(on_api, "escalator_time_to_claim_seconds_count", item_type="CAPA")
    assert (
        claimed == value(api_before, "escalator_time_to_claim_seconds_count", item_type="CAPA") + 1
    )
    assert value(on_api, "escalator_open_items", state="claimed", tier="1") >= 1
    # The rungs' push events reached this process's hub through the outbox.
    assert value(on_api, "escalator_outbox_lag_seconds_count") > value(
        api_before, "escalator_outbox_lag_seconds_count"
    )

    charted = metric_names(DASHBOARD)
    async with httpx.AsyncClient() as plain:
        worker_page = (await plain.get(worker.metrics_url)).text
    api_page = (await api.client.get("/metrics")).text
    missing = charted - series_names(worker_page) - series_names(api_page)
    assert not missing, f"the dashboard charts series no process exports: {sorted(missing)}"

    # The worker's JSON log lines name the item and its workflow.
    lines = [
        json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")
    ]
    about = [line for line in lines if line.get("item_id") == item_id]
    assert about, "no worker log line names the item"
    assert all(line["workflow_id"] == f"item-{item_id}" for line in about)

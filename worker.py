"""The worker process: builds dependencies, connects to Temporal and runs the Workers (the
task queue, and its webhook queue) until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import metrics
import tracing
from activities.email import EmailActivities
from activities.items import ItemActivities
from activities.mail import MailLinks
from activities.reconcile import ReconcileActivities
from activities.replan import ReplanActivities
from activities.rungs import RungActivities
from activities.sign_in import SignInActivities
from activities.smtp import Smtp
from activities.webhook import WebhookActivities
from config import Settings
from db import create_engine, create_sessionmaker, refuse_rls_bypass
from domain.clock import SystemClock
from logs import configure_logging
from metrics import MetricsServer
from temporal_connection import connection
from workflows.escalation import EscalationWorkflow
from workflows.notifier import WEBHOOK_QUEUE_SUFFIX
from workflows.reconcile import ReconcileWorkflow
from workflows.replan import ReplanWorkflow
from workflows.resend import ResendWebhookWorkflow
from workflows.schedules import ensure_reconciler
from workflows.sign_in import AccountMailWorkflow, SignInMailWorkflow

log = structlog.get_logger()


async def connect(settings: Settings, *, attempts: int = 60, **extra: Any) -> Client:
    """Connect, retrying while the server comes up (the dev stack starts both together).
    `extra`: more client options (the metrics runtime, tracing interceptors)."""
    to = connection(settings)  # bad TLS settings fail here, at once, with the reason
    for attempt in range(1, attempts + 1):
        try:
            return await to.connect(**extra)
        except Exception as error:  # the server is not up yet, or briefly away
            if attempt == attempts:
                raise
            log.warning("temporal.unreachable", attempt=attempt, error=str(error))
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


class Workers:
    """The worker's two Workers, entered and left together: the item workflows with their
    database steps and mails on the task queue, and the webhook POSTs on a queue of their
    own (`<task queue>-webhooks`), so a slow receiver never takes a mail's activity slot."""

    def __init__(self, *workers: Worker) -> None:
        self.workers = workers
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Workers:
        for worker in self.workers:
            await self._stack.enter_async_context(worker)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()


def build_worker(client: Client, settings: Settings, engine: AsyncEngine) -> Workers:
    sessionmaker = create_sessionmaker(engine)
    items = ItemActivities(sessionmaker)
    email = EmailActivities(
        sessionmaker,
        Smtp.from_settings(settings),
        pool_size=settings.smtp_concurrency,
        links=MailLinks.from_settings(settings),
    )
    sign_in = SignInActivities(
        sessionmaker, email.pool, MailLinks.from_settings(settings), smtputf8=settings.smtp_utf8
    )
    hooks = WebhookActivities.from_settings(sessionmaker, settings)
    rungs = RungActivities(sessionmaker)
    replans = ReplanActivities(sessionmaker)
    reconcile = ReconcileActivities(
        client,
        sessionmaker,
        settings.task_queue,
        SystemClock(),
        push_retention_days=settings.push_retention_days,
    )
    options = worker_options(settings)
    items_worker = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[
            EscalationWorkflow,
            ReconcileWorkflow,
            SignInMailWorkflow,
            AccountMailWorkflow,
            ResendWebhookWorkflow,
            ReplanWorkflow,
        ],
        activities=[
            items.load_item,
            items.record_rung,
            rungs.fire_rung,
            items.record_plan,
            items.record_applied_version,
            items.record_due,
            items.time_out_claim,
            email.send_emails,
            email.fire_and_send,
            email.record_outcomes,
            email.record_failures,
            sign_in.sign_in_recipients,
            sign_in.send_account_mail,
            sign_in.record_account_mail,
            sign_in.sign_in_handled,
            hooks.plan_webhooks,
            hooks.record_webhook_failure,
            hooks.endpoint_news,
            reconcile.start_missing_workflows,
            reconcile.nudge_lagging_workflows,
            reconcile.start_missing_sign_ins,
            reconcile.prune_tables,
            replans.replan_batch,
            replans.fail_replan,
        ],
        **options,
    )
    webhooks_worker = Worker(
        client,
        task_queue=settings.task_queue + WEBHOOK_QUEUE_SUFFIX,
        activities=[hooks.send_webhook],
        max_concurrent_activities=settings.worker_activity_slots,
    )
    return Workers(items_worker, webhooks_worker)


# Pure modules the workflow code imports: passed through, so the sandbox neither re-imports
# nor proxies them per workflow run (they hold no state a workflow could leak).
PASSTHROUGH = ("domain", "workflows.types", "workflows.search_attributes", "activities", "db")


def worker_options(settings: Settings) -> dict[str, Any]:
    """Slots, cache and sandbox of a Worker: escalator's, and the benchmark floor's, alike.
    Local activities (the DB steps) get as many slots as the DB pool has connections."""
    return {
        "max_cached_workflows": settings.worker_cache_size,
        "max_concurrent_workflow_tasks": settings.worker_workflow_slots,
        "max_concurrent_activities": settings.worker_activity_slots,
        "max_concurrent_local_activities": settings.db_pool_size,
        "workflow_runner": SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
        )
        if settings.worker_sandbox
        else UnsandboxedWorkflowRunner(),
    }


def serve_metrics(settings: Settings, temporal_metrics: str) -> MetricsServer | None:
    """The metrics port; a port already taken is logged, not fatal: escalations matter
    more than their metrics."""
    host, port = settings.worker_metrics_host, settings.worker_metrics_port
    try:
        server = MetricsServer(host, port, temporal_metrics, metrics.API_ONLY).start()
    except OSError as error:
        log.error("worker.metrics_unavailable", host=host, port=port, error=str(error))
        return None
    log.info("worker.metrics", url=f"http://{host}:{server.port}/metrics")
    return server


async def main(settings: Settings) -> None:
    engine = create_engine(settings, pool_pre_ping=False)  # db.create_engine says why
    await refuse_rls_bypass(engine, wait=settings.db_startup_timeout_seconds)
    traces = tracing.provider(settings, "escalator-worker")
    options = tracing.connect_options(traces)
    server = None
    if settings.worker_metrics_port:
        runtime, temporal_metrics = metrics.temporal_runtime()
        options["runtime"] = runtime
        server = serve_metrics(settings, temporal_metrics)
    client = await connect(settings, **options)
    workers = build_worker(client, settings, engine)
    await ensure_reconciler(client, settings.task_queue, settings.reconcile_every_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with workers:
        log.info("worker.ready", task_queue=settings.task_queue, temporal=settings.temporal_address)
        await stop.wait()
    await engine.dispose()
    if server is not None:
        server.stop()
    tracing.shutdown(traces)
    log.info("worker.stopped")


if __name__ == "__main__":
    settings = Settings()
    configure_logging(settings.log_format)
    asyncio.run(main(settings))

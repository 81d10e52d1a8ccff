"""Prometheus metrics: escalator's own, on the API's `/metrics` and the worker's metrics
port, plus (on the worker) the Temporal SDK's worker metrics from its runtime.

The application metrics are module-level collectors in the default registry: each process
(API or worker) exports the ones it moves. The Temporal SDK's metrics (slots,
schedule-to-start latency, sticky cache) are not hand-written: its Rust core serves them on
a loopback port of its own, and the worker's `/metrics` appends that page to ours, so one
scrape target has both.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

log = structlog.get_logger()

# Lateness is seconds at the 09:00 peak and minutes only when something is wrong.
_LATENESS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)
# People claim in minutes to days.
_TO_CLAIM = (10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 86400, 3 * 86400, 7 * 86400)
_LAG = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

RUNG_LATENESS = Histogram(
    "escalator_rung_lateness_seconds",
    "From a rung's planned instant to SMTP's accept of its mails (the last of one send)",
    ["tier", "item_type"],
    buckets=_LATENESS,
)
RUNGS_FIRED = Counter(
    "escalator_rungs_fired",
    "Rungs fired (stamped, audited, recipients resolved)",
    ["tier", "item_type"],
)
TIME_TO_CLAIM = Histogram(
    "escalator_time_to_claim_seconds",
    "From an item's creation to its claim",
    ["item_type"],
    buckets=_TO_CLAIM,
)
DELIVERIES = Counter(
    "escalator_deliveries",
    "Delivery outcomes recorded, per channel and status (an attempt that will be retried "
    "counts as pending)",
    ["channel", "status"],
)
OPEN_ITEMS = Gauge(
    "escalator_open_items",
    "Items not yet resolved or cancelled, by state and highest tier fired (none: no rung yet)",
    ["state", "tier"],
)
SSE_SUBSCRIBERS = Gauge("escalator_sse_subscribers", "Live SSE subscribers of this API process")
OUTBOX_LAG = Histogram(
    "escalator_outbox_lag_seconds",
    "From a push event's outbox row to its fan-out to this process's SSE subscribers",
    buckets=_LAG,
)
RECONCILER_REPAIRS = Counter(
    "escalator_reconciler_repairs",
    "Repairs by the reconciler: workflows started that the API never started, lagging "
    "workflows nudged, items whose workflow was gone, sign-in requests answered that the "
    "API never started",
    ["kind"],
)
PRUNED = Counter(
    "escalator_pruned_rows",
    "Rows the reconciler deleted: push events past retention, used links past their life",
    ["table"],
)
RECONCILER_NUDGES_FAILED = Counter(
    "escalator_reconciler_nudges_failed",
    "Sync signals to lagging workflows that did not arrive (tried again on the next walk)",
)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "escalator_webhook_endpoints_disabled",
    "Webhook endpoints disabled automatically (410 Gone, or failing too often)",
    ["reason"],
)


CHANNELS = ("email", "webhook")
DELIVERY_STATUSES = ("sent", "failed", "pending", "deferred", "suppressed")
DISABLE_REASONS = ("gone", "failing")  # a 410, or `webhook_disable_after_failures` in a row
# The series whose labels are known up front exist from the start at zero, so a rate()
# has a baseline and the dashboard never shows "no data" for what simply has not happened.
for _channel in CHANNELS:
    for _status in DELIVERY_STATUSES:
        DELIVERIES.labels(channel=_channel, status=_status)
for _kind in ("started", "nudged", "sign_in", "gone"):
    RECONCILER_REPAIRS.labels(kind=_kind)
for _table in ("push_event", "used_link"):
    PRUNED.labels(table=_table)
for _reason in DISABLE_REASONS:
    WEBHOOK_ENDPOINTS_DISABLED.labels(reason=_reason)


def rung_fired(tier: int, item_type: str) -> None:
    RUNGS_FIRED.labels(tier=str(tier), item_type=item_type).inc()


def rung_sent(tier: int, item_type: str, planned_at: datetime, accepted_at: datetime) -> None:
    lateness = max((accepted_at - planned_at).total_seconds(), 0.0)
    RUNG_LATENESS.labels(tier=str(tier), item_type=item_type).observe(lateness)


def delivered(channel: str, status: str, count: int = 1) -> None:
    if count:
        DELIVERIES.labels(channel=channel, status=status).inc(count)


def claimed(item_type: str, created_at: datetime, claimed_at: datetime) -> None:
    TIME_TO_CLAIM.labels(item_type=item_type).observe(
        max((claimed_at - created_at).total_seconds(), 0.0)
    )


def tier_label(tier: int | None) -> str:
    return "none" if tier is None or tier < 0 else str(tier)


_open_series: set[tuple[str, str]] = set()  # every (state, tier) the gauge has shown


def set_open_items(counts: list[tuple[str, int | None, int]]) -> None:
    """The gauge from a fresh count: (state, tier, items). Series that fell to zero are
    kept at zero rather than dropped, so a panel shows the drop."""
    seen = {(state, tier_label(tier)): n for state, tier, n in counts}
    for labels in list(_open_series):
        if labels not in seen:
            OPEN_ITEMS.labels(*labels).set(0)
    for labels, n in seen.items():
        _open_series.add(labels)
        OPEN_ITEMS.labels(*labels).set(n)


__all__ = ["CONTENT_TYPE_LATEST"]


# Which process counts what: each exports only its own, so neither shows the other's
# series frozen at zero (process and Python collectors are everyone's).
WORKER_ONLY = frozenset(
    {RUNG_LATENESS, RUNGS_FIRED, DELIVERIES, RECONCILER_REPAIRS, WEBHOOK_ENDPOINTS_DISABLED}
)
API_ONLY = frozenset({TIME_TO_CLAIM, OPEN_ITEMS, SSE_SUBSCRIBERS, OUTBOX_LAG})


class _Only:
    """A collector of `REGISTRY`'s families but those of `left_out`."""

    def __init__(self, left_out: frozenset[Any]) -> None:
        self._names = {family._name for family in left_out}

    def collect(self) -> Iterator[Metric]:
        return (family for family in REGISTRY.collect() if family.name not in self._names)


def exposition(left_out: frozenset[Any] = frozenset()) -> bytes:
    """The text format of this process's metrics, without the `left_out` ones (another
    process's, `API_ONLY` or `WORKER_ONLY`)."""
    if not left_out:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Only(left_out))
    return generate_latest(registry)


# ---- the worker's metrics port ------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def temporal_runtime() -> tuple[Runtime, str]:
    """A Temporal runtime whose SDK metrics are served on a free loopback port (its URL is
    the second value), durations in seconds as Prometheus expects."""
    address = f"127.0.0.1:{free_port()}"
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=address, durations_as_seconds=True)
        )
    )
    return runtime, f"http://{address}/metrics"


class MetricsServer:
    """`GET /metrics` on a port of the worker: escalator's metrics, then the Temporal SDK's
    (fetched from its runtime's loopback endpoint on each scrape). A thread of its own, so a
    scrape never waits for the worker's event loop."""

    def __init__(
        self, host: str, port: int, temporal_url: str | None, left_out: frozenset[Any]
    ) -> None:
        temporal = temporal_url

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is here")
                    return
                body = exposition(left_out) + (_fetch(temporal) if temporal else b"")
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every 15 s is not news

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:  # loopback only
            body: bytes = response.read()
            return body
    except OSError as error:  # the page still has escalator's own metrics
        log.warning("metrics.temporal_unavailable", url=url, error=str(error))
        return b""

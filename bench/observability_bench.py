"""Figure 9: what metrics and tracing cost the firing path.

The burst of figure 1 fired by escalator's worker with observability off (no metrics port,
no SDK metrics runtime, no tracing) and on (the metrics port with the Temporal SDK's
Prometheus runtime, scraped every second, 15 times Prometheus's usual rate, and every span
exported over OTLP/HTTP to a local sink that accepts every batch), in alternating pairs so
drift in the machine hits both alike; the floor's burst is measured in the same run.
Reported: worker CPU per rung and p99 lateness, on over off (target <= 1.05).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from temporalio.client import Client

from bench.figures import fire
from bench.harness import Bench, Row, ratio
from bench.support import percentile
from mailsink import free_port


class OtlpSink:
    """Accepts OTLP/HTTP export requests on loopback and counts them and their spans."""

    def __init__(self, *, decode: bool = True) -> None:
        counts = self.counts = {"requests": 0, "bytes": 0, "spans": 0}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(size)
                counts["requests"] += 1
                counts["bytes"] += size
                counts["spans"] += _spans_in(body) if decode else 0
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextlib.contextmanager
    def running(self) -> Iterator[OtlpSink]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


def _spans_in(body: bytes) -> int:
    request = ExportTraceServiceRequest.FromString(body)
    return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)


@contextlib.asynccontextmanager
async def scraping(url: str, every: float = 1.0) -> AsyncIterator[list[int]]:
    """Scrape `url` every `every` seconds while the block runs; yields the page sizes."""
    sizes: list[int] = []

    def once() -> None:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as page:
            sizes.append(len(page.read()))

    async def loop() -> None:
        while True:
            await asyncio.to_thread(once)
            await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    try:
        yield sizes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


OFF = {"ESCALATOR_WORKER_METRICS_PORT": "0", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
Run = tuple[list[float], float]  # lateness of each rung, worker CPU seconds


async def _variant(
    bench: Bench, client: Client, count: int, sink: OtlpSink, *, metrics: bool, traces: bool
) -> Run:
    """One burst on a worker with metrics (its port, scraped every second) and/or tracing
    (exported to `sink`) on."""
    port = free_port()
    env = {
        "ESCALATOR_WORKER_METRICS_PORT": str(port) if metrics else "0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url if traces else "",
    }
    lead = 15 + count / 20
    if not metrics:
        return await fire(bench, client, "escalator", [0.0] * count, lead, env)
    async with scraping(f"http://127.0.0.1:{port}/metrics") as pages:
        run = await fire(bench, client, "escalator", [0.0] * count, lead, env)
    print(f"  (metrics on: {len(pages)} scrapes, last {pages[-1] if pages else 0:,} B)")
    return run


def _per_rung(runs: list[Run]) -> float:
    return sum(c for _, c in runs) / max(sum(len(lat) for lat, _ in runs), 1)


async def observability_cost(
    bench: Bench, client: Client, count: int, rounds: int = 4
) -> list[Row]:
    """Off and both-on, `rounds` pairs in ABBA order (off-on, on-off, ...: the run after
    another finds the dev server still digesting the last burst, so neither side may always
    go first); then metrics alone and tracing alone once each, to say which costs what."""
    lead = 15 + count / 20
    floor, floor_cpu = await fire(bench, client, "floor", [0.0] * count, lead)
    runs: dict[str, list[Run]] = {"off": [], "on": [], "metrics": [], "traces": []}
    sink = OtlpSink()
    with sink.running():
        for n in range(rounds):
            for name, on in (("off", False), ("on", True))[:: 1 if n % 2 == 0 else -1]:
                runs[name].append(await _variant(bench, client, count, sink, metrics=on, traces=on))
        runs["metrics"].append(
            await _variant(bench, client, count, sink, metrics=True, traces=False)
        )
        runs["traces"].append(
            await _variant(bench, client, count, sink, metrics=False, traces=True)
        )
    traced = len(runs["on"]) + len(runs["traces"])
    spans_per_rung = sink.counts["spans"] / max(traced * count, 1)
    print(
        f"  (OTLP sink: {sink.counts['requests']} exports, {sink.counts['spans']:,} spans,"
        f" {sink.counts['bytes']:,} B: {spans_per_rung:.1f} spans a rung)"
    )
    parts = instrumentation_cpu(spans_per_rung)
    cpu = {k: _per_rung(v) for k, v in runs.items()}
    print(
        "  (CPU per rung: "
        + ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in cpu.items())
        + "; each pair's off/on: "
        + ", ".join(
            f"{_per_rung([a]) * 1000:.1f}/{_per_rung([b]) * 1000:.1f}"
            for a, b in zip(runs["off"], runs["on"], strict=True)
        )
        + ")"
    )
    p99 = {k: percentile(sorted(x for lat, _ in v for x in lat), 0.99) for k, v in runs.items()}
    floor_per = floor_cpu / max(len(floor), 1)
    own = parts["metrics_per_rung"] + parts["tracing_per_rung"]
    cost = cpu["on"] / cpu["off"]
    return [
        Row(
            9,
            f"metrics + tracing on vs off ({count} rungs x {rounds}): CPU per rung; p99",
            f"on {cpu['on'] * 1000:.1f} ms; {p99['on'] * 1000:,.0f} ms",
            f"off {cpu['off'] * 1000:.1f} ms; {p99['off'] * 1000:,.0f} ms"
            f" (floor {floor_per * 1000:.1f} ms; {percentile(floor, 0.99) * 1000:,.0f} ms)",
            f"{cost:.3f}x; {ratio(p99['on'], p99['off'])} (on/floor {ratio(cpu['on'], floor_per)})",
            "CPU on/off <= 1.05x",
            cost <= 1.05,
            {
                "cpu_on": cpu["on"],
                "cpu_off": cpu["off"],
                "cpu_metrics_only": cpu["metrics"],
                "cpu_tracing_only": cpu["traces"],
                "p99_on": p99["on"],
                "p99_off": p99["off"],
                "floor_cpu": floor_per,
                "exports": sink.counts["requests"],
                "spans_per_rung": spans_per_rung,
            },
        ),
        Row(
            10,
            "instrumentation's own CPU per rung, in-process: metrics + spans (scrape)",
            f"{parts['metrics_per_rung'] * 1e6:.0f} us + {parts['tracing_per_rung'] * 1e6:.0f} us"
            f" ({spans_per_rung:.1f} spans x {parts['span'] * 1e6:.0f} us;"
            f" one scrape {parts['scrape'] * 1000:.1f} ms)",
            f"off {cpu['off'] * 1000:.1f} ms a rung",
            f"{own / cpu['off'] * 100:.1f} %",
            "<= 5 %",
            own <= 0.05 * cpu["off"],
            {**parts, "share_of_off": own / cpu["off"]},
        ),
    ]


def instrumentation_cpu(spans_per_rung: float, n: int = 20_000) -> dict[str, float]:
    """CPU seconds a rung's own instrumentation costs, measured in this process where the
    noise of a whole burst cannot hide it: the metric updates one emailed rung makes, the
    spans it makes (`spans_per_rung`, as the sink counted them) created, ended and exported
    over OTLP/HTTP (to a sink in this process that only reads the bytes), and one scrape's
    rendering. The Temporal SDK's metrics are kept in Rust and are not in this sum."""
    from datetime import timedelta

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    import metrics
    from domain.clock import utcnow

    planned = utcnow()
    accepted = planned + timedelta(seconds=1)
    began = time.process_time()
    for _ in range(n):
        metrics.rung_fired(0, "CAPA")
        metrics.delivered("email", "sent")
        metrics.rung_sent(0, "CAPA", planned, accepted)
    per_rung_metrics = (time.process_time() - began) / n

    sink = OtlpSink(decode=False)
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{sink.url}/v1/traces"), max_queue_size=n + 1)
    )
    tracer = provider.get_tracer("bench")
    attributes = {"temporalWorkflowID": "item-" + "0" * 36, "temporalRunID": "0" * 36}
    with sink.running():
        began = time.process_time()
        for _ in range(n):
            with tracer.start_as_current_span("RunActivity:fire_and_send", attributes=attributes):
                pass
        provider.force_flush()
        per_span = (time.process_time() - began) / n
        provider.shutdown()

    began = time.process_time()
    for _ in range(100):
        metrics.exposition()
    per_scrape = (time.process_time() - began) / 100
    return {
        "metrics_per_rung": per_rung_metrics,
        "span": per_span,
        "tracing_per_rung": per_span * spans_per_rung,
        "scrape": per_scrape,
    }

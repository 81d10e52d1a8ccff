"""Figure 9: what metrics and tracing cost the firing path.

The burst of figure 1 fired by escalator's worker with observability off (no metrics port,
no SDK metrics runtime, no tracing) and on (the metrics port with the Temporal SDK's
Prometheus runtime, scraped every second as a busy Prometheus would, and tracing exported
over OTLP/HTTP to a local sink that accepts every batch), alternating off/on `rounds`
times so drift in the machine hits both alike; the floor's burst is measured in the same
run. Reported: worker CPU per rung and p99 lateness, on over off (target <= 1.05).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import urllib.request
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from temporalio.client import Client

from bench.figures import fire
from bench.harness import Bench, Row, ratio
from bench.support import percentile
from mailsink import free_port


class OtlpSink:
    """Accepts OTLP/HTTP export requests on loopback and counts them (the spans are not
    decoded: the worker's cost is in making and sending them)."""

    def __init__(self) -> None:
        counts = self.counts = {"requests": 0, "bytes": 0}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(size)
                counts["requests"] += 1
                counts["bytes"] += size
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


async def observability_cost(
    bench: Bench, client: Client, count: int, rounds: int = 2
) -> list[Row]:
    lead = 15 + count / 20
    floor, floor_cpu = await fire(bench, client, "floor", [0.0] * count, lead)
    runs: dict[str, list[tuple[list[float], float]]] = {"off": [], "on": []}
    sink = OtlpSink()
    with sink.running():
        for _ in range(rounds):
            runs["off"].append(await fire(bench, client, "escalator", [0.0] * count, lead, OFF))
            port = free_port()
            on = {
                "ESCALATOR_WORKER_METRICS_PORT": str(port),
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
            }
            async with scraping(f"http://127.0.0.1:{port}/metrics") as pages:
                runs["on"].append(await fire(bench, client, "escalator", [0.0] * count, lead, on))
            print(f"  (observability on: {len(pages)} scrapes, last {pages[-1] if pages else 0} B)")
    print(f"  (OTLP sink: {sink.counts['requests']} exports, {sink.counts['bytes']:,} B)")
    cpu = {k: sum(c for _, c in v) / sum(len(lat) for lat, _ in v) for k, v in runs.items()}
    p99 = {k: percentile(sorted(x for lat, _ in v for x in lat), 0.99) for k, v in runs.items()}
    floor_per = floor_cpu / max(len(floor), 1)
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
                "p99_on": p99["on"],
                "p99_off": p99["off"],
                "floor_cpu": floor_per,
                "exports": sink.counts["requests"],
            },
        )
    ]

"""`make bench`: the 09:00 peak, every figure beside its floor measured in the same run.

One scratch Postgres database, one Temporal dev server and one SMTP sink for everything.
Each firing figure runs twice, back to back, with one worker process at a time: the floor
(`bench.floor`: one timer, one activity, one mail) and escalator's real `worker.py`. The
ratio is escalator's figure over the floor's. Results print as a table and go to JSON.

    .venv/bin/python -m bench.peak [--only 1,4,6] [--json test-artifacts/bench.json]

| # | figure | target |
|---|---|---|
| 1 | 200 rungs at one instant, lateness p50 / p99 | p99 <= 1.5x the floor |
| 2 | 2,000 rungs at one instant, max lateness | <= 1.2x the floor (same cache) |
| 3 | a sustained 20 rungs/s for 60 s, p99 lateness | <= 1 s |
| 4 | worker CPU per rung (from figure 1) | <= 1.5x the floor |
| 5 | 20,000 open items on one worker: RSS; 20 moved due dates fire | <= 1 GiB; within 1 s |
| 6 | one escalation to 5,000 recipients, first to last mail | <= 1.5x the SMTP floor |
| 7 | POST /v1/tasks vs raw start_workflow; p99 at half that rate | >= 0.7x; <= 100 ms |
| 8 | claim commit -> SSE event at 1,000 subscribers, p99 | <= 250 ms |
| 9 | figure 1's burst with metrics and tracing on vs off: CPU per rung | <= 1.05x |
| 10 | the instrumentation's own CPU per rung (metric updates, spans), in-process | <= 5 % |
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from bench import figures  # noqa: E402
from bench.harness import Bench, Row  # noqa: E402
from bench.observability_bench import observability_cost  # noqa: E402
from bench.support import database, dev_server  # noqa: E402
from mailsink import MailSink  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8,9,10", help="figure numbers")
    parser.add_argument("--json", default=str(ROOT / "test-artifacts" / "bench.json"))
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--big-burst", type=int, default=2000)
    parser.add_argument("--open", type=int, default=20_000)
    parser.add_argument("--recipients", type=int, default=5_000)
    parser.add_argument(
        "--escalator-root",
        default=str(ROOT),
        help="another checkout's worker, API and migrations, to compare",
    )
    args = parser.parse_args()
    # The sink's line per mail would drown the figures: warnings and up only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    wanted = {int(n) for n in args.only.split(",")}
    with database(Path(args.escalator_root)) as url:
        rows = asyncio.run(run(url, wanted, args))
    print_table(rows)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    print(f"\nJSON: {out}")


async def run(url: str, wanted: set[int], args: argparse.Namespace) -> list[Row]:
    env = await dev_server()
    sink = MailSink().start()
    bench = Bench(
        url, env.client.service_client.config.target_host, sink, Path(args.escalator_root)
    )
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cores")
    steps: list[tuple[set[int], Callable[[], object]]] = [
        ({1, 4}, lambda: figures.burst_and_cpu(bench, env.client, args.burst)),
        ({2}, lambda: figures.big_burst(bench, env.client, args.big_burst)),
        ({3}, lambda: figures.sustained(bench, env.client)),
        ({5}, lambda: figures.open_items(bench, env.client, args.open)),
        ({6}, lambda: figures.fan_out(bench, env.client, args.recipients - 2)),
        ({7}, lambda: figures.create_path(bench, env.client)),
        ({8}, lambda: figures.claim_to_sse(bench)),
        ({9, 10}, lambda: observability_cost(bench, env.client, args.burst)),
    ]
    try:
        for numbers, step in steps:
            if numbers & wanted:
                rows = await step()  # type: ignore[misc]
                bench.rows += [r for r in rows if r.number in wanted]
    finally:
        sink.stop()
        await env.shutdown()
    return sorted(bench.rows, key=lambda r: r.number)


def print_table(rows: list[Row]) -> None:
    print("\n| # | figure | escalator | floor | ratio | target | met |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        met = "-" if r.met is None else ("yes" if r.met else "**no**")
        print(
            f"| {r.number} | {r.figure} | {r.escalator} | {r.floor} | {r.ratio} "
            f"| {r.target} | {met} |"
        )


if __name__ == "__main__":
    main()

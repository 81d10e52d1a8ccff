"""The figures of `make bench`, each measured for the floor and for escalator in one run."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from temporalio.client import Client

from activities.smtp import Smtp, SmtpPool
from bench.floor import FloorWorkflow
from bench.floor_types import FloorInput
from bench.harness import Bench, Row, cpu_seconds, ratio
from bench.support import percentile, rss_mib
from config import Settings
from db import create_engine, create_sessionmaker, tenant_session
from domain import lifecycle
from domain.clock import utcnow
from domain.demo import rung
from tests.support.tenants import Tenant
from workflows.escalation import EscalationWorkflow
from workflows.types import ChangeDueSignal, EscalationInput, workflow_id

REMIND_NOW = {
    "remind": rung({"business_seconds": 0}, ["assignee"], "task.reminder"),
    "escalate_1": None,
    "escalate_2": None,
}
TO = "floor@sink.bench"
CHUNK = 100  # starts in flight at once


async def tenant(bench: Bench, rungs: dict[str, Any] = REMIND_NOW) -> Tenant:
    engine = create_engine(Settings(database_url=bench.url), owner=True)
    made = await Tenant.create(create_sessionmaker(engine))
    await made.around_the_clock(rungs)
    return made


async def _gather_chunked(starts: list[Any]) -> None:
    for n in range(0, len(starts), CHUNK):
        await asyncio.gather(*starts[n : n + CHUNK])


async def start_floor(client: Client, queue: str, dues: list[datetime]) -> dict[str, datetime]:
    tags = {str(uuid.uuid4()): due for due in dues}
    await _gather_chunked(
        [
            client.start_workflow(
                FloorWorkflow.run,
                FloorInput(tag=tag, fire_at=due, to=TO),
                id=f"floor-{tag}",
                task_queue=queue,
            )
            for tag, due in tags.items()
        ]
    )
    return tags


async def start_escalator(
    client: Client, queue: str, made: Tenant, dues: list[datetime]
) -> dict[str, datetime]:
    ids = await made.add_items(dues)
    await _gather_chunked(
        [
            client.start_workflow(
                EscalationWorkflow.run,
                EscalationInput(item_id=str(i), account_id=str(made.account_id)),
                id=workflow_id(str(i)),
                task_queue=queue,
            )
            for i in ids
        ]
    )
    return {str(i): due for i, due in zip(ids, dues, strict=True)}


async def fire(
    bench: Bench,
    client: Client,
    kind: str,
    dues: Any,
    lead: float,
    env: dict[str, str] | None = None,
) -> tuple[list[float], float]:
    """Start one workflow per due instant (offsets in seconds from now + `lead`), wait for
    every mail: (lateness of each, worker CPU seconds from one second before the first
    instant to the last mail). `env`: more of the worker's environment."""
    queue = f"bench-{kind}-{uuid.uuid4()}"
    async with bench.worker(kind, queue, **(env or {})) as worker:
        base = utcnow() + timedelta(seconds=lead)
        instants = [base + timedelta(seconds=d) for d in dues]
        began = time.monotonic()
        if kind == "floor":
            tags = await start_floor(client, queue, instants)
        else:
            tags = await start_escalator(client, queue, await tenant(bench), instants)
        ready = (base - utcnow()).total_seconds() - 1
        if ready < 0:
            print(f"  ({kind}: starting took {time.monotonic() - began:.0f} s, past the instant)")
        await asyncio.sleep(max(ready, 0))
        cpu = cpu_seconds(worker.pid)
        bench.profile_window(worker, start=True)
        mails = await bench.mails(set(tags), within=900)
        used = cpu_seconds(worker.pid) - cpu
        bench.profile_window(worker, start=False)
    lateness = [m.received_wall - tags[m.message["X-Escalator-Item"]].timestamp() for m in mails]
    return sorted(lateness), used


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


async def burst_and_cpu(bench: Bench, client: Client, count: int) -> list[Row]:
    lead = 15 + count / 20
    floor, floor_cpu = await fire(bench, client, "floor", [0.0] * count, lead)
    ours, our_cpu = await fire(bench, client, "escalator", [0.0] * count, lead)
    f50, f99 = percentile(floor, 0.5), percentile(floor, 0.99)
    e50, e99 = percentile(ours, 0.5), percentile(ours, 0.99)
    per_floor, per_ours = floor_cpu / max(len(floor), 1), our_cpu / max(len(ours), 1)
    return [
        Row(
            1,
            f"{count} rungs at one instant: lateness p50 / p99",
            f"{_ms(e50)} / {_ms(e99)}",
            f"{_ms(f50)} / {_ms(f99)}",
            f"{ratio(e50, f50)} / {ratio(e99, f99)}",
            "p99 <= 1.5x",
            e99 <= 1.5 * f99 and len(ours) >= count,
            {"p50": e50, "p99": e99, "floor_p50": f50, "floor_p99": f99, "mails": len(ours)},
        ),
        Row(
            4,
            "worker CPU per rung",
            f"{per_ours * 1000:.1f} ms",
            f"{per_floor * 1000:.1f} ms",
            ratio(per_ours, per_floor),
            "<= 1.5x",
            per_ours <= 1.5 * per_floor,
            {"cpu_per_rung": per_ours, "floor_cpu_per_rung": per_floor},
        ),
    ]


async def big_burst(bench: Bench, client: Client, count: int) -> list[Row]:
    lead = 20 + count / 15
    floor, _ = await fire(bench, client, "floor", [0.0] * count, lead)
    ours, _ = await fire(bench, client, "escalator", [0.0] * count, lead)
    f_max, e_max = floor[-1], ours[-1]
    return [
        Row(
            2,
            f"{count:,} rungs at one instant: max lateness",
            _ms(e_max),
            _ms(f_max),
            ratio(e_max, f_max),
            "<= 1.2x",
            e_max <= 1.2 * f_max and len(ours) >= count,
            {"max": e_max, "floor_max": f_max, "mails": len(ours)},
        )
    ]


async def sustained(bench: Bench, client: Client, rate: int = 20, seconds: int = 60) -> list[Row]:
    dues = [n / rate for n in range(rate * seconds)]
    lead = 15 + len(dues) / 20
    floor, _ = await fire(bench, client, "floor", dues, lead)
    ours, _ = await fire(bench, client, "escalator", dues, lead)
    f99, e99 = percentile(floor, 0.99), percentile(ours, 0.99)
    return [
        Row(
            3,
            f"sustained {rate} rungs/s for {seconds} s: p99 lateness",
            _ms(e99),
            _ms(f99),
            ratio(e99, f99),
            "<= 1 s",
            e99 <= 1.0 and len(ours) >= len(dues),
            {"p99": e99, "floor_p99": f99, "mails": len(ours)},
        )
    ]


async def open_items(bench: Bench, client: Client, count: int, sample: int = 20) -> list[Row]:
    """`count` workflows with timers 30 days away on one worker: its RSS. Then, once the
    worker is idle (every workflow has taken its first steps), `sample` of escalator's get
    a due date moved to now (committed, then signalled, as the API does): each must fire
    once."""
    far = [30 * 86400.0] * count
    rss: dict[str, float] = {}
    fired, late, settled = 0, float("inf"), 0.0
    for kind in ("floor", "escalator"):
        queue = f"bench-{kind}-{uuid.uuid4()}"
        async with bench.worker(kind, queue) as worker:
            idle = rss_mib(worker.pid)
            instants = [utcnow() + timedelta(seconds=d) for d in far]
            began = time.monotonic()
            if kind == "floor":
                await start_floor(client, queue, instants)
                await asyncio.sleep(20)
            else:
                made = await tenant(bench)
                tags = await start_escalator(client, queue, made, instants)
                await asyncio.sleep(20)
                settled = await _settled(worker.pid)
                print(f"  escalator: worker idle {settled:.0f} s after the last start")
                fired, late = await _move_due(bench, client, made, list(tags)[:sample])
            rss[kind] = rss_mib(worker.pid)
            print(
                f"  {kind}: {count:,} started in {time.monotonic() - began:.0f} s; "
                f"RSS idle {idle:.0f} MiB, loaded {rss[kind]:.0f} MiB"
            )
    return [
        Row(
            5,
            f"{count:,} open items on one worker: RSS; {sample} moved due dates fire",
            f"{rss['escalator']:.0f} MiB; {fired}/{sample} fired, the latest {_ms(late)} late",
            f"{rss['floor']:.0f} MiB",
            ratio(rss["escalator"], rss["floor"]),
            "<= 1 GiB; all within 1 s",
            rss["escalator"] <= 1024 and fired == sample and late <= 1.0,
            {
                "rss_mib": rss["escalator"],
                "floor_rss_mib": rss["floor"],
                "fired": fired,
                "latest_seconds": late,
                "settled_seconds": settled,
            },
        )
    ]


async def _settled(pid: int, limit: float = 900.0) -> float:
    """Seconds until the worker is idle (under 5 % of a core over 2 s): every open item's
    workflow has taken its first steps, so the moved due dates meet open items, not a
    start-up backlog. Returns when it is, or after `limit`."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        before = cpu_seconds(pid)
        await asyncio.sleep(2)
        if cpu_seconds(pid) - before < 0.1:
            break
    return time.monotonic() - began


async def _move_due(
    bench: Bench, client: Client, made: Tenant, ids: list[str]
) -> tuple[int, float]:
    """Move the items' due dates to 5 s from now, as the API does: how many fired, and
    how late the latest mail was after its new instant."""
    engine = create_engine(Settings(database_url=bench.url))
    sessionmaker = create_sessionmaker(engine)
    due = utcnow() + timedelta(seconds=5)
    for item_id in ids:
        async with tenant_session(sessionmaker, made.account_id) as session:
            await lifecycle.change_due(
                session, made.account_id, uuid.UUID(item_id), made.user("ada"), utcnow(), due
            )
        await client.get_workflow_handle(workflow_id(item_id)).signal(
            EscalationWorkflow.change_due, ChangeDueSignal(due_at=due)
        )
    await engine.dispose()
    mails = await bench.mails(set(ids), within=120)
    late = max((m.received_wall - due.timestamp() for m in mails), default=float("inf"))
    return len({m.message["X-Escalator-Item"] for m in mails}), late


async def fan_out(bench: Bench, client: Client, engineers: int = 4998) -> list[Row]:
    """One rung to every engineer of an account (5,000 with Erin and Emil), first instant
    to last mail; the floor is the same number of mails over the same pool size, sent
    straight from here."""
    settings = Settings()
    pool = SmtpPool(
        Smtp.from_settings(settings.model_copy(update={"smtp_port": bench.sink.port})),
        settings.smtp_concurrency,
    )
    tag = str(uuid.uuid4())

    def mail(n: int) -> EmailMessage:
        message = EmailMessage()
        message["Subject"], message["To"], message["X-Escalator-Item"] = "fan-out", TO, tag
        message.set_content(f"mail {n}")
        return message

    total = engineers + 2
    began = time.monotonic()
    await asyncio.gather(*(pool.send(mail(n), sender=TO, recipients=[TO]) for n in range(total)))
    floor = time.monotonic() - began
    await pool.close()

    everyone = dict(
        REMIND_NOW,
        remind=rung({"business_seconds": 0}, ["account_roles:engineer"], "task.reminder"),
    )
    made = await tenant(bench, everyone)
    await made.add_engineers(engineers)
    queue = f"bench-escalator-{uuid.uuid4()}"
    async with bench.worker("escalator", queue):
        instant = utcnow() + timedelta(seconds=8)
        tags = await start_escalator(client, queue, made, [instant])
        [item] = tags
        deadline = time.monotonic() + 300
        while True:
            mails = [m for m in bench.sink.mails if m.message["X-Escalator-Item"] == item]
            if len(mails) >= total or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    ours = max(m.received_wall for m in mails) - instant.timestamp() if mails else float("inf")
    return [
        Row(
            6,
            f"one escalation to {total} recipients: instant to last mail",
            f"{_ms(ours)} ({len(mails)} mails)",
            f"{_ms(floor)} (pool of {settings.smtp_concurrency})",
            ratio(ours, floor),
            "<= 1.5x",
            ours <= 1.5 * floor and len(mails) >= total,
            {"seconds": ours, "floor_seconds": floor, "mails": len(mails)},
        )
    ]


async def create_path(bench: Bench, client: Client) -> list[Row]:
    from bench.api_bench import paced, rates

    root = bench.escalator_root
    api_rate, raw_rate, api_cpu = await rates(bench.url, client, 400, 16, root)
    p99 = await paced(bench.url, client, raw_rate / 2, 300, root)
    return [
        Row(
            7,
            "POST /v1/tasks vs raw start_workflow; p99 at half the raw rate",
            f"{api_rate:.0f}/s; p99 {p99 * 1000:.0f} ms at {raw_rate / 2:.0f}/s",
            f"{raw_rate:.0f}/s",
            ratio(api_rate, raw_rate),
            ">= 0.7x; p99 <= 100 ms",
            api_rate >= 0.7 * raw_rate and p99 <= 0.1,
            {
                "api_rate": api_rate,
                "raw_rate": raw_rate,
                "p99_half_rate": p99,
                "api_cpu_ms_per_request": api_cpu * 1000,
            },
        )
    ]


async def claim_to_sse(bench: Bench) -> list[Row]:
    from bench.sse_bench import measure

    latencies, _ = await measure(bench.url, subscribers=1000, claims=5)
    p99 = percentile(latencies, 0.99)
    return [
        Row(
            8,
            "claim commit -> SSE event at 1,000 subscribers: p99",
            _ms(p99),
            "-",
            "-",
            "<= 250 ms",
            p99 <= 0.25,
            {"p99": p99, "p50": percentile(latencies, 0.5)},
        )
    ]

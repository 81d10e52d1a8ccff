"""`make run`'s launcher for real (devstack.py: Temporal dev server with its UI, migrations,
worker, API, mail sink, demo data), on free ports and a scratch state folder; then what the
README promises of it: the curl walk-through runs as written (only the port differs), the
docs load with no CDN, and the moving demo item is at tier 2 within three minutes, in the
queue, in the Temporal UI's list and in the mail sink."""

from __future__ import annotations

import asyncio
import email
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from config import Settings
from mailsink import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEMO_TITLE = "Demo: cold room C-2 above 8 °C"


@dataclass
class Stack:
    api: str
    temporal: str
    ui: str
    worker_metrics: str
    state: Path
    printed: str


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("devstack")
    api_port, temporal_port, ui_port, smtp_port, metrics_port = (free_port() for _ in range(5))
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "ESCALATOR_STATE_DIR": str(state),
        "ESCALATOR_API_PORT": str(api_port),
        "ESCALATOR_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "ESCALATOR_TEMPORAL_UI_PORT": str(ui_port),
        "ESCALATOR_SMTP_PORT": str(smtp_port),
        "ESCALATOR_WORKER_METRICS_PORT": str(metrics_port),
    }
    log = (state / "launcher.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "devstack.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops everything." not in (printed := (state / "launcher.log").read_text()):
            assert process.poll() is None, printed
            assert time.monotonic() < deadline, printed
            time.sleep(0.5)
        yield Stack(
            api=f"http://127.0.0.1:{api_port}",
            temporal=f"127.0.0.1:{temporal_port}",
            ui=f"http://127.0.0.1:{ui_port}",
            worker_metrics=f"http://127.0.0.1:{metrics_port}/metrics",
            state=state,
            printed=printed,
        )
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def walkthrough() -> str:
    """The README's curl block, exactly as written."""
    after = README.read_text().split("<!-- walkthrough:", 1)[1]
    return after.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_readme_walkthrough_runs_as_written(stack: Stack) -> None:
    script = walkthrough().replace("http://127.0.0.1:8000", stack.api)
    assert script.count(stack.api) == 1  # the only difference: this run's port
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        # A shell of a person who followed the README: nothing exported but where this
        # run keeps its state (the README's is the default `.escalator/`).
        env={
            **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            "ESCALATOR_STATE_DIR": str(stack.state),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert '"state": "claimed"' in run.stdout
    assert '"claimer_name": "Emil Engineer"' in run.stdout


def test_make_run_prints_a_sign_in_link_per_role_and_they_sign_in(stack: Stack) -> None:
    roles = r"^\s+.+? \((owner|admin|engineer|viewer)\)\s+(http\S+)$"
    links = dict(re.findall(roles, stack.printed, re.M))
    assert set(links) == {"owner", "admin", "engineer", "viewer"}
    with httpx.Client(base_url=stack.api) as client:
        for role, url in links.items():
            token = url.split("?link=", 1)[1]
            shown = client.get("/v1/auth/sign-in-link", params={"link": token}).json()
            assert shown["role"] == role
        session = client.post("/v1/auth/session", json={"link": links["viewer"].split("=", 1)[1]})
        assert session.status_code == 200, session.text
        docs = client.get("/docs").text
        for asset in re.findall(r'(?:src|href)="(/static/docs/[^"]+)"', docs):
            assert client.get(asset).status_code == 200, asset
        assert "cdn" not in docs.lower()
        assert "cdn" not in client.get("/redoc").text.lower()


async def test_the_demo_item_is_at_tier_2_within_three_minutes(stack: Stack) -> None:
    started = time.monotonic()
    token = next(iter(re.findall(r"\?link=(\S+)", stack.printed)))  # the owner's
    async with httpx.AsyncClient(base_url=stack.api) as client:
        bearer = (await client.post("/v1/auth/session", json={"link": token})).json()
        headers = {"Authorization": f"Bearer {bearer['access_token']}"}
        demo: dict[str, object] = {}
        while time.monotonic() - started < 180:
            queue = (await client.get("/v1/queue", headers=headers)).json()
            demo = next((i for i in queue if i["title"] == DEMO_TITLE), {})
            if demo.get("tier") == 2:
                break
            await asyncio.sleep(2)
        assert demo.get("tier") == 2, demo

    temporal = await Client.connect(stack.temporal)
    query = f'EscalationTier = 2 AND WorkflowId = "item-{demo["id"]}"'
    for _ in range(50):
        listed = [w.id async for w in temporal.list_workflows(query)]
        if listed:
            break
        await asyncio.sleep(0.2)
    assert listed == [f"item-{demo['id']}"]

    mails = [email.message_from_bytes(p.read_bytes()) for p in (stack.state / "mail").glob("*.eml")]
    rungs = sorted(m["X-Escalator-Event"] for m in mails if m["X-Escalator-Item"] == demo["id"])
    assert rungs == ["task.escalated", "task.escalated_final", "task.reminder"]

    # The demo's rungs are on both /metrics pages the stack printed.
    assert f"(worker: {stack.worker_metrics})" in stack.printed
    async with httpx.AsyncClient() as client:
        worker_page = (await client.get(stack.worker_metrics)).text
        api_page = (await client.get(f"{stack.api}/metrics")).text
    assert 'escalator_rungs_fired_total{item_type="DEMO",tier="2"} 1.0' in worker_page
    assert 'escalator_rung_lateness_seconds_count{item_type="DEMO",tier="2"} 1.0' in worker_page
    assert "temporal_worker_task_slots_available" in worker_page
    assert 'escalator_open_items{state="open",tier="2"}' in api_page

"""`make run`'s launcher for real (devstack.py: Temporal dev server with its UI, migrations,
worker, API, mail sink, demo data), on free ports and a scratch state folder; then what the
README promises of it: the curl walk-through runs as written (only the port differs), the
docs load with no CDN, the moving demo item is at tier 2 within three minutes, in the
queue, in the Temporal UI's list and in the mail sink; and a newcomer's afternoon on its
pages, in Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect
from temporalio.client import Client, WorkflowExecutionStatus

from domain.clock import utcnow
from domain.demo import stable_id
from mailsink import free_port
from tests.e2e.journeys import change_capa_policy, create_edit_note_and_resolve
from tests.e2e.test_pages import Pages
from tests.support.pg import create_database, drop_database

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
    first_items: dict[str, dict[str, object]]  # the demo account's items at the first start
    second_items: dict[str, dict[str, object]]  # and at the second, before any test ran


@dataclass
class Started:
    process: subprocess.Popen[bytes]
    printed: str


def start(env: dict[str, str], state: Path, log_name: str) -> Started:
    """devstack.py as `make run` starts it, until it prints that everything runs."""
    log_path = state / log_name
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "devstack.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 180
    while "Ctrl-C stops everything." not in (printed := log_path.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"devstack did not start:\n{printed[-5000:]}")
        time.sleep(0.5)
    return Started(process, printed)


def stop(process: subprocess.Popen[bytes]) -> int:
    """Ctrl-C, as a person stops `make run`."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def items_of(api: str, printed: str) -> dict[str, dict[str, object]]:
    """Every item of the demo account, by id, read with the owner token `make run` printed."""
    token = printed.split("the demo owner's (7 days):", 1)[1].split()[0]
    page = httpx.get(
        f"{api}/v1/items",
        params={"limit": 200},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert page.status_code == 200, page.text
    return {item["id"]: item for item in page.json()["items"]}


@pytest.fixture(scope="module")
def stack(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack started, stopped with Ctrl-C and started again on the same state folder,
    as a person's second day with it: the tests run against the second start. Its own
    database on the tests' server (the stack migrates it), so no test's rows mix with the
    demo's."""
    state = tmp_path_factory.mktemp("devstack")
    database = create_database(server_url, prefix="escalator_devstack")
    api_port, temporal_port, ui_port, smtp_port, metrics_port = (free_port() for _ in range(5))
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "ESCALATOR_STATE_DIR": str(state),
        "ESCALATOR_API_PORT": str(api_port),
        "ESCALATOR_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "ESCALATOR_TEMPORAL_UI_PORT": str(ui_port),
        "ESCALATOR_SMTP_PORT": str(smtp_port),
        "ESCALATOR_WORKER_METRICS_PORT": str(metrics_port),
    }
    api = f"http://127.0.0.1:{api_port}"
    first = start(env, state, "launcher-1.log")
    try:
        before = items_of(api, first.printed)
    finally:
        assert stop(first.process) == 0, (state / "launcher-1.log").read_text()[-3000:]
    again = start(env, state, "launcher.log")
    try:
        yield Stack(
            api=api,
            temporal=f"127.0.0.1:{temporal_port}",
            ui=f"http://127.0.0.1:{ui_port}",
            worker_metrics=f"http://127.0.0.1:{metrics_port}/metrics",
            state=state,
            printed=again.printed,
            first_items=before,
            second_items=items_of(api, again.printed),
        )
    finally:
        stop(again.process)
        with contextlib.suppress(Exception):  # a lingering connection: the server's reset
            drop_database(database)


async def test_make_run_starts_again_on_its_state_with_its_data(stack: Stack) -> None:
    """Ctrl-C and `make run` again: every item of the first start is still there, the demo's
    standing items exist once (the seeding is idempotent by what it means, whatever the
    time), and the first start's workflows still run in Temporal."""
    again = stack.second_items
    assert set(stack.first_items) < set(again)
    for item_id, item in stack.first_items.items():
        assert again[item_id]["title"] == item["title"]
        assert again[item_id]["due_at"] == item["due_at"]
    titles = [str(item["title"]) for item in again.values()]
    standing = [t for t in titles if t != DEMO_TITLE]
    assert len(standing) == len(set(standing)) == 4, titles
    assert titles.count(DEMO_TITLE) == 2  # one moving item per start

    temporal = await Client.connect(stack.temporal)
    for item_id, item in stack.first_items.items():
        if item["state"] == "open" and item["title"] != DEMO_TITLE:
            described = await temporal.get_workflow_handle(f"item-{item_id}").describe()
            assert described.status == WorkflowExecutionStatus.RUNNING, item


def walkthrough() -> str:
    """The README's curl blocks, exactly as written, one after the other (the webhook
    block uses the first one's `API` and `ADA`)."""
    marked = README.read_text().split("<!-- walkthrough:")[1:]
    return "".join(block.split("```sh\n", 1)[1].split("```", 1)[0] for block in marked)


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
    assert '"secret":"whsec_' in run.stdout.replace(" ", "")  # the webhook block's endpoint


def test_make_run_prints_a_sign_in_link_per_role_and_they_sign_in(stack: Stack) -> None:
    roles = r"^\s+.+? \((owner|admin|engineer|viewer)\)\s+(http\S+)$"
    links = dict(re.findall(roles, stack.printed, re.M))
    assert set(links) == {"owner", "admin", "engineer", "viewer"}
    with httpx.Client(base_url=stack.api) as client:
        for role, url in links.items():
            token = url.split("#link=", 1)[1]
            shown = client.post("/v1/auth/sign-in-link/view", json={"link": token}).json()
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
    token = next(iter(re.findall(r"#link=(\S+)", stack.printed)))  # the owner's
    async with httpx.AsyncClient(base_url=stack.api) as client:
        bearer = (await client.post("/v1/auth/session", json={"link": token})).json()
        headers = {"Authorization": f"Bearer {bearer['access_token']}"}
        demo: dict[str, object] = {}
        while time.monotonic() - started < 180:
            queue = (await client.get("/v1/queue", headers=headers)).json()
            demo = next(  # this start's moving item: each start makes a new one
                (i for i in queue if i["title"] == DEMO_TITLE and i["id"] not in stack.first_items),
                {},
            )
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
    # The first start's moving item may reach tier 2 in this worker's lifetime too.
    assert re.search(
        r'escalator_rungs_fired_total\{item_type="DEMO",tier="2"\} [12]\.0', worker_page
    )
    lateness = r'escalator_rung_lateness_seconds_count\{item_type="DEMO",tier="2"\} [12]\.0'
    assert re.search(lateness, worker_page)
    assert "temporal_worker_task_slots_available" in worker_page
    assert 'escalator_open_items{state="open",tier="2"}' in api_page


def sign_in_links(state: Path, address: str) -> list[str]:
    """The sign-in links mailed to `address` so far, oldest first (the sink's .eml files)."""
    found = []
    for path in sorted((state / "mail").glob("*.eml"), key=lambda p: p.stat().st_mtime):
        mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if mail["X-Escalator-Event"] == "auth.sign_in" and address in str(mail["To"]):
            body = mail.get_body(("plain",))
            assert body is not None
            found += re.findall(r"https?://\S+(/signin#link=\S+)", body.get_content())
    return found


async def test_a_newcomers_afternoon(stack: Stack, pages: Pages) -> None:
    """Issue 22's afternoon, as one test, on the stack `make run` started, stopped and
    started again: sign in from a mailed link and land on the item it was opened from; see
    an item fall due live on the queue; create a task, edit it, note it and resolve it with
    a note, from the pages; change a policy and see its plan preview move."""
    site, ada = stack.api, "ada@demo.escalator.test"
    standing = next(
        i for i in stack.second_items.values() if i["title"] != DEMO_TITLE and i["state"] == "open"
    )
    context = await pages.context()
    page = await context.new_page()
    await page.goto(f"{site}/items/{standing['id']}")
    await expect(page.locator("#status")).to_have_text("signed out")
    await page.click("#signin-link-main")
    mailed = len(sign_in_links(stack.state, ada))
    await page.fill("#email", ada)
    await page.click("#send")
    await expect(page.locator("#sent")).to_be_visible()
    for _ in range(100):
        if len(links := sign_in_links(stack.state, ada)) > mailed:
            break
        await asyncio.sleep(0.2)
    await page.goto(f"{site}{links[-1]}")
    await page.click("#confirm")
    await expect(page).to_have_url(f"{site}/items/{standing['id']}")
    await expect(page.locator("#me-name")).to_have_text("Ada Admin")
    await expect(page.locator("#title")).to_have_text(str(standing["title"]))

    await page.goto(f"{site}/")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    bearer = await page.evaluate("localStorage.getItem('escalator.token')")
    due = utcnow() + timedelta(seconds=5)
    as_ada = httpx.AsyncClient(
        base_url=site, headers={"Authorization": f"Bearer {bearer}"}, timeout=10
    )
    made = await as_ada.post(
        "/v1/tasks",
        json={
            "type": "CAPA",
            "title": "Falls due this afternoon",
            "assignee_id": str(stable_id("demo", "user:emil")),
            "due_at": due.isoformat(),
        },
    )
    assert made.status_code == 201, made.text
    row = page.locator(f'#queue tbody tr[data-item-id="{made.json()["id"]}"]')
    await expect(row).to_be_visible(timeout=15_000)  # falling due is its only event
    await expect(row.locator(".overdue-by")).to_have_text(re.compile(r"^overdue \d+s$"))

    item_id = await create_edit_note_and_resolve(page, site, "Newcomer's filter clogged")
    resolved = (await as_ada.get(f"/v1/items/{item_id}")).json()
    await as_ada.aclose()
    assert (resolved["state"], resolved["title"]) == ("resolved", "Newcomer's filter clogged again")

    before, after = await change_capa_policy(page, site)
    assert before != after
    await context.close()

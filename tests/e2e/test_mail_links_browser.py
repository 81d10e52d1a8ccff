"""The links people get by mail, in headless Chromium against a real stack (dev server,
worker, SMTP sink, the API over HTTP): signing in with a link read from the sink, and
claiming from a notification's link, with the "already claimed" page for the next person.
Screenshots in test-artifacts/."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from config import Settings
from domain.clock import utcnow
from domain.demo import rung
from mailsink import MailSink, ReceivedMail, free_port
from tests.e2e.test_queue_page import ARTIFACTS, browser, token  # noqa: F401 (fixture)
from tests.support.live import serve
from tests.support.tenants import Tenant
from worker import build_worker

LINK = re.compile(r"(https?://\S+\?link=[A-Za-z0-9_.\-]+)")


@dataclass
class Live:
    url: str
    settings: Settings


@pytest.fixture
async def live(
    dev_env: WorkflowEnvironment, settings: Settings, mail_sink: MailSink, engine: AsyncEngine
) -> AsyncIterator[Live]:
    """The API over HTTP at a port known in advance (the mails' links point at it), and a
    worker on its own task queue."""
    port = free_port()
    ours = settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "task_queue": f"links-{uuid.uuid4()}",
            "smtp_port": mail_sink.port,
            "public_url": f"http://127.0.0.1:{port}",
        }
    )
    async with build_worker(dev_env.client, ours, engine):
        with serve(ours, port) as url:
            yield Live(url, ours)


def link(mail: ReceivedMail, page: str) -> str:
    body = mail.message.get_body(("plain",))
    assert body is not None
    found = [u for u in LINK.findall(str(body.get_content())) if f"/{page}?" in u]
    assert found, body
    return str(found[0])


async def test_magic_link_sign_in_from_the_mail_sink(
    browser: Browser,  # noqa: F811
    live: Live,
    tenant: Tenant,
    mail_sink: MailSink,
) -> None:
    mail_sink.clear()
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{live.url}/signin")
    await page.fill("#email", tenant.email("ada"))
    await page.click("#send")
    await expect(page.locator("#sent")).to_contain_text("on its way")
    await page.screenshot(path=str(ARTIFACTS / "signin-asked.png"), full_page=True)
    [mail] = await mail_sink.wait_for(1)
    await page.goto(link(mail, "signin"))
    await expect(page.locator("#confirm")).to_be_visible()
    await expect(page.locator("body")).to_contain_text("Ada Admin")
    await page.screenshot(path=str(ARTIFACTS / "signin-confirm.png"), full_page=True)
    await page.click("#confirm")
    await page.wait_for_url(f"{live.url}/")
    await expect(page.locator("body")).to_contain_text("Ada Admin", timeout=10_000)
    await page.screenshot(path=str(ARTIFACTS / "signin-done.png"), full_page=True)
    # The link worked once: opening it again says so and signs nobody in.
    again = await (await browser.new_context()).new_page()
    await again.goto(link(mail, "signin"))
    await expect(again.locator("body")).to_contain_text("used")


async def test_claim_from_the_mail_link_and_already_claimed_page(
    browser: Browser,  # noqa: F811
    live: Live,
    tenant: Tenant,
    mail_sink: MailSink,
) -> None:
    await tenant.around_the_clock(
        {
            "remind": rung({"business_seconds": 1}, ["assignee"], "task.reminder"),
            "escalate_1": rung({"business_seconds": 1}, ["assignee_manager"], "task.escalated"),
            "escalate_2": None,
        }
    )
    mail_sink.clear()
    bearer = {"Authorization": f"Bearer {token(live.settings, tenant, 'ada', 'admin')}"}
    body = {
        "type": "CAPA",
        "title": "Cold room C-2 above 8 °C",
        "assignee_id": str(tenant.user("erin")),
        "due_at": (utcnow() + timedelta(seconds=3)).isoformat(),
    }
    async with httpx.AsyncClient(base_url=live.url, headers=bearer) as client:
        created = await client.post("/v1/tasks", json=body)
        assert created.status_code == 201, created.text
    erins, adas = await mail_sink.wait_for(2, within=30)
    assert erins.rcpt_tos == (tenant.email("erin"),)

    erin = await (await browser.new_context()).new_page()
    await erin.goto(link(erins, "claim"))
    await expect(erin.locator("#claim")).to_be_visible()
    await expect(erin.locator("body")).to_contain_text("Erin Engineer")
    await erin.screenshot(path=str(ARTIFACTS / "claim-confirm.png"), full_page=True)
    await erin.click("#claim")
    await expect(erin.locator("body")).to_contain_text("Claimed", timeout=10_000)
    await erin.screenshot(path=str(ARTIFACTS / "claim-done.png"), full_page=True)

    ada = await (await browser.new_context()).new_page()
    await ada.goto(link(adas, "claim"))
    await expect(ada.locator("#claimed")).to_contain_text("Erin Engineer")
    await expect(ada.locator("#claim")).to_have_count(0)
    await ada.screenshot(path=str(ARTIFACTS / "claim-already.png"), full_page=True)

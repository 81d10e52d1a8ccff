"""The live queue page in headless Chromium (Debian's, driven by Playwright): two engineers
see an escalation arrive, one claims it, the other sees it claimed. Screenshot saved to
test-artifacts/queue.png."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from api.tokens import Principal, mint
from config import Settings
from domain.clock import utcnow
from mailsink import free_port
from tests.support.live import serve
from tests.support.tenants import Tenant

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    async with async_playwright() as playwright:
        # Each launch() gets a fresh temporary --user-data-dir from Playwright itself.
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        yield browser
        await browser.close()


@pytest.fixture(scope="module")
def site(settings: Settings) -> Iterator[str]:
    quiet = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    with serve(quiet) as url:
        yield url


def token(settings: Settings, tenant: Tenant, who: str, role: str) -> str:
    principal = Principal(user_id=tenant.user(who), account_id=tenant.account_id, role=role)
    return mint(principal, settings.jwt_secret, ttl=timedelta(hours=1), now=utcnow())


async def open_queue(browser: Browser, site: str, bearer: str) -> Page:
    context = await browser.new_context()  # its own storage: its own token
    page = await context.new_page()
    await page.goto(site)
    await page.fill("#token", bearer)
    await page.click("#signin button")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    return page


async def test_two_engineers_see_an_escalation_arrive_and_one_claim_it(
    browser: Browser, site: str, settings: Settings, tenant: Tenant
) -> None:
    erin = await open_queue(browser, site, token(settings, tenant, "erin", "engineer"))
    emil = await open_queue(browser, site, token(settings, tenant, "emil", "engineer"))

    async with httpx.AsyncClient(base_url=site) as client:
        created = await client.post(
            "/v1/sessions/sess-77/handoffs",
            json={"intent": "escalate", "title": "VPN down at ACME", "priority": "urgent"},
            headers={"Authorization": f"Bearer {token(settings, tenant, 'ada', 'admin')}"},
        )
    assert created.status_code == 201, created.text
    row = f'tr[data-item-id="{created.json()["id"]}"]'
    for page in (erin, emil):
        await expect(page.locator(row)).to_be_visible(timeout=2_000)
        await expect(page.locator(f"{row} .title")).to_have_text("VPN down at ACME")

    await erin.click(f"{row} button.claim")
    await expect(emil.locator(f"{row} .state")).to_contain_text("claimed", timeout=2_000)
    await expect(emil.locator(f"{row} button.claim")).to_have_count(0)

    ARTIFACTS.mkdir(exist_ok=True)
    await emil.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)

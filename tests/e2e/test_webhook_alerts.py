"""The queue page shows admins the webhook endpoints that were switched off, why and since
when, live (the `webhook.disabled` push event), and switches one back on; engineers see
none of it. Headless Chromium against the real
app over HTTP and real Postgres."""

from __future__ import annotations

import httpx
from playwright.async_api import expect
from sqlalchemy import update

from config import Settings
from domain import push
from domain.clock import utcnow
from domain.models import WebhookEndpoint
from tests.e2e.test_pages import Pages, signed_in
from tests.e2e.test_queue_page import ARTIFACTS, token
from tests.support.tenants import Tenant


async def test_admins_see_a_disabled_webhook_and_enable_it_again(
    pages: Pages, site: str, settings: Settings, tenant: Tenant
) -> None:
    ada = token(settings, tenant, "ada", "admin")
    async with httpx.AsyncClient(
        base_url=site, headers={"Authorization": f"Bearer {ada}"}
    ) as client:
        made = await client.post(
            "/v1/webhooks", json={"name": "PSA bridge", "url": "https://psa.example/hook"}
        )
        assert made.status_code == 201, made.text
        hook_id = made.json()["id"]
        page = await signed_in(pages, site, ada)
        await expect(page.locator("#webhook-alerts")).to_be_hidden()

        # What the worker does on a 410 (activities/webhook.py), written directly: the page,
        # already open, hears of it live.
        async with tenant.owner() as session, session.begin():
            await session.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == hook_id)
                .values(enabled=False, disabled_at=utcnow(), disabled_reason="410 Gone")
            )
            await push.publish(
                session,
                account_id=tenant.account_id,
                item=None,
                kind="webhook.disabled",
                dedup_key=f"{hook_id}:test-disabled",
                data={"endpoint_id": hook_id, "endpoint_name": "PSA bridge", "reason": "410 Gone"},
            )

        alert = page.locator(f'[data-webhook="{hook_id}"]')
        await expect(alert).to_contain_text("PSA bridge")
        await expect(alert).to_contain_text("410 Gone")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "queue-webhook-disabled.png"))

        engineer = await signed_in(pages, site, token(settings, tenant, "emil", "engineer"))
        await expect(engineer.locator("#webhook-alerts")).to_be_hidden()

        await alert.get_by_role("button", name="Enable again").click()
        await expect(page.locator("#webhook-alerts")).to_be_hidden()
        shown = (await client.get(f"/v1/webhooks/{hook_id}")).json()
        assert (shown["enabled"], shown["disabled_reason"], shown["consecutive_failures"]) == (
            True,
            None,
            0,
        )

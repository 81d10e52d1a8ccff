"""The calendars, webhooks and named-roles screens in headless Chromium, against the real
app over HTTP and real Postgres: an admin edits a calendar's hours and holidays and sees the
next two weeks change; adds a webhook endpoint (its secret shown once signs what it
receives), switches it off and on, sends a failed delivery again and deletes it; creates a
named role, adds and removes its members, and cannot delete one a policy names. Engineers
are turned away, and every page that links the admin screens links all of them."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from config import Settings
from domain.clock import utcnow
from domain.models import Role, RoleMember
from tests.api.test_resend import failed_delivery
from tests.e2e.test_pages import Pages, fresh_page, remember
from tests.e2e.test_queue_page import ARTIFACTS, token
from tests.support.tenants import Tenant
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.webhooks import endpoint_row

BERLIN = ZoneInfo("Europe/Berlin")
ADMIN_SCREENS = ["/admin/policies", "/admin/calendars", "/admin/people", "/admin/webhooks"]
NAV_HREF = re.compile(r'<a href="([^"]+)"')


async def admin_page(pages: Pages, site: str, bearer: str, path: str) -> Page:
    """A page in its own context, holding `bearer` as the sign-in page leaves it."""
    context = await pages.context()
    await context.add_init_script(remember(site, bearer))
    page = await context.new_page()
    await page.goto(site + path)
    return page


def weekdays_ahead(first: date, count: int) -> list[date]:
    """The first `count` weekdays after `first`, all inside the two weeks from `first`."""
    days = [first + timedelta(days=n) for n in range(1, 14)]
    return [day for day in days if day.weekday() < 5][:count]


async def test_an_admin_edits_a_calendar_and_sees_the_two_weeks_change(
    pages: Pages, site: str, settings: Settings, tenant: Tenant
) -> None:
    bearer = token(settings, tenant, "ada", "admin")
    page = await admin_page(pages, site, bearer, "/admin/calendars")
    await page.select_option("#calendar", label="Berlin office")
    days = page.locator("#preview tbody tr")
    await expect(days).to_have_count(14)
    today = utcnow().astimezone(BERLIN).date()
    holiday, working = weekdays_ahead(today, 2)

    def day(at: date) -> str:
        return f'#preview tr[data-date="{at.isoformat()}"]'

    await expect(page.locator(day(today))).to_be_visible()  # today in the calendar's zone first
    await expect(page.locator(f"{day(holiday)} .hours")).to_have_text("09:00-17:00")
    saturday = today + timedelta(days=(5 - today.weekday()) % 7)
    await expect(page.locator(f"{day(saturday)} .why")).to_have_text("Weekend")
    await expect(page.locator(f"{day(saturday)} .hours")).to_have_text("—")

    # A mistake the API finds is said in words, and nothing is saved.
    await page.fill("#hours-0", "09:00-12:00, 11:00-13:00")
    await page.click("#save")
    await expect(page.locator("#notice")).to_have_text("Monday intervals overlap at 11:00-13:00")
    # One the page finds never reaches the API.
    await page.fill("#hours-0", "9 to 5")
    await page.click("#save")
    await expect(page.locator("#notice")).to_have_text(re.compile(r"^Monday: write the hours like"))

    for weekday in range(5):
        await page.fill(f"#hours-{weekday}", "08:00-12:00, 13:00-16:30")
    await page.fill("#custom-new", holiday.isoformat())
    await page.click("#custom-add")
    await expect(page.locator(f'#custom li[data-date="{holiday.isoformat()}"]')).to_be_visible()
    await page.click("#save")
    await expect(page.locator("#notice")).to_have_text("Saved: Berlin office version 2.")
    await expect(page.locator(f"{day(holiday)} .why")).to_have_text("Custom holiday")
    await expect(page.locator(f"{day(holiday)} .hours")).to_have_text("—")
    await expect(page.locator(f"{day(working)} .hours")).to_have_text("08:00-12:00, 13:00-16:30")
    await expect(page.locator("#preview-zone")).to_have_text("(Europe/Berlin, version 2)")
    await expect(page.locator("#version")).to_have_text("version 2")

    async with httpx.AsyncClient(base_url=site) as client:
        calendars = await client.get("/v1/calendars", headers={"Authorization": f"Bearer {bearer}"})
    [saved] = [c for c in calendars.json() if c["name"] == "Berlin office"]
    assert saved["hours"]["4"] == [["08:00", "12:00"], ["13:00", "16:30"]]
    assert saved["custom_holidays"] == [holiday.isoformat()]
    ARTIFACTS.mkdir(exist_ok=True)
    await page.evaluate("window.scrollTo(0, 0)")  # the sticky bar stays on top of the shot
    await page.evaluate("document.querySelector('.topbar').style.position = 'static'")
    await page.screenshot(path=str(ARTIFACTS / "calendars.png"), full_page=True)


async def role_members(tenant: Tenant) -> dict[str, set[uuid.UUID]]:
    """Each named role of the tenant by key, with its members' ids, as stored."""
    async with tenant.owner() as session:
        keys = await session.scalars(select(Role.key).where(Role.account_id == tenant.account_id))
        members = await session.execute(
            select(Role.key, RoleMember.user_id)
            .join(RoleMember, RoleMember.role_id == Role.id)
            .where(Role.account_id == tenant.account_id)
        )
        stored: dict[str, set[uuid.UUID]] = {key: set() for key in keys}
        for key, user_id in members:
            stored[key].add(user_id)
    return stored


async def test_an_admin_manages_named_roles_on_the_people_page(
    pages: Pages, site: str, settings: Settings, tenant: Tenant
) -> None:
    page = await admin_page(pages, site, token(settings, tenant, "ada", "admin"), "/admin/people")
    notice = page.locator("#notice")
    quality = page.locator('#roles tr[data-role-key="quality_manager"]')
    await expect(quality.locator(".name")).to_have_text("Quality Manager")
    await expect(quality.locator(".members .member-name")).to_have_text(["Ada Admin"])

    await page.click("#new-role summary")
    await page.fill("#role-name", "Night shift")
    await page.fill("#role-key", "Night shift")  # one the page finds never reaches the API
    await page.click("#role-create")
    await expect(notice).to_have_text(re.compile(r"^The key is lower-case letters, digits and _"))
    await page.fill("#role-key", "night_shift")
    await page.click("#role-create")
    await expect(notice).to_have_text("Created Night shift: policies name it role:night_shift.")
    night = page.locator('#roles tr[data-role-key="night_shift"]')
    await expect(night.locator(".key")).to_have_text("role:night_shift")
    await expect(night.locator(".members")).to_have_text("nobody yet")

    for name in ["Emil Engineer", "Erin Engineer"]:
        await night.locator(".add-member select").select_option(label=name)
        await night.locator("button.add").click()
        await expect(notice).to_have_text(f"{name} is now in Night shift.")
    await expect(night.locator(".members .member-name")).to_have_text(
        ["Emil Engineer", "Erin Engineer"]
    )
    erin = night.locator(f'.members li[data-user-id="{tenant.user("erin")}"]')
    await erin.locator("button.remove").click()
    await expect(notice).to_have_text("Erin Engineer is no longer in Night shift.")
    await expect(night.locator(".members .member-name")).to_have_text(["Emil Engineer"])
    assert (await role_members(tenant))["night_shift"] == {tenant.user("emil")}

    # The demo policies notify through role:quality_manager: the API's reason, in words.
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await quality.locator("button.delete").click()
    await expect(notice).to_have_text(
        "Quality Manager was not deleted: role 'quality_manager' is a recipient in "
        "CAPA v1, DEMO v1, DOC_ACK v1, handoff v1: change those policies first"
    )
    await expect(quality).to_be_visible()
    assert (await role_members(tenant))["quality_manager"] == {tenant.user("ada")}

    ARTIFACTS.mkdir(exist_ok=True)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.evaluate("document.querySelector('.topbar').style.position = 'static'")
    await page.screenshot(path=str(ARTIFACTS / "people.png"), full_page=True)

    await night.locator("button.delete").click()
    await expect(notice).to_have_text("Deleted Night shift.")
    await expect(night).to_have_count(0)
    assert "night_shift" not in await role_members(tenant)
    assert "quality_manager" in await role_members(tenant)


async def wait_for_request(receiver: WebhookReceiver) -> None:
    for _ in range(100):  # the worker posts it; nothing tells the test when
        if receiver.requests:
            return
        await asyncio.sleep(0.1)


async def test_an_admin_adds_switches_resends_and_deletes_a_webhook(
    pages: Pages, working_site: str, settings: Settings, tenant: Tenant
) -> None:
    site = working_site  # the resend is posted by the worker
    page = await admin_page(pages, site, token(settings, tenant, "ada", "admin"), "/admin/webhooks")
    await expect(page.locator("#endpoints-empty")).to_be_visible()
    with WebhookReceiver() as receiver:
        await page.click("#add summary")
        await page.fill("#new-name", "Pager")
        await page.fill("#new-url", receiver.url)
        await page.fill("#new-filter", "task.*, handoff.escalated")
        await page.click("#add-send")
        await expect(page.locator("#secret")).to_have_text(re.compile(r"^whsec_"))
        secret = await page.locator("#secret").inner_text()
        receiver.secrets.append(secret)  # only what the page showed verifies its signatures
        await page.click("#secret-done")
        await expect(page.locator("#secret-box")).to_be_hidden()
        row = page.locator("#endpoints tbody tr", has_text="Pager")
        await expect(row.locator(".url")).to_have_text(receiver.url)
        await expect(row.locator(".events")).to_have_text("task.*, handoff.escalated")
        await expect(row.locator(".status")).to_have_text("enabled")
        endpoint_id = await row.get_attribute("data-endpoint-id")
        assert endpoint_id is not None

        await row.locator("button.toggle").click()
        await expect(row.locator(".status")).to_contain_text("disabled")
        await expect(row.locator(".status .reason")).to_contain_text("disabled by an admin since ")
        assert not (await endpoint_row(tenant, endpoint_id)).enabled
        await row.locator("button.toggle").click()
        await expect(row.locator(".status")).to_have_text("enabled")
        assert (await endpoint_row(tenant, endpoint_id)).enabled

        item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=5))
        delivery_id = await failed_delivery(tenant, item_id, endpoint_id)
        await row.locator("button.show").click()
        await expect(page.locator("#deliveries-name")).to_have_text("Pager")
        delivery = page.locator(f'#deliveries tr[data-delivery-id="{delivery_id}"]')
        await expect(delivery.locator(".status")).to_contain_text("failed")
        await expect(delivery.locator(".error")).to_have_text("HTTP 503")
        await delivery.locator("button.resend").click()
        await expect(page.locator("#notice")).to_have_text("Sending again to Pager.")
        await wait_for_request(receiver)
        [got] = receiver.requests
        assert got.headers["webhook-id"] == str(delivery_id)  # the same delivery, again
        assert got.verified_with == [secret]
        # The page follows the delivery while it is on its way.
        await expect(delivery.locator(".status")).to_have_text("sent", timeout=10_000)
        await expect(delivery.locator("button.resend")).to_have_count(0)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "webhooks.png"), full_page=True)

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await row.locator("button.delete").click()
    await expect(page.locator("#notice")).to_have_text("Deleted Pager.")
    await expect(page.locator("#endpoints tbody tr")).to_have_count(0)
    await expect(page.locator("#deliveries-box")).to_be_hidden()
    assert (await endpoint_row(tenant, endpoint_id)).deleted_at is not None


@pytest.mark.parametrize("path", ["/admin/calendars", "/admin/webhooks"])
async def test_an_engineer_is_turned_away(
    pages: Pages, site: str, settings: Settings, tenant: Tenant, path: str
) -> None:
    page = await admin_page(pages, site, token(settings, tenant, "emil", "engineer"), path)
    await expect(page.locator("#signed-out")).to_be_visible()  # admins only
    await expect(page.locator("#calendars, #webhooks")).to_be_hidden()
    _, anonymous = await fresh_page(pages)
    await anonymous.goto(site + path)
    await expect(anonymous.locator("#signed-out")).to_be_visible()


async def test_every_page_with_admin_links_links_every_admin_screen(site: str) -> None:
    async with httpx.AsyncClient(base_url=site) as client:
        for path in ["/", "/items", f"/items/{uuid.uuid4()}", *ADMIN_SCREENS]:
            page = await client.get(path)
            assert page.status_code == 200, path
            nav = page.text.split('<nav aria-label="pages">', 1)[1].split("</nav>", 1)[0]
            admin_links = [href for href in NAV_HREF.findall(nav) if href.startswith("/admin/")]
            assert admin_links == ADMIN_SCREENS, path

"""The browser pages in headless Chromium, against the real app over HTTP and real Postgres:
the queue's filters, urgency order and countdowns; the item page's plan, timeline,
deliveries and why; two people seeing each other's claims live; sign-in and claim from
real mails. The browsers run in German in New York, so nothing may assume en-US or UTC.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, ViewportSize, expect
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from api.tokens import Principal, mint
from config import Settings
from domain.clock import utcnow
from domain.demo import rung
from domain.models import AuditEvent, Delivery, Item, User
from mailsink import MailSink, ReceivedMail
from tests.api.test_resend import failed_delivery
from tests.e2e.journeys import change_capa_policy, create_edit_note_and_resolve
from tests.e2e.test_queue_page import ARTIFACTS, token
from tests.support.live import serve
from tests.support.tenants import Tenant
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.webhooks import add_endpoint
from worker import build_worker

LOCALE, ZONE = "de-DE", "America/New_York"
VIEWPORT = ViewportSize(width=1280, height=860)


def german_due(year: int, month: int, day: int, hour: int) -> datetime:
    """A due date typed into a page's date field, in the browser's zone."""
    return datetime(year, month, day, hour, tzinfo=ZoneInfo(ZONE))


def german(at: datetime) -> str:
    """An instant as the page shows it here: Intl's de-DE medium date, short time."""
    local = at.astimezone(ZoneInfo(ZONE))
    return f"{local:%d.%m.%Y, %H:%M}"


class Pages:
    """New browser contexts in German in New York; any uncaught script error in any of
    their pages fails the test."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.errors: list[str] = []

    async def context(self) -> BrowserContext:
        context = await self.browser.new_context(locale=LOCALE, timezone_id=ZONE, viewport=VIEWPORT)
        context.on("page", lambda page: page.on("pageerror", self._error))
        return context

    def _error(self, error: Exception) -> None:
        self.errors.append(str(error))


@pytest.fixture
def pages(browser: Browser) -> Iterator[Pages]:
    opened = Pages(browser)
    yield opened
    assert opened.errors == [], opened.errors


def remember(site: str, bearer: str) -> str:
    """A script storing the token as the sign-in page does (on the site only: about:blank
    has no storage)."""
    return f"if (location.origin === {site!r}) localStorage.setItem('escalator.token', {bearer!r})"


async def signed_in(pages: Pages, site: str, bearer: str, path: str = "/") -> Page:
    """A page in its own context (its own storage), signed in with `bearer`, once live."""
    context = await pages.context()
    await context.add_init_script(remember(site, bearer))
    page = await context.new_page()
    await page.goto(site + path)
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)
    return page


async def stamp(tenant: Tenant, item_id: str, **values: Any) -> None:
    """Write what the worker would have recorded (plan instants, fired stamps)."""
    async with tenant.owner() as session, session.begin():
        await session.execute(update(Item).where(Item.id == uuid.UUID(item_id)).values(**values))


async def row_ids(page: Page) -> list[str]:
    ids: list[str] = await page.locator("#queue tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.itemId)"
    )
    return ids


async def toggle(page: Page, name: str) -> None:
    await page.click(f'[data-filter="{name}"]')


async def test_queue_filters_and_countdowns(
    pages: Pages, site: str, settings: Settings, tenant: Tenant
) -> None:
    now = utcnow()
    ada = {"Authorization": f"Bearer {token(settings, tenant, 'ada', 'admin')}"}
    emil = {"Authorization": f"Bearer {token(settings, tenant, 'emil', 'engineer')}"}

    async with httpx.AsyncClient(base_url=site, headers=ada) as client:

        async def task(title: str, who: str, due: datetime) -> str:
            body = {"type": "CAPA", "title": title, "assignee_id": str(tenant.user(who))}
            made = await client.post("/v1/tasks", json={**body, "due_at": due.isoformat()})
            assert made.status_code == 201, made.text
            return str(made.json()["id"])

        async def handoff(ref: str, **body: str) -> str:
            made = await client.post(f"/v1/sessions/{ref}/handoffs", json=body)
            assert made.status_code == 201, made.text
            return str(made.json()["id"])

        pump = await task("Pump P-101 leaks", "erin", now - timedelta(days=2))
        sop = await task("Update SOP-12", "emil", now - timedelta(days=3))
        scale = await task("Calibrate scale S-7", "emil", now - timedelta(days=1))
        vpn = await handoff(
            "sess-1", intent="escalate", title="VPN down at ACME", priority="urgent"
        )
        logs = await handoff("sess-2", intent="park", title="Waiting on logs", priority="low")
        claimed = await client.post(f"/v1/items/{scale}/claim", headers=emil)
        assert claimed.status_code == 200, claimed.text
    # Tier 1 (escalate_1 fired), each with escalate_2 ahead: the pump's sooner than the SOP's.
    fired = {"remind_fired_at": now - timedelta(days=1), "escalate_1_fired_at": now}
    await stamp(tenant, pump, **fired, escalate_2_at=now + timedelta(minutes=5))
    await stamp(tenant, sop, **fired, escalate_2_at=now + timedelta(hours=1))
    await stamp(tenant, vpn, remind_at=now + timedelta(minutes=2))

    page = await signed_in(pages, site, token(settings, tenant, "erin", "engineer"))
    await expect(page.locator("#me-name")).to_have_text("Erin Engineer")
    await expect(page.locator("#queue tbody tr")).to_have_count(5)
    # Higher tier first, then the soonest next rung, then priority (none counts as normal).
    assert await row_ids(page) == [pump, sop, vpn, scale, logs]

    def row(item_id: str) -> str:
        return f'#queue tr[data-item-id="{item_id}"]'

    await expect(page.locator(f"{row(pump)} .tier")).to_have_text("T1")
    await expect(page.locator(f"{row(vpn)} .tier")).to_have_text("·")
    await expect(page.locator(f"{row(vpn)} .kind")).to_have_text("Handoff · escalate")
    await expect(page.locator(f"{row(pump)} .kind")).to_have_text("Task · CAPA")
    await expect(page.locator(f"{row(vpn)} .priority")).to_have_text("urgent")
    await expect(page.locator(f"{row(logs)} .state")).to_have_text("paused")
    await expect(page.locator(f"{row(scale)} .state")).to_have_text("claimed by Emil Engineer")
    await expect(page.locator(f"{row(pump)} .due time")).to_have_text(
        german(now - timedelta(days=2))
    )
    await expect(page.locator(f"{row(pump)} .due .overdue-by")).to_have_text("overdue 2d 0h")
    await expect(page.locator(f"{row(pump)} .item .assignee")).to_have_text(
        "assigned to Erin Engineer"
    )
    await expect(page.locator(f"{row(pump)} a")).to_have_attribute("href", f"/items/{pump}")
    # Erin may claim what is open or paused, and nothing Emil holds.
    await expect(page.locator(f"{row(logs)} button.claim")).to_have_count(1)
    await expect(page.locator(f"{row(scale)} button")).to_have_count(0)

    countdown = page.locator(f"{row(pump)} .countdown")
    # "next: who, in how long", not a rung key.
    await expect(countdown).to_have_text(re.compile(r"^Otto Owner in 4m \d{1,2}s$"))
    before = await countdown.text_content()
    await expect(countdown).not_to_have_text(before or "", timeout=3_000)
    await expect(page.locator(f"{row(vpn)} .countdown")).to_have_text(
        re.compile(r"^Ada Admin, Emil Engineer \+2 in 1m \d{1,2}s$")  # the handoff's fan-out
    )

    expected = {
        ("mine",): [pump],
        ("unclaimed",): [pump, sop, vpn, logs],
        ("tier1",): [pump, sop],
        ("tasks",): [pump, sop, scale],
        ("handoffs",): [vpn, logs],
        ("unclaimed", "handoffs"): [vpn, logs],
        ("mine", "tier1"): [pump],
    }
    for names, rows in expected.items():
        for name in names:
            await toggle(page, name)
        await expect(page.locator("#queue tbody tr")).to_have_count(len(rows))
        assert await row_ids(page) == rows, names
        for name in names:
            await toggle(page, name)
    await expect(page.locator("#queue tbody tr")).to_have_count(5)
    # Tasks only and handoffs only exclude each other: pressing one lifts the other.
    await toggle(page, "unclaimed")
    await toggle(page, "handoffs")
    await toggle(page, "tasks")
    await expect(page.locator('[data-filter="handoffs"]')).to_have_attribute(
        "aria-pressed", "false"
    )
    await expect(page.locator("#queue tbody tr")).to_have_count(2)
    assert await row_ids(page) == [pump, sop]
    await toggle(page, "tasks")
    await toggle(page, "unclaimed")

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "queue-filters.png"), full_page=True)
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.screenshot(path=str(ARTIFACTS / "queue-phone.png"), full_page=True)


async def test_item_page_shows_plan_timeline_deliveries_and_why(
    pages: Pages, site: str, settings: Settings, tenant: Tenant
) -> None:
    ada = {"Authorization": f"Bearer {token(settings, tenant, 'ada', 'admin')}"}
    emil = {"Authorization": f"Bearer {token(settings, tenant, 'emil', 'engineer')}"}
    due = utcnow() + timedelta(days=7)
    async with httpx.AsyncClient(base_url=site, headers=ada) as client:
        made = await client.post(
            "/v1/tasks",
            json={
                "type": "CAPA",
                "title": "Pump P-101 leaks",
                "assignee_id": str(tenant.user("erin")),
                "due_at": due.isoformat(),
            },
        )
        assert made.status_code == 201, made.text
        item_id = made.json()["id"]
        for verb in ("claim", "release"):
            done = await client.post(f"/v1/items/{item_id}/{verb}", headers=emil)
            assert done.status_code == 200, done.text
    sent_at = utcnow() - timedelta(minutes=5)
    async with tenant.owner() as session, session.begin():
        session.add(
            AuditEvent(
                account_id=tenant.account_id,
                item_id=uuid.UUID(item_id),
                action="rung_fired",
                tier=0,
                data={"rung": "remind", "planned_at": sent_at.isoformat()},
            )
        )
        common = {"account_id": tenant.account_id, "item_id": uuid.UUID(item_id)}
        session.add_all(
            [
                # Rank 1 of escalate_1's chain: the assignee's manager came first, invalid.
                Delivery(
                    **common,
                    recipient_id=tenant.user("ada"),
                    event_key="task.escalated",
                    channel="email",
                    resolver_rank=1,
                    status="sent",
                    attempts=1,
                    sent_at=sent_at,
                ),
                Delivery(
                    **common,
                    recipient_id=tenant.user("erin"),
                    event_key="task.reminder",
                    channel="email",
                    resolver_rank=0,
                    status="failed",
                    attempts=3,
                    last_error="550 5.1.1 mailbox unavailable",
                ),
            ]
        )
    await stamp(tenant, item_id, remind_fired_at=sent_at)
    async with httpx.AsyncClient(base_url=site, headers=ada) as client:
        plan = (await client.get(f"/v1/items/{item_id}")).json()["plan"]
    assert [r["status"] for r in plan] == ["fired", "pending", "pending"]

    page = await signed_in(
        pages, site, token(settings, tenant, "erin", "engineer"), f"/items/{item_id}"
    )
    await expect(page.locator("#title")).to_have_text("Pump P-101 leaks")
    await expect(page.locator("#kind")).to_have_text("Task · CAPA")
    await expect(page.locator("#badges")).to_contain_text("open")
    await expect(page.locator("#badges .tier-0")).to_have_text("T0")
    await expect(page.locator("#next .countdown")).to_have_text(re.compile(r"^Ada Admin in "))
    await expect(page.locator("#assignee")).to_have_text("Erin Engineer")
    berlin = due.astimezone(ZoneInfo("Europe/Berlin"))
    await expect(page.locator("#due")).to_contain_text(f"{berlin:%H:%M}Europe/Berlin")
    await expect(page.locator("#due")).to_contain_text(f"{german(due)}your time, {ZONE}")
    await expect(page.locator("#claimer")).to_have_text("nobody")

    rows = page.locator("#plan tbody tr")
    await expect(rows).to_have_count(3)
    names = {"remind": "Erin Engineer", "escalate_1": "Ada Admin", "escalate_2": "Otto Owner"}
    for n, planned in enumerate(plan):
        line = rows.nth(n)
        await expect(line.locator(".rung")).to_contain_text(planned["name"])
        await expect(line.locator(".status")).to_have_text(planned["status"])
        await expect(line.locator(".at-local")).to_have_text(planned["at_local"])
        await expect(line.locator(".at-viewer")).to_have_text(
            german(datetime.fromisoformat(planned["at"]))
        )
        await expect(line.locator(".recipients")).to_have_text(names[planned["name"]])
        assert planned["at_local"].endswith("Europe/Berlin")

    timeline = page.locator("#timeline li")
    await expect(timeline).to_have_count(4)
    for n, (label, actor) in enumerate(
        [
            ("Created", "Ada Admin"),
            ("Claimed", "Emil Engineer"),
            ("Released", "Emil Engineer"),
            ("remind fired", "escalator"),
        ]
    ):
        await expect(timeline.nth(n).locator(".action")).to_have_text(label)
        await expect(timeline.nth(n).locator(".actor")).to_have_text(f" by {actor}")

    deliveries = page.locator("#deliveries tbody tr")
    await expect(deliveries).to_have_count(2)
    to_ada = deliveries.filter(has_text="Ada Admin")
    await expect(to_ada.locator(".recipient")).to_contain_text(tenant.email("ada"))
    await expect(to_ada.locator(".event")).to_contain_text("escalate_1 · task.escalated")
    await expect(to_ada).to_contain_text("sent")
    await expect(to_ada.locator(".why")).to_have_text(
        "role quality_manager (tried first: the assignee's manager, with nobody valid)"
    )
    to_erin = deliveries.filter(has_text="Erin Engineer")
    await expect(to_erin.locator(".why")).to_have_text("the assignee")
    await expect(to_erin.locator(".error")).to_have_text("550 5.1.1 mailbox unavailable")
    await expect(to_erin.locator(".attempts")).to_have_text("3")

    # An engineer may claim, pause and resolve an open item; cancelling is for admins.
    for verb in ("claim", "pause", "resolve"):
        await expect(page.locator(f"#action-{verb}")).to_be_visible()
    for verb in ("cancel", "release", "resume"):
        await expect(page.locator(f"#action-{verb}")).to_have_count(0)

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "item-page.png"), full_page=True)


async def test_two_pages_see_each_others_actions(
    pages: Pages, site: str, settings: Settings, tenant: Tenant
) -> None:
    ada = token(settings, tenant, "ada", "admin")
    async with httpx.AsyncClient(base_url=site) as client:
        made = await client.post(
            "/v1/sessions/sess-9/handoffs",
            json={"intent": "escalate", "title": "Printer fleet offline", "priority": "high"},
            headers={"Authorization": f"Bearer {ada}"},
        )
    assert made.status_code == 201, made.text
    item_id = made.json()["id"]
    path = f"/items/{item_id}"
    erin = await signed_in(pages, site, token(settings, tenant, "erin", "engineer"), path)
    emil = await signed_in(pages, site, token(settings, tenant, "emil", "engineer"), path)
    # Ada's queue gets no live updates, so it still offers the claim after Erin's.
    stale_context = await pages.context()
    await stale_context.add_init_script(remember(site, ada))
    await stale_context.route("**/v1/events/**", lambda route: route.abort())
    stale = await stale_context.new_page()
    await stale.goto(site)
    await expect(stale.locator(f'tr[data-item-id="{item_id}"] button.claim')).to_be_visible()

    await emil.evaluate("window.notReloaded = true")
    await expect(emil.locator("#action-claim")).to_be_visible()
    await erin.click("#action-claim")
    await expect(erin.locator("#badges")).to_contain_text("claimed by Erin Engineer")
    await expect(erin.locator("#action-release")).to_be_visible()
    await expect(emil.locator("#badges")).to_contain_text("claimed by Erin Engineer", timeout=3_000)
    await expect(emil.locator("#claimer")).to_contain_text("Erin Engineer")
    await expect(emil.locator("#action-claim")).to_have_count(0)
    await expect(emil.locator("#action-release")).to_have_count(0)
    await expect(emil.locator("#timeline li").last).to_contain_text("Claimed by Erin Engineer")
    assert await emil.evaluate("window.notReloaded") is True

    await stale.click(f'tr[data-item-id="{item_id}"] button.claim')
    await expect(stale.locator("#notice")).to_contain_text(
        re.compile(r"Too late: claimed by Erin Engineer at \d\d\.\d\d\.\d{4}, \d\d:\d\d")
    )

    await erin.click("#action-release")
    await expect(emil.locator("#action-claim")).to_be_visible(timeout=3_000)
    await expect(emil.locator("#badges")).to_contain_text("open")
    await emil.click("#action-claim")
    await expect(erin.locator("#badges")).to_contain_text("claimed by Emil Engineer", timeout=3_000)

    ARTIFACTS.mkdir(exist_ok=True)
    await erin.screenshot(path=str(ARTIFACTS / "two-pages.png"), full_page=True)


LINK = re.compile(r"https?://\S+?(/(?:signin|claim|address)#link=[A-Za-z0-9_.\-]+)")


def link_path(mail: ReceivedMail) -> str:
    body = mail.message.get_body(("plain",))
    assert body is not None
    found = LINK.search(str(body.get_content()))
    assert found, body.get_content()
    return found[1]


def with_next(link: str, next_path: str) -> str:
    """The link with a `?next=` (the page the sign-in page was opened from) before its
    fragment, where the token is."""
    path, fragment = link.split("#", 1)
    return f"{path}?next={next_path}#{fragment}"


async def new_task(site: str, settings: Settings, tenant: Tenant, title: str, due: datetime) -> str:
    """A CAPA task for Erin, created through the API as Ada: its id."""
    async with httpx.AsyncClient(base_url=site) as client:
        made = await client.post(
            "/v1/tasks",
            json={
                "type": "CAPA",
                "title": title,
                "assignee_id": str(tenant.user("erin")),
                "due_at": due.isoformat(),
            },
            headers={"Authorization": f"Bearer {token(settings, tenant, 'ada', 'admin')}"},
        )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def fresh_page(pages: Pages) -> tuple[BrowserContext, Page]:
    context = await pages.context()
    return context, await context.new_page()


async def test_magic_link_sign_in_from_the_mail_sink(
    pages: Pages, working_site: str, settings: Settings, tenant: Tenant, mail_sink: MailSink
) -> None:
    site = working_site  # the sign-in mail goes out through the worker
    item_id = await tenant.add_item(due_at=utcnow() - timedelta(days=1), title="Leaking valve")
    context, page = await fresh_page(pages)
    await page.goto(site)
    await expect(page.locator("#signed-out")).to_be_visible()
    await expect(page.locator("#signin-link")).to_have_attribute("href", "/signin")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "signed-out.png"), full_page=True)
    await page.goto(f"{site}/items/{item_id}")
    await expect(page.locator("#status")).to_have_text("signed out")
    await page.click("#signin-link-main")
    await expect(page).to_have_url(re.compile(r"/signin\?next=%2Fitems%2F"))

    await page.fill("#email", tenant.email("erin").upper())
    await page.click("#send")
    await expect(page.locator("#sent")).to_have_text(
        f"If {tenant.email('erin')} belongs to an active user, a link is on its way."
    )
    await page.screenshot(path=str(ARTIFACTS / "signin-sent.png"), full_page=True)
    [mail] = await mail_sink.wait_for(1)
    assert mail.rcpt_tos == (tenant.email("erin"),)
    link = link_path(mail)

    # What a mail scanner does: a GET of the link, which must not sign anyone in. The link
    # carries no `next`: the browser that asked for it remembers where it was going.
    await page.goto(f"{site}{link}")
    await expect(page.locator("#whom")).to_have_text(
        f"Sign in as Erin Engineer (engineer, {tenant.slug})"
    )
    assert await page.evaluate("localStorage.getItem('escalator.token')") is None
    await page.screenshot(path=str(ARTIFACTS / "signin.png"), full_page=True)
    await page.click("#confirm")
    await expect(page).to_have_url(f"{site}/items/{item_id}")
    await expect(page.locator("#me-name")).to_have_text("Erin Engineer")
    await expect(page.locator("#title")).to_have_text("Leaking valve")
    await expect(page.locator("#status")).to_have_text("live", timeout=10_000)

    # A link works once; the page says so and offers a new one.
    other, again = await fresh_page(pages)
    await again.goto(f"{site}{link}")
    await expect(again.locator("#error")).to_contain_text("used already")
    await expect(again.locator("#confirm")).to_be_hidden()
    await expect(again.locator("#again a")).to_have_attribute("href", "/signin")

    # An outside ?next= is ignored: after signing in, the page stays on this site.
    await again.goto(f"{site}/signin")
    await again.fill("#email", tenant.email("emil"))
    await again.click("#send")
    await expect(again.locator("#sent")).to_be_visible()
    mails = await mail_sink.wait_for(2)
    await again.goto(f"{site}{with_next(link_path(mails[1]), '//evil.example/')}")
    await again.click("#confirm")
    await expect(again).to_have_url(f"{site}/")
    await expect(again.locator("#me-name")).to_have_text("Emil Engineer")
    await context.close()
    await other.close()


@pytest.fixture
async def working_site(
    dev_env: WorkflowEnvironment, settings: Settings, mail_sink: MailSink, engine: AsyncEngine
) -> AsyncIterator[str]:
    """The app and a worker on the real dev server, mailing into `mail_sink`."""
    live = settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "task_queue": f"pages-{uuid.uuid4()}",
            "smtp_port": mail_sink.port,
        }
    )
    async with build_worker(dev_env.client, live, engine):
        with serve(live) as url:
            yield url


async def test_claim_from_the_mail_link_and_already_claimed_page(
    pages: Pages, working_site: str, settings: Settings, tenant: Tenant, mail_sink: MailSink
) -> None:
    site = working_site
    await tenant.around_the_clock(
        {
            "remind": rung({"business_seconds": 1}, ["assignee"], "task.reminder"),
            "escalate_1": rung({"business_seconds": 1}, ["assignee_manager"], "task.escalated"),
            "escalate_2": None,
        }
    )
    mail_sink.clear()
    due = utcnow() + timedelta(seconds=3)
    item_id = await new_task(site, settings, tenant, "Pump P-101 leaks", due)
    reminder, escalated = await mail_sink.wait_for(2, within=30)
    assert (reminder.rcpt_tos, escalated.rcpt_tos) == (
        (tenant.email("erin"),),
        (tenant.email("ada"),),
    )

    _, erin = await fresh_page(pages)
    await erin.goto(site + link_path(reminder))
    await expect(erin.locator("#title")).to_have_text("Pump P-101 leaks")
    await expect(erin.locator("#due")).to_have_text(german(due))
    await expect(erin.locator("#as")).to_have_text("You are claiming this as Erin Engineer")
    await asyncio.sleep(0.5)  # the GET alone claims nothing
    assert (await tenant.item(uuid.UUID(item_id))).state == "open"
    await erin.click("#claim")
    await expect(erin.locator("#done")).to_have_text("Claimed. You hold it now.")
    await expect(erin.locator("#item-link")).to_have_attribute("href", f"/items/{item_id}")
    assert (await tenant.item(uuid.UUID(item_id))).claimed_by == tenant.user("erin")

    _, ada = await fresh_page(pages)
    await ada.goto(site + link_path(escalated))
    await expect(ada.locator("#claimed")).to_have_text(
        re.compile(r"^Already claimed by Erin Engineer at \d\d\.\d\d\.\d{4}, \d\d:\d\d$")
    )
    await expect(ada.locator("#claim")).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    await ada.screenshot(path=str(ARTIFACTS / "claim-already-claimed.png"), full_page=True)


async def test_confirm_a_new_address_from_its_mail(
    pages: Pages, working_site: str, settings: Settings, tenant: Tenant, mail_sink: MailSink
) -> None:
    """The page holds the link in its fragment, which the browser never sends: the server
    sees the page fetched, and the confirmation only once the button is pressed."""
    site, new = working_site, f"emil.new@{tenant.slug}.example.com"
    async with httpx.AsyncClient(base_url=site) as client:
        asked = await client.patch(
            f"/v1/users/{tenant.user('emil')}",
            json={"email": new},
            headers={"Authorization": f"Bearer {token(settings, tenant, 'ada', 'admin')}"},
        )
    assert asked.status_code == 200, asked.text
    mails = await mail_sink.wait_for(2, within=30)
    [confirmation] = [m for m in mails if m.rcpt_tos == (new,)]
    _, page = await fresh_page(pages)
    await page.goto(site + link_path(confirmation))
    await asyncio.sleep(0.5)  # opening the page confirms nothing
    assert (await tenant.user_row("emil")).email == tenant.email("emil")
    await page.click("#confirm")
    await expect(page.locator("#done")).to_have_text(
        f"Done: {new} is the address of Emil Engineer now."
    )
    assert (await tenant.user_row("emil")).email == new


async def test_an_item_that_falls_due_shows_on_an_open_queue_at_once(
    pages: Pages, working_site: str, settings: Settings, tenant: Tenant
) -> None:
    """Time is an event: nothing else happens to the item when it falls due (its reminder
    fired long before, its first escalation is days away), yet the open queue shows it
    within a second or two, with how long it has been overdue in red."""
    site = working_site
    page = await signed_in(pages, site, token(settings, tenant, "erin", "engineer"))
    due = utcnow() + timedelta(seconds=4)
    item_id = await new_task(site, settings, tenant, "Falls due while you look", due)
    assert item_id not in await row_ids(page)  # not due yet: not in the queue
    row = page.locator(f'#queue tbody tr[data-item-id="{item_id}"]')
    await expect(row).to_be_visible(timeout=8_000)  # no other event would bring it
    await expect(row.locator(".overdue-by")).to_have_text(re.compile(r"^overdue \d+s$"))
    assert ("fell_due", None) in await tenant.audit(uuid.UUID(item_id))


async def test_an_expired_session_says_so_and_keeps_the_page(
    pages: Pages, site: str, settings: Settings, tenant: Tenant
) -> None:
    """The token runs out while the queue is open: the page keeps its rows, stops saying
    "live", and says the session ended; a claim tried then says it did not happen."""
    item_id = await new_task(
        site, settings, tenant, "Outlives the session", (utcnow() - timedelta(hours=1))
    )
    principal = Principal(
        user_id=tenant.user("erin"), account_id=tenant.account_id, role="engineer"
    )
    short = mint(principal, settings.jwt_secret, ttl=timedelta(seconds=4), now=utcnow())
    page = await signed_in(pages, site, short)
    row = page.locator(f'#queue tbody tr[data-item-id="{item_id}"]')
    await expect(row).to_be_visible()
    await expect(page.locator("#status")).to_have_text("session ended", timeout=10_000)
    await expect(page.locator("#notice")).to_contain_text("Your session has ended.")
    await expect(row).to_be_visible()  # the page keeps what it showed
    await row.locator("button.claim").click()
    await expect(page.locator("#notice")).to_contain_text("your claim did not happen")
    await expect(page.locator("#notice a")).to_have_attribute("href", "/signin")
    assert (await tenant.item(uuid.UUID(item_id))).state == "open"


async def test_people_never_read_a_raw_validation_message(pages: Pages, site: str) -> None:
    """A link cut short when it was copied is a 422 from the API; the page says what to do."""
    _, page = await fresh_page(pages)
    await page.goto(f"{site}/claim#link=cut-short")
    await expect(page.locator("#error")).to_have_text(re.compile(r"^This link is incomplete"))
    assert "body.link" not in await page.locator("main").inner_text()
    assert "String should" not in await page.locator("main").inner_text()


async def test_create_edit_note_and_resolve_a_task_from_the_pages(
    pages: Pages, site: str, settings: Settings, tenant: Tenant
) -> None:
    """Issue 22 item 7: everything an engineer does with a task, without curl: create it on
    All items, find it by its title, change its title and due date, note it, resolve it
    with a note."""
    context = await pages.context()
    await context.add_init_script(remember(site, token(settings, tenant, "emil", "engineer")))
    page = await context.new_page()
    item_id = await create_edit_note_and_resolve(page, site, "Filter F-3 clogged")
    item = await tenant.item(uuid.UUID(item_id))
    assert (item.title, item.due_at) == ("Filter F-3 clogged again", german_due(2031, 5, 7, 9))
    assert (await tenant.item(uuid.UUID(item_id))).state == "resolved"

    await page.goto(f"{site}/items")
    await page.fill("#q", "clogged again")
    await page.click("#search button[type=submit]")
    await expect(page.locator("#items tbody tr")).to_have_count(1)
    await expect(page.locator("#items tbody tr .title")).to_have_text("Filter F-3 clogged again")


async def test_an_admin_changes_a_policy_and_sees_the_plan_preview_move(
    pages: Pages, site: str, settings: Settings, tenant: Tenant
) -> None:
    context = await pages.context()
    await context.add_init_script(remember(site, token(settings, tenant, "ada", "admin")))
    page = await context.new_page()
    before, after = await change_capa_policy(page, site)
    assert "Ada Admin" in before
    assert before != after
    await expect(page.locator("#notice")).to_have_text("Saved: CAPA version 2.")
    async with httpx.AsyncClient(base_url=site) as client:
        saved = await client.get(
            "/v1/policies/CAPA",
            headers={"Authorization": f"Bearer {token(settings, tenant, 'ada', 'admin')}"},
        )
    rungs = saved.json()["rungs"]
    assert rungs["escalate_1"]["offset"] == {"business_days": 2}
    assert rungs["escalate_2"]["repeat_every"] == {"business_hours": 4}

    _, engineer = await fresh_page(pages)
    await engineer.goto(f"{site}/admin/policies")
    await expect(engineer.locator("#signed-out")).to_be_visible()  # admins only


async def test_a_late_plan_preview_never_replaces_a_newer_one(
    pages: Pages, site: str, settings: Settings, tenant: Tenant
) -> None:
    """The page's first preview (for the first person listed) is held back until after the
    admin picked Erin: its late answer must not overwrite Erin's plan."""
    erin = str(tenant.user("erin"))
    context = await pages.context()
    await context.add_init_script(remember(site, token(settings, tenant, "ada", "admin")))

    async def hold_all_but_erins(route: Route) -> None:
        if erin not in (route.request.post_data or ""):
            await asyncio.sleep(2)
        await route.continue_()

    await context.route("**/v1/preview", hold_all_but_erins)
    page = await context.new_page()
    await page.goto(f"{site}/admin/policies")
    await page.select_option("#type", "CAPA")
    await page.select_option("#preview-assignee", label="Erin Engineer")
    step = page.locator('#preview .step[data-rung="escalate_1"]')
    await expect(step).to_contain_text("(Ada Admin)")  # Erin's manager
    await asyncio.sleep(3)  # every held answer has arrived by now
    await expect(step).to_contain_text("(Ada Admin)")
    await context.close()


async def test_an_admin_sends_a_failed_webhook_again_from_the_item_page(
    pages: Pages, working_site: str, settings: Settings, tenant: Tenant
) -> None:
    site = working_site
    with WebhookReceiver() as receiver:
        endpoint_id, _ = await add_endpoint(tenant, receiver.url)
        item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=5))
        delivery_id = await failed_delivery(tenant, item_id, endpoint_id)
        page = await signed_in(
            pages, site, token(settings, tenant, "ada", "admin"), f"/items/{item_id}"
        )
        row = page.locator(f'#deliveries tr[data-delivery-id="{delivery_id}"]')
        await expect(row).to_contain_text("failed")
        await row.locator("button.resend").click()
        await expect(page.locator("#notice")).to_have_text("Sending again to Ops.")
        for _ in range(100):  # the worker posts it; a delivery's outcome pushes nothing
            if receiver.requests:
                break
            await asyncio.sleep(0.1)
        assert [r.headers["webhook-id"] for r in receiver.requests] == [str(delivery_id)]
        await asyncio.sleep(0.5)
        await page.reload()
        await expect(row).to_contain_text("sent")


async def test_an_admin_invites_someone_and_changes_their_role_and_status(
    pages: Pages, working_site: str, settings: Settings, tenant: Tenant, mail_sink: MailSink
) -> None:
    site = working_site
    context = await pages.context()
    await context.add_init_script(remember(site, token(settings, tenant, "ada", "admin")))
    page = await context.new_page()
    await page.goto(f"{site}/admin/people")
    otto = page.locator("#users tr", has_text="Otto Owner").locator("select")
    await expect(otto).to_have_value("owner")  # above an admin: shown as it is, locked
    await expect(otto).to_be_disabled()
    nora = f"nora@{tenant.slug}.escalator.test"
    await page.click("#invite summary")
    await page.fill("#invite-name", "Nora Newcomer")
    await page.fill("#invite-email", nora)
    await page.select_option("#invite-role", "engineer")
    await page.click("#invite-send")
    await expect(page.locator("#notice")).to_contain_text("Invited Nora Newcomer")
    [invitation] = [m for m in await mail_sink.wait_for(1, within=20) if m.rcpt_tos == (nora,)]
    assert "sign-in link" in invitation.subject

    row = page.locator("#users tr", has_text="Nora Newcomer")
    await row.locator("select").select_option("viewer")
    await expect(page.locator("#notice")).to_contain_text("Nora Newcomer: the role saved.")
    await row.locator("input[type=checkbox]").uncheck()
    await expect(page.locator("#notice")).to_contain_text("deactivation saved")
    async with tenant.owner() as session:
        user = (await session.execute(select(User).where(User.email == nora))).scalar_one()
    assert (user.role, user.is_active) == ("viewer", False)

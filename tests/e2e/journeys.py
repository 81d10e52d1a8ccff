"""What a person does on the pages, step by step, shared by the page tests (against the app
in-process) and the newcomer's afternoon (against `make run`'s stack)."""

from __future__ import annotations

from playwright.async_api import Page, expect


async def create_edit_note_and_resolve(page: Page, site: str, title: str) -> str:
    """On All items: create a CAPA task for Erin, change its title and due date, note it,
    resolve it with a note; the item's id. `page` is signed in as an engineer or above."""
    await page.goto(f"{site}/items")
    await expect(page.locator("#create")).to_be_visible()
    await page.click("#create summary")
    await page.select_option("#new-type", "CAPA")
    await page.fill("#new-title", title)
    await page.select_option("#new-assignee", label="Erin Engineer")
    await page.fill("#new-due", "2031-05-06T10:30")
    await page.click("#new-submit")
    await expect(page.locator("#title")).to_have_text(title)
    await expect(page.locator("#assignee")).to_have_text("Erin Engineer")
    item_id = page.url.rsplit("/", 1)[1]

    await page.fill("#edit-title", f"{title} again")
    await page.fill("#edit-due", "2031-05-07T09:00")
    await page.click("#edit-save")
    await expect(page.locator("#title")).to_have_text(f"{title} again")
    await page.fill("#note-text", "Ordered a spare filter.")
    await page.click("#note-add")
    await expect(page.locator("#timeline")).to_contain_text("Ordered a spare filter.")
    await page.fill("#note-text", "Replaced; pressure back to normal.")
    await page.click("#note-resolve")
    await expect(page.locator("#badges")).to_contain_text("resolved")
    await expect(page.locator("#timeline")).to_contain_text("Replaced; pressure back to normal.")
    return item_id


async def change_capa_policy(page: Page, site: str) -> tuple[str, str]:
    """On the policies page, as an admin: CAPA's first escalation one business day later
    and its last tier repeated every 4 business hours, saved; the plan preview's
    escalate_1 step before and after."""
    await page.goto(f"{site}/admin/policies")
    await page.select_option("#type", "CAPA")
    await page.select_option("#preview-assignee", label="Erin Engineer")
    step = page.locator('#preview .step[data-rung="escalate_1"]')
    await expect(step).to_contain_text("Ada Admin")  # Erin's manager, first in the chain
    await expect(step).to_contain_text("escalate_1 ")
    before = await step.inner_text()
    await page.fill("#escalate_1-value", "2")
    await page.fill("#escalate_2-repeat", "4")
    await page.click("#save")
    await expect(page.locator("#notice")).to_contain_text("Saved: CAPA version ")
    await expect(step).not_to_have_text(before)
    return before, await step.inner_text()

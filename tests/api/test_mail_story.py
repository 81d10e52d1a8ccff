"""A rung fires for real (dev server, worker, SMTP sink) and what people read is honest:
the mail says the policy's offset and the due instant in the calendar's zone and carries a
claim link that claims, once, as its recipient; the deliveries say who got what, and why."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

from domain.clock import utcnow
from domain.demo import rung
from mailsink import MailSink
from tests.api.conftest import Api
from tests.api.test_links import link_in, plain
from tests.support.tenants import Tenant


async def test_a_fired_rung_mails_honest_text_with_a_claim_link_and_deliveries_say_why(
    api: Api, tenant: Tenant, mail_sink: MailSink
) -> None:
    await tenant.around_the_clock(
        {
            "remind": rung({"business_seconds": 1}, ["assignee"], "task.reminder"),
            # Nobody holds role `nobody`: the chain falls through to the assignee's manager.
            "escalate_1": rung(
                {"business_seconds": 1}, ["role:nobody", "assignee_manager"], "task.escalated"
            ),
            "escalate_2": None,
        }
    )
    mail_sink.clear()
    due = utcnow() + timedelta(seconds=3)
    item = (await api.task(tenant, due_at=due.isoformat())).json()
    remind, escalated = await mail_sink.wait_for(2, within=30)
    assert (remind.rcpt_tos, escalated.rcpt_tos) == (
        (tenant.email("erin"),),
        (tenant.email("ada"),),
    )

    text = plain(escalated)
    assert "is 1 business second past due and unclaimed" in text
    berlin = due.astimezone(ZoneInfo("Europe/Berlin"))  # the calendar's zone
    assert f"Due: {berlin:%a %d %b %Y %H:%M %Z}" in text
    assert "Assigned to: Erin Engineer" in text  # the manager reads whose it is
    thread = f"<item-{item['id']}@escalator>"  # one item's mails thread together
    assert [(m.message["In-Reply-To"], m.message["References"]) for m in (remind, escalated)] == [
        (thread, thread)
    ] * 2
    assert f"/items/{item['id']}" in text
    assert "is due in 1 business second" in plain(remind)
    html = escalated.message.get_body(("html",))
    assert html is not None
    assert "Claim it</a>" in str(html.get_content())

    ada = api.headers(tenant, "ada")
    deliveries = (await api.client.get(f"/v1/items/{item['id']}/deliveries", headers=ada)).json()
    why = {d["recipient"]["name"]: d["why"] for d in deliveries}
    assert why["Erin Engineer"]["matched"] == "assignee"
    assert why["Erin Engineer"]["fell_through"] == []
    assert (why["Ada Admin"]["matched"], why["Ada Admin"]["fell_through"]) == (
        "assignee_manager",
        ["role:nobody"],
    )
    assert re.search(r"tried first: role nobody", why["Ada Admin"]["summary"])

    claimed = await api.client.post("/v1/claim-links", json={"link": link_in(escalated)})
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["claimed_by"]["name"] == "Ada Admin"
    erins = await api.client.post("/v1/claim-links/view", json={"link": link_in(remind)})
    assert (erins.json()["state"], erins.json()["claimed_by"]["name"]) == ("claimed", "Ada Admin")
    state = await api.client.get(f"/v1/items/{item['id']}", headers=ada)
    assert state.json()["claimed_by"] == str(tenant.user("ada"))
    assert uuid.UUID(claimed.json()["item_id"]) == uuid.UUID(item["id"])

"""Issue 21, finding 1: an admin could point a colleague's account at a mailbox of their own
and sign in as them. Now a new address is only asked for: the new address confirms it with
a link mailed to it, the old address is told at once, sign-in links keep going to the old
address meanwhile, only an owner changes an owner's address, and each step is audited with
its actor."""

from __future__ import annotations

import asyncio
import re
import uuid

from sqlalchemy import select

from domain.models import AuditEvent
from mailsink import MailSink, ReceivedMail
from tests.api.conftest import Api
from tests.api.test_links import plain
from tests.support.errors import error
from tests.support.tenants import Tenant

ADDRESS_LINK = re.compile(r"https?://\S+/address#link=([A-Za-z0-9_.\-]+)")


async def mails_to(sink: MailSink, address: str, count: int = 1) -> list[ReceivedMail]:
    for _ in range(200):
        found = [m for m in sink.mails if m.rcpt_tos == (address,)]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} mail(s) to {address} expected, got {len(found)}")


def confirmation_link(mail: ReceivedMail) -> str:
    found = ADDRESS_LINK.search(plain(mail))
    assert found, plain(mail)
    return found[1]


async def audit_rows(tenant: Tenant, user_id: uuid.UUID) -> list[tuple[str, uuid.UUID | None]]:
    async with tenant.owner() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.account_id == tenant.account_id,
                AuditEvent.action.like("user.email%"),
                AuditEvent.data["user_id"].astext == str(user_id),
            )
            .order_by(AuditEvent.id)
        )
        return [(row.action, row.actor_id) for row in rows]


async def test_an_admin_cannot_take_over_a_colleague_by_changing_their_address(
    api: Api, tenant: Tenant, mail_sink: MailSink
) -> None:
    mail_sink.clear()
    evil = f"ada.private@{tenant.slug}.example.com"
    emil = tenant.user("emil")
    emils_token = api.headers(tenant, "emil")
    changed = await api.client.patch(
        f"/v1/users/{emil}", json={"email": evil}, headers=api.headers(tenant, "ada")
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["email"], changed.json()["pending_email"]) == (
        tenant.email("emil"),
        evil,
    )
    [notice] = await mails_to(mail_sink, tenant.email("emil"))
    assert "being changed" in notice.subject
    assert evil in plain(notice)
    assert "Ada Admin" in plain(notice)
    await mails_to(mail_sink, evil)  # the confirmation

    # Until it is confirmed, a sign-in link for the new address signs in nobody.
    asked = await api.client.post("/v1/auth/sign-in-link", json={"email": evil})
    assert asked.status_code == 202
    await asyncio.sleep(1.0)
    assert len([m for m in mail_sink.mails if m.rcpt_tos == (evil,)]) == 1
    assert (await api.client.get("/v1/me", headers=emils_token)).status_code == 200
    assert await audit_rows(tenant, emil) == [("user.email_change_requested", tenant.user("ada"))]


async def test_the_new_address_confirms_it_once_and_earlier_tokens_stop(
    api: Api, tenant: Tenant, mail_sink: MailSink
) -> None:
    mail_sink.clear()
    new = f"emil.new@{tenant.slug}.example.com"
    emil = tenant.user("emil")
    emils_token = api.headers(tenant, "emil")
    ada = api.headers(tenant, "ada")
    assert (
        await api.client.patch(f"/v1/users/{emil}", json={"email": new}, headers=ada)
    ).status_code == 200
    [confirmation] = await mails_to(mail_sink, new)
    assert "Confirm your new address" in confirmation.subject
    link = confirmation_link(confirmation)

    confirmed = await api.client.post("/v1/auth/address", json={"link": link})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["email"] == new
    user = (await api.client.get(f"/v1/users/{emil}", headers=ada)).json()
    assert (user["email"], user["pending_email"]) == (new, None)
    assert (await api.client.get("/v1/me", headers=emils_token)).status_code == 401
    again = await api.client.post("/v1/auth/address", json={"link": link})
    assert error(again, 409)["code"] == "link_used"
    assert await audit_rows(tenant, emil) == [
        ("user.email_change_requested", tenant.user("ada")),
        ("user.email_changed", emil),
    ]
    asked = await api.client.post("/v1/auth/sign-in-link", json={"email": new})
    assert asked.status_code == 202
    await mails_to(mail_sink, new, count=2)  # the sign-in link goes to the new address now


async def test_a_withdrawn_change_cannot_be_confirmed(
    api: Api, tenant: Tenant, mail_sink: MailSink
) -> None:
    mail_sink.clear()
    new = f"emil.other@{tenant.slug}.example.com"
    url, ada = f"/v1/users/{tenant.user('emil')}", api.headers(tenant, "ada")
    assert (await api.client.patch(url, json={"email": new}, headers=ada)).status_code == 200
    [confirmation] = await mails_to(mail_sink, new)
    back = await api.client.patch(url, json={"email": tenant.email("emil")}, headers=ada)
    assert back.json()["pending_email"] is None
    refused = await api.client.post(
        "/v1/auth/address", json={"link": confirmation_link(confirmation)}
    )
    assert error(refused, 409)["code"] == "conflict"
    user = (await api.client.get(url, headers=ada)).json()
    assert user["email"] == tenant.email("emil")


async def test_only_an_owner_changes_an_owners_address(api: Api, tenant: Tenant) -> None:
    await tenant.update_user("ada", role="owner")  # two owners: otto and ada
    otto = api.headers(tenant, "otto", role="owner")
    theirs = await api.client.patch(
        f"/v1/users/{tenant.user('ada')}", json={"email": "ada2@example.com"}, headers=otto
    )
    assert error(theirs, 403)["code"] == "forbidden"
    own = await api.client.patch(
        f"/v1/users/{tenant.user('otto')}", json={"email": "otto2@example.com"}, headers=otto
    )
    assert own.status_code == 200, own.text
    assert own.json()["pending_email"] == "otto2@example.com"

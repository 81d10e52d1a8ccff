"""Sign-in links and claim links, end to end through the real app and SMTP sink: each works
once, for its purpose only; a GET never changes anything; a forged, expired or cut-short
link is a 400 with the reason; the answer to a sign-in request never says who has an
account."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.reconcile import ReconcileActivities
from domain import links
from domain.clock import utcnow
from mailsink import MailSink, ReceivedMail
from tests.api.conftest import Api
from tests.api.test_reconcile import Later
from tests.support.errors import error
from tests.support.tenants import Tenant

LINK = re.compile(r"https?://\S+#link=([A-Za-z0-9_.\-]+)")


def plain(mail: ReceivedMail) -> str:
    body = mail.message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def link_in(mail: ReceivedMail) -> str:
    found = LINK.search(plain(mail))
    assert found, plain(mail)
    return found[1]


async def test_a_sign_in_link_arrives_by_mail_and_signs_in_once(
    api: Api, tenant: Tenant, mail_sink: MailSink
) -> None:
    mail_sink.clear()
    asked = await api.client.post("/v1/auth/sign-in-link", json={"email": tenant.email("ada")})
    assert asked.status_code == 202, asked.text
    [mail] = await mail_sink.wait_for(1)
    assert mail.rcpt_tos == (tenant.email("ada"),)
    token = link_in(mail)
    assert "/signin#link=" in plain(mail)

    shown = await api.client.post("/v1/auth/sign-in-link/view", json={"link": token})
    assert shown.status_code == 200, shown.text
    assert (shown.json()["user"]["name"], shown.json()["role"], shown.json()["used"]) == (
        "Ada Admin",
        "admin",
        False,
    )
    session = await api.client.post("/v1/auth/session", json={"link": token})
    assert session.status_code == 200, session.text
    bearer = {"Authorization": f"Bearer {session.json()['access_token']}"}
    assert (await api.client.get("/v1/queue", headers=bearer)).status_code == 200

    again = await api.client.post("/v1/auth/session", json={"link": token})
    assert error(again, 409)["code"] == "link_used"
    assert (await api.client.post("/v1/auth/sign-in-link/view", json={"link": token})).json()[
        "used"
    ]


async def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    api: Api, tenant: Tenant, mail_sink: MailSink
) -> None:
    mail_sink.clear()
    known = await api.client.post("/v1/auth/sign-in-link", json={"email": tenant.email("erin")})
    unknown = await api.client.post(
        "/v1/auth/sign-in-link", json={"email": f"nobody@{tenant.slug}.escalator.test"}
    )
    assert (known.status_code, unknown.status_code) == (202, 202)
    assert known.json()["message"].replace(tenant.email("erin"), "X") == unknown.json()[
        "message"
    ].replace(f"nobody@{tenant.slug}.escalator.test", "X")
    await mail_sink.wait_for(1)
    assert [m.rcpt_tos for m in mail_sink.mails] == [(tenant.email("erin"),)]


async def test_known_and_unknown_addresses_do_the_same_work_before_the_answer(
    api_without_temporal: Api, tenant: Tenant
) -> None:
    """The request writes one row and answers; nothing that depends on whether the address
    has an account (a lookup, a mail) happens before the answer, so its time tells nothing."""
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = api_without_temporal.app.state.engine.sync_engine
    done: dict[str, list[str]] = {}
    event.listen(engine, "before_cursor_execute", seen)
    try:
        for who, address in (
            ("known", tenant.email("erin")),
            ("unknown", f"nobody@{tenant.slug}.escalator.test"),
        ):
            statements.clear()
            asked = await api_without_temporal.client.post(
                "/v1/auth/sign-in-link", json={"email": address}
            )
            assert asked.status_code == 202, asked.text
            done[who] = list(statements)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert done["known"] == done["unknown"]
    assert not any("app_user" in s or "candidates" in s for s in done["known"]), done["known"]


async def test_a_request_made_while_temporal_is_down_is_answered_by_the_reconciler(
    api_without_temporal: Api,
    api: Api,
    tenant: Tenant,
    mail_sink: MailSink,
    dev_env: WorkflowEnvironment,
    app_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    mail_sink.clear()
    address = tenant.email("ada")
    asked = await api_without_temporal.client.post("/v1/auth/sign-in-link", json={"email": address})
    assert asked.status_code == 202, asked.text
    await asyncio.sleep(0.5)
    assert [m for m in mail_sink.mails if m.rcpt_tos == (address,)] == []

    reconcile = ReconcileActivities(
        dev_env.client, app_sessionmaker, api.settings.task_queue, Later()
    )
    assert await ActivityEnvironment().run(reconcile.start_missing_sign_ins) >= 1
    for _ in range(200):
        mine = [m for m in mail_sink.mails if m.rcpt_tos == (address,)]
        if mine:
            break
        await asyncio.sleep(0.05)
    [mail] = mine
    session = await api.client.post("/v1/auth/session", json={"link": link_in(mail)})
    assert session.status_code == 200, session.text
    # Answered once: a second pass starts nothing new for it and sends no second mail.
    await ActivityEnvironment().run(reconcile.start_missing_sign_ins)
    await asyncio.sleep(0.5)
    assert len([m for m in mail_sink.mails if m.rcpt_tos == (address,)]) == 1


async def test_sign_in_requests_for_one_address_are_limited(api: Api, tenant: Tenant) -> None:
    limit = api.settings.sign_in_requests_per_window
    email = f"flood@{tenant.slug}.escalator.test"
    for _ in range(limit):
        assert (
            await api.client.post("/v1/auth/sign-in-link", json={"email": email})
        ).status_code == 202
    refused = await api.client.post("/v1/auth/sign-in-link", json={"email": email.upper()})
    assert error(refused, 429)["code"] == "too_many_requests"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", "not valid"),
        ("expired", "expired"),
        ("cut", "not valid"),
        ("claim link used to sign in", "not valid"),
    ],
)
async def test_a_bad_sign_in_link_is_a_400_with_the_reason(
    api: Api, tenant: Tenant, case: str, reason: str
) -> None:
    secret = api.settings.jwt_secret
    ada, account = tenant.user("ada"), tenant.account_id

    def mint(purpose: links.Purpose, key: str, ago: timedelta = timedelta(0)) -> str:
        item = uuid.uuid4() if purpose == "claim" else None
        return links.mint(
            purpose, key, user_id=ada, account_id=account, item_id=item, now=utcnow() - ago
        )

    token = {
        "forged": mint("sign_in", "another secret, as long as a real one is"),
        "expired": mint("sign_in", secret, timedelta(hours=1)),
        "cut": mint("sign_in", secret)[:-6],
        "claim link used to sign in": mint("claim", secret),
    }[case]
    for response in (
        await api.client.post("/v1/auth/sign-in-link/view", json={"link": token}),
        await api.client.post("/v1/auth/session", json={"link": token}),
    ):
        problem = error(response, 400)
        assert (problem["code"], reason in problem["message"]) == ("invalid_link", True)


async def test_a_claim_link_shows_on_get_claims_on_post_once_and_then_says_who(
    api: Api, tenant: Tenant
) -> None:
    item = (await api.task(tenant)).json()
    secret, now = api.settings.jwt_secret, utcnow()

    def claim_link(who: str) -> str:
        return links.mint(
            "claim",
            secret,
            user_id=tenant.user(who),
            account_id=tenant.account_id,
            item_id=uuid.UUID(item["id"]),
            now=now,
        )

    erins, adas = claim_link("erin"), claim_link("ada")
    shown = await api.client.post("/v1/claim-links/view", json={"link": erins})
    assert (shown.json()["state"], shown.json()["recipient"]["name"]) == ("open", "Erin Engineer")
    # A mail scanner's GET claimed nothing.
    item_now = await api.client.get(f"/v1/items/{item['id']}", headers=api.headers(tenant, "ada"))
    assert item_now.json()["state"] == "open"

    claimed = await api.client.post("/v1/claim-links", json={"link": erins})
    assert claimed.status_code == 200, claimed.text
    assert (claimed.json()["state"], claimed.json()["claimed_by"]["name"]) == (
        "claimed",
        "Erin Engineer",
    )
    used = await api.client.post("/v1/claim-links", json={"link": erins})
    assert error(used, 409)["code"] == "link_used"
    lost = await api.client.post("/v1/claim-links", json={"link": adas})
    problem = error(lost, 409)
    assert (problem["code"], problem["details"]["claimed_by"]["name"]) == (
        "already_claimed",
        "Erin Engineer",
    )
    late = (await api.client.post("/v1/claim-links/view", json={"link": adas})).json()
    assert (late["claimed_by"]["name"], late["used_at"]) == ("Erin Engineer", None)


async def test_a_claim_link_for_another_accounts_item_finds_nothing(
    api: Api, tenant: Tenant
) -> None:
    other = await Tenant.create(tenant.owner)
    theirs = (await api.task(other)).json()["id"]
    token = links.mint(  # well signed, but its account is ours and the item is theirs
        "claim",
        api.settings.jwt_secret,
        user_id=tenant.user("erin"),
        account_id=tenant.account_id,
        item_id=uuid.UUID(theirs),
        now=utcnow(),
    )
    for response in (
        await api.client.post("/v1/claim-links/view", json={"link": token}),
        await api.client.post("/v1/claim-links", json={"link": token}),
    ):
        assert error(response, 400)["code"] == "invalid_link"
    still = await api.client.get(f"/v1/items/{theirs}", headers=api.headers(other, "ada"))
    assert still.json()["state"] == "open"

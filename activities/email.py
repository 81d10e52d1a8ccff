"""`send_emails`: one rung's mails, each sent at most once, none after a claim.

One activity per rung sends to every recipient over the worker's pool of persistent SMTP
connections (at most `smtp_concurrency` at once), while each recipient keeps its own
delivery row, status and failure:

1. The attempt, in its own committed transaction: the item FOR SHARE, then every delivery
   row (recipient, item, event_key, channel) claimed with ON CONFLICT DO NOTHING and locked in
   recipient order. A row `sent` or `failed` is final and skipped; if the item is no longer
   open the rest are `suppressed`; a `normal` notification in a recipient's quiet hours is
   `deferred` (the workflow sleeps on a durable timer); the others become `sending` with
   attempts + 1. All of it in a handful of statements, not one transaction per mail.
2. The send: the item FOR SHARE and those rows FOR UPDATE again (a concurrent attempt waits
   here, then sees `sent`), held across the SMTP calls, so a claim's UPDATE waits: a mail goes
   out before the claim commits or not at all. Each outcome is recorded on its own row:
   `sent` at its accept time, a 5xx `failed` (audited), anything else `pending` with its
   error and reported `retry`: the workflow sends again to those recipients only.
3. If Postgres fails after SMTP accepted, the result still says `sent` (`recorded=False`) and
   the workflow records it: the accept is never forgotten, so the mail is never sent again.

The one honest limit (RFC 1047): a worker that dies between SMTP's accept and the record
leaves the row `sending`; the retry sends again, with the same Message-ID, and the row says
`attempts: 2` with the unknown outcome in `last_error`.

`send_email` (one recipient per activity) is the same engine; it stays registered for
workflows whose history scheduled it before `batched-sends`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound
from sqlalchemy import Row, String, Table, and_, bindparam, case, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import ReturningInsert
from temporalio import activity
from temporalio.exceptions import ApplicationError

import metrics
from activities.rungs import fire
from activities.smtp import Smtp, SmtpPool
from config import Settings
from db import tenant_session
from domain import audit, links
from domain.clock import utcnow
from domain.models import BusinessCalendarVersion, Delivery, Item, SlaPolicy
from domain.policy import parse_rungs
from domain.quiet_hours import quiet_until
from domain.recipients import Recipient, Resolution
from workflows.types import (
    DeliveryOutcome,
    FireRung,
    MailOutcome,
    RecordFailures,
    RungFired,
    SendEmail,
    SendEmailResult,
    SendEmails,
    SendEmailsResult,
)

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    undefined=StrictUndefined,
    autoescape=False,  # plain text; the html block escapes explicitly below
    keep_trailing_newline=True,
)
HTML = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    undefined=StrictUndefined,
    autoescape=True,
)
FINAL = ("sent", "failed")
# `fire_and_send` mails up to this many recipients itself (a local activity: seconds at
# most); a bigger fan-out goes to `send_emails`, a heartbeating activity of its own.
LOCAL_SENDS = 25
DELIVERY: Table = Delivery.__table__  # type: ignore[assignment]
ITEM: Table = Item.__table__  # type: ignore[assignment]
# The send path's statements, built once (parameters bound at execution).
POLICY: Table = SlaPolicy.__table__  # type: ignore[assignment]
CALENDAR: Table = BusinessCalendarVersion.__table__  # type: ignore[assignment]
# The item (locked FOR SHARE), with what its mails say of the policy and calendar it pins:
# each rung's offset and the calendar's zone.
_ITEM_FOR_SHARE = (
    select(
        *(ITEM.c[name] for name in ("id", "state", "title", "item_type", "kind", "due_at")),
        ITEM.c.engineer_notes,
        ITEM.c.priority,
        POLICY.c.rungs,
        CALENDAR.c.tz,
    )
    .join(POLICY, POLICY.c.id == ITEM.c.policy_id)
    .join(CALENDAR, CALENDAR.c.id == ITEM.c.calendar_version_id)
    .where(
        ITEM.c.id == bindparam("p_item", type_=PG_UUID),
        ITEM.c.account_id == bindparam("p_account", type_=PG_UUID),
    )
    .with_for_update(read=True, of=ITEM)
)
_ROWS_FOR_UPDATE = (
    select(DELIVERY)
    .where(
        DELIVERY.c.account_id == bindparam("p_account", type_=PG_UUID),
        DELIVERY.c.item_id == bindparam("p_item", type_=PG_UUID),
        DELIVERY.c.event_key == bindparam("p_event", type_=String),
        DELIVERY.c.channel == "email",
        DELIVERY.c.recipient_id.in_(bindparam("p_ids", expanding=True)),
    )
    .order_by(DELIVERY.c.recipient_id)
    .with_for_update()
)


def message_id(user_id: str, item_id: str, event_key: str) -> str:
    """Deterministic: the same delivery key always gives the same Message-ID, so even a
    resend after a lost commit is recognisable downstream."""
    key = f"{user_id}:{item_id}:{event_key}:email"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@escalator>"


@dataclass(frozen=True, kw_only=True)
class MailItem:
    """What a mail may say about its item (the templates see nothing else)."""

    id: uuid.UUID
    title: str
    item_type: str
    kind: str
    due_at: datetime | None
    engineer_notes: str | None
    priority: str | None
    zone: str = "UTC"  # the pinned calendar's: the due instant is shown in it
    offsets: dict[str, str] = field(default_factory=dict)  # rung -> "2 business days"


@dataclass(frozen=True, kw_only=True)
class MailLinks:
    """What a mail links to: the item's page and a claim link for its recipient."""

    base_url: str
    secret: str

    @classmethod
    def from_settings(cls, settings: Settings) -> MailLinks:
        return cls(base_url=settings.base_url, secret=settings.jwt_secret)

    def item(self, item_id: str) -> str:
        return f"{self.base_url}/items/{item_id}"

    def claim(self, request: SendEmails, recipient: Recipient) -> str:
        token = links.mint(
            "claim",
            self.secret,
            user_id=uuid.UUID(recipient.user_id),
            account_id=uuid.UUID(request.account_id),
            item_id=uuid.UUID(request.item_id),
            now=request.at,
        )
        return links.url(self.base_url, "claim", token)


def render(
    request: SendEmails, recipient: Recipient, item: MailItem, to: MailLinks | None = None
) -> Message:
    """The mail, as a compat32 MIME message: the modern `EmailMessage` API parses every
    header it is given, which made rendering most of a 500-recipient rung's CPU. Header
    values are single lines (a title's line breaks can never start a header of their own).
    The wording comes from the policy ("2 business days past due"), the due instant is in
    the calendar's zone, and each mail links to its item and to a claim as its recipient."""
    to = to or MailLinks.from_settings(Settings())
    variables = {  # the whitelist: templates see nothing else
        "recipient_name": recipient.name,
        "item_title": item.title,
        "item_type": item.item_type,
        "item_kind": item.kind,
        "due_local": item.due_at.astimezone(ZoneInfo(item.zone)).strftime("%a %d %b %Y %H:%M %Z")
        if item.due_at
        else "no due date",
        "offset": item.offsets.get(request.rung, ""),
        "tier": request.tier,
        "rung": request.rung,
        "event_key": request.event_key,
        "notes": item.engineer_notes or "",
        "priority": item.priority or "",
        "item_url": to.item(request.item_id),
        "claim_url": to.claim(request, recipient),
    }
    parts = {}
    for env, part in ((TEMPLATES, "subject"), (TEMPLATES, "text"), (HTML, "html")):
        try:
            template = env.get_template(f"{request.event_key}.j2")
        except TemplateNotFound:  # an admin-defined event key without its own wording
            template = env.get_template("_base.j2")
        parts[part] = template.render(variables, part=part)
    message = MIMEMultipart("alternative")
    subject = Header(_one_line(parts["subject"]), "utf-8", header_name="Subject")
    message["Subject"] = subject.encode()
    message["To"] = formataddr((_one_line(recipient.name), recipient.email), "utf-8")
    message["Message-ID"] = message_id(recipient.user_id, request.item_id, request.event_key)
    message["Date"] = format_datetime(request.at)
    message["X-Escalator-Event"] = request.event_key
    message["X-Escalator-Item"] = request.item_id
    message.attach(MIMEText(parts["text"], "plain", "utf-8"))
    message.attach(MIMEText(parts["html"], "html", "utf-8"))
    return message


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _is_permanent(error: aiosmtplib.SMTPException) -> bool:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refused.code >= 500 for refused in error.recipients)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code >= 500
    return False


class EmailActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        smtp: Smtp,
        pool_size: int = 8,
        links: MailLinks | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._smtp = smtp
        self._pool = SmtpPool(smtp, pool_size)
        self._links = links or MailLinks.from_settings(Settings())

    @activity.defn
    async def send_emails(self, request: SendEmails) -> SendEmailsResult:
        """Side effect: one email per recipient over SMTP. Idempotency key: each delivery
        row's unique (recipient, item, event_key, 'email'); a `sent` row is never sent again,
        so a retry of the whole activity (a dead worker) sends only what is not yet sent.
        Transient SMTP errors are outcomes (`retry`), not a failure of the activity: the
        workflow sends again to those recipients alone. Heartbeats every second."""
        async with _heartbeating():
            return SendEmailsResult(outcomes=await self._send_all(request))

    @activity.defn
    async def fire_and_send(self, request: FireRung) -> RungFired:
        """Side effect: `fire_rung`'s transaction, which (if the rung emails at most
        `LOCAL_SENDS` recipients) also commits the mails' attempt (`send_emails`' first
        step), then the sends under the item's share lock. Run as a local activity, a rung
        costs one workflow task, two transactions and no activity round trip through the
        server. Idempotency: both parts' keys; a retry re-fires nothing and sends only what
        is not yet sent. More recipients than that are left to `send_emails` (`outcomes`
        None), which heartbeats."""
        account_id = uuid.UUID(request.account_id)

        async def attempt(
            session: AsyncSession, item: Row[Any], found: Resolution
        ) -> tuple[SendEmails, dict[str, MailOutcome]] | None:
            if "email" not in request.channels or not found.recipients:
                return None
            if len(found.recipients) > LOCAL_SENDS:
                return None
            batch = SendEmails(
                item_id=request.item_id,
                account_id=request.account_id,
                recipients=list(found.recipients),
                event_key=request.event_key,
                rung=request.rung,
                tier=request.tier,
                critical=request.critical,
                at=request.at,
                planned_at=request.planned_at,
            )
            return batch, _not_now(await _attempt(session, batch, account_id))

        fired, item, prepared = await fire(self._sessionmaker, request, attempt)
        if item is None or prepared is None:
            return fired
        batch, outcomes = prepared
        due = [r for r in batch.recipients if r.user_id not in outcomes]
        if due:
            outcomes.update(await self._deliver(batch, account_id, due))
        return replace(fired, outcomes=[outcomes[r.user_id] for r in batch.recipients])

    @activity.defn
    async def send_email(self, request: SendEmail) -> SendEmailResult:
        """Side effect: one email over SMTP (the history before `batched-sends`); the same
        engine as `send_emails`, with a transient error raised for Temporal to retry and a
        5xx raised non-retryable, as it always was."""
        batch = SendEmails(
            item_id=request.item_id,
            account_id=request.account_id,
            recipients=[request.recipient],
            event_key=request.event_key,
            rung=request.rung,
            tier=request.tier,
            critical=request.critical,
            at=request.at,
        )
        async with _heartbeating():
            [outcome] = await self._send_all(batch)
        if outcome.status == "retry":
            raise RuntimeError(
                f"SMTP to {request.recipient.email} failed, will retry: {outcome.error}"
            )
        if outcome.status == "failed" and outcome.error is not None and outcome.recorded:
            raise ApplicationError(outcome.error, type="PermanentDeliveryError", non_retryable=True)
        return SendEmailResult(
            status=outcome.status,
            deferred_until=outcome.deferred_until,
            message_id=outcome.message_id,
            sent_at=outcome.sent_at,
            recorded=outcome.recorded,
        )

    async def _send_all(self, request: SendEmails) -> list[MailOutcome]:
        unique = list({r.user_id: r for r in request.recipients}.values())
        request = replace(request, recipients=unique)  # one row, one mail, per recipient
        account_id = uuid.UUID(request.account_id)
        outcomes, item = await self._prepare(request, account_id)
        due = [r for r in request.recipients if r.user_id not in outcomes]
        if due and item is not None:
            outcomes.update(await self._deliver(request, account_id, due))
        return [outcomes[r.user_id] for r in request.recipients]

    async def _prepare(
        self, request: SendEmails, account_id: uuid.UUID
    ) -> tuple[dict[str, MailOutcome], MailItem | None]:
        """The attempt, committed: the outcome of every recipient not to be sent now."""
        async with tenant_session(self._sessionmaker, account_id) as session:
            item = await _open_item(session, request, account_id)
            if item is None:
                rows = await _claim_rows(session, request, account_id, request.recipients)
                return await _suppress(session, rows), None
            return _not_now(await _attempt(session, request, account_id)), item

    async def _deliver(
        self,
        request: SendEmails,
        account_id: uuid.UUID,
        due: Sequence[Recipient],
    ) -> dict[str, MailOutcome]:
        """The sends, under the item's share lock, and each one's record."""
        outcomes: dict[str, MailOutcome] = {}
        fresh: list[MailOutcome] = []  # what this call sent or failed (for the metrics)
        held: MailItem | None = None
        try:
            async with tenant_session(self._sessionmaker, account_id) as session:
                held = await _open_item(session, request, account_id)
                rows = await _locked_rows(session, request, account_id, due)
                if held is None:
                    return await _suppress(session, rows)
                live = [row for row in rows if row.status not in FINAL]
                outcomes.update({str(r.recipient_id): _final(r) for r in rows if r.status in FINAL})
                by_id = {r.user_id: r for r in due}
                sent = await asyncio.gather(  # the item as locked now, not as first read
                    *(self._send_one(request, by_id[str(row.recipient_id)], held) for row in live)
                )
                changes = []
                for row, result in zip(live, sent, strict=True):
                    outcome = _outcome(row, result, request)
                    outcomes[outcome.user_id] = outcome
                    fresh.append(outcome)
                    changes.append(_recorded(row, outcome))
                    if outcome.status == "failed":
                        await _audit_failure(session, row, request.tier, outcome.error or "")
                await _apply(session, changes)
        except Exception as error:
            if not any(o.status == "sent" for o in outcomes.values() if o.sent_at):
                raise
            # SMTP has some of the mails; only their record is missing. Never send them
            # again for that: the workflow records what this could not.
            activity.logger.warning("email.sent_unrecorded", extra={"error": str(error)})
            _measure(request, held, fresh)  # accepted by SMTP all the same
            return {k: replace(o, recorded=False) for k, o in outcomes.items()}
        activity.logger.info(
            "email.sent",
            extra={
                "sent": sum(o.status == "sent" for o in outcomes.values()),
                "rung": request.rung,
            },
        )
        _measure(request, held, fresh)
        return outcomes

    async def _send_one(
        self, request: SendEmails, recipient: Recipient, item: MailItem
    ) -> datetime | aiosmtplib.SMTPException:
        """The accept time, or the SMTP error (one recipient's failure never stops another).
        The mail is rendered once a pooled connection is free for it, so rendering the next
        mails overlaps the server's answers to the ones in flight."""

        def message() -> Message:
            rendered = render(request, recipient, item, self._links)
            rendered["From"] = self._smtp.mail_from
            return rendered

        try:
            await self._pool.send(
                message, sender=self._smtp.mail_from, recipients=[recipient.email]
            )
        except aiosmtplib.SMTPException as error:
            return error
        except OSError as error:  # refused or reset below SMTP: as transient as a 4xx
            return aiosmtplib.SMTPException(f"{type(error).__name__}: {error}")
        return utcnow()

    @activity.defn
    async def record_sent(self, outcome: DeliveryOutcome) -> None:
        """Side effect: marks the delivery `sent` at the SMTP accept time the send reported
        but could not record. Idempotent: a row already `sent` is left as it is."""
        account_id = uuid.UUID(outcome.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            await session.execute(
                update(Delivery)
                .where(
                    *_key(account_id, outcome.item_id, outcome.event_key, [outcome.recipient_id])
                )
                .where(Delivery.status != "sent")
                .values(
                    status="sent",
                    sent_at=outcome.sent_at,
                    message_id=outcome.message_id,
                    last_error=None,
                )
            )

    @activity.defn
    async def record_delivery_failure(self, outcome: DeliveryOutcome) -> None:
        """Side effect: the delivery `failed` with its last error, plus a `delivery_failed`
        audit row, once the send's retries are exhausted. Idempotent by the audit key
        `<delivery>:failed`; a row already `sent` is never marked failed."""
        await self.record_failures(
            RecordFailures(
                item_id=outcome.item_id,
                account_id=outcome.account_id,
                event_key=outcome.event_key,
                tier=outcome.tier,
                recipient_ids=[outcome.recipient_id],
                error=outcome.error or "",
            )
        )

    @activity.defn
    async def record_failures(self, request: RecordFailures) -> list[str]:
        """Side effect: every named delivery not `sent` becomes `failed` with the error, each
        with its `delivery_failed` audit row (key `<delivery>:failed`, so once). Returns the
        recipients it marked, so the workflow announces only those."""
        account_id = uuid.UUID(request.account_id)
        async with tenant_session(self._sessionmaker, account_id) as session:
            rows = (
                await session.execute(
                    select(DELIVERY)
                    .where(
                        *_key(account_id, request.item_id, request.event_key, request.recipient_ids)
                    )
                    .where(DELIVERY.c.status != "sent")
                    .order_by(DELIVERY.c.recipient_id)
                    .with_for_update()
                )
            ).all()
            await _apply(
                session, [_change(row, status="failed", last_error=request.error) for row in rows]
            )
            for row in rows:
                await _audit_failure(session, row, request.tier, request.error)
        metrics.delivered("email", "failed", len(rows))
        return [str(row.recipient_id) for row in rows]


UNKNOWN_OUTCOME = (
    "the previous attempt's outcome is unknown (its worker stopped mid-send); sent again "
    "with the same Message-ID"
)


@contextlib.asynccontextmanager
async def _heartbeating(every: float = 1.0) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    beating = asyncio.create_task(beat())
    try:
        yield
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating


async def _open_item(
    session: AsyncSession, request: SendEmails, account_id: uuid.UUID
) -> MailItem | None:
    """The item, locked FOR SHARE (a claim's UPDATE waits for it), if it is still open."""
    params = {"p_item": uuid.UUID(request.item_id), "p_account": account_id}
    row = (await session.execute(_ITEM_FOR_SHARE, params)).one_or_none()
    if row is None or row.state != "open":
        return None
    return _mail_item(row)


def _key(
    account_id: uuid.UUID, item_id: str, event_key: str, recipient_ids: Sequence[str]
) -> tuple[Any, ...]:
    return (
        DELIVERY.c.account_id == account_id,
        DELIVERY.c.item_id == uuid.UUID(item_id),
        DELIVERY.c.event_key == event_key,
        DELIVERY.c.channel == "email",
        DELIVERY.c.recipient_id.in_([uuid.UUID(r) for r in recipient_ids]),
    )


async def _claim_rows(
    session: AsyncSession,
    request: SendEmails,
    account_id: uuid.UUID,
    recipients: Sequence[Recipient],
) -> Sequence[Any]:
    """The recipients' delivery rows, created if missing, locked, read fresh."""
    # executemany, not a multi-row VALUES: SQLAlchemy caches the compiled statement only so
    await session.execute(
        insert(DELIVERY).on_conflict_do_nothing(), _keys(request, account_id, recipients)
    )
    return await _locked_rows(session, request, account_id, recipients)


async def _locked_rows(
    session: AsyncSession,
    request: SendEmails,
    account_id: uuid.UUID,
    recipients: Sequence[Recipient],
) -> Sequence[Any]:
    """The recipients' delivery rows FOR UPDATE, in recipient order (two attempts at the
    same rung never deadlock)."""
    params = {
        "p_account": account_id,
        "p_item": uuid.UUID(request.item_id),
        "p_event": request.event_key,
        "p_ids": [uuid.UUID(r.user_id) for r in recipients],
    }
    return (await session.execute(_ROWS_FOR_UPDATE, params)).all()


def _keys(
    request: SendEmails, account_id: uuid.UUID, recipients: Sequence[Recipient]
) -> list[dict[str, Any]]:
    """One delivery row's key per recipient, in recipient order."""
    return [
        {
            "account_id": account_id,
            "item_id": uuid.UUID(request.item_id),
            "recipient_id": uuid.UUID(r.user_id),
            "event_key": request.event_key,
            "channel": "email",
        }
        for r in sorted(recipients, key=lambda r: uuid.UUID(r.user_id))
    ]


async def _attempt(
    session: AsyncSession, request: SendEmails, account_id: uuid.UUID
) -> Sequence[Any]:
    """Every recipient's row in its attempt state, in one upsert that locks the rows it
    meets: a `sent` or `failed` row stays as it is; a recipient in quiet hours (of a
    `normal` notification) is `deferred` to the window's end; anyone else is `sending` with
    attempts + 1, and a row that was already `sending` notes the unknown outcome of the
    attempt before (RFC 1047)."""
    proposals = []
    for key, recipient in zip(
        _keys(request, account_id, request.recipients),
        sorted(request.recipients, key=lambda r: uuid.UUID(r.user_id)),
        strict=True,
    ):
        until = None if request.critical else _quiet_until(recipient, request.at)
        status = "deferred" if until else "sending"
        proposals.append(
            {**key, "status": status, "attempts": 0 if until else 1, "deferred_until": until}
        )
    rows: Sequence[Any] = (await session.execute(_upsert(), proposals)).all()
    return rows


@functools.cache
def _upsert() -> ReturningInsert[Any]:
    """`_attempt`'s statement, built once; executemany (cached by SQLAlchemy), not a
    multi-row VALUES (which it compiles anew each time)."""
    upsert = insert(DELIVERY)
    row, new = DELIVERY.c, upsert.excluded
    final = or_(*(row.status == status for status in FINAL))  # no IN: executemany
    return upsert.on_conflict_do_update(
        index_elements=["recipient_id", "item_id", "event_key", "channel"],
        set_={
            "status": case((final, row.status), else_=new.status),
            "attempts": case(
                (final, row.attempts),
                (new.status == "sending", row.attempts + 1),
                else_=row.attempts,
            ),
            "last_error": case(
                (and_(row.status == "sending", new.status == "sending"), literal(UNKNOWN_OUTCOME)),
                else_=row.last_error,
            ),
            "deferred_until": case(
                (and_(~final, new.status == "deferred"), new.deferred_until),
                else_=row.deferred_until,
            ),
            "updated_at": func.now(),
        },
    ).returning(*DELIVERY.c)


async def _suppress(session: AsyncSession, rows: Sequence[Any]) -> dict[str, MailOutcome]:
    """The item is no longer open: every row not final becomes `suppressed`; the outcome
    of each row (final rows as they are)."""
    live = [row for row in rows if row.status not in FINAL]
    await _apply(session, [_change(row, status="suppressed") for row in live])
    metrics.delivered("email", "suppressed", len(live))
    return {
        str(row.recipient_id): _final(row)
        if row.status in FINAL
        else MailOutcome(user_id=str(row.recipient_id), status="suppressed")
        for row in rows
    }


def _measure(request: SendEmails, item: MailItem | None, outcomes: Sequence[MailOutcome]) -> None:
    """Metrics of the mails this attempt sent or failed (rows found final are someone
    else's): each outcome (a transient error counts as pending: it is sent again), and the
    rung's lateness to the last accept."""
    statuses = Counter("pending" if o.status == "retry" else o.status for o in outcomes)
    for status in ("sent", "failed", "pending"):
        metrics.delivered("email", status, statuses[status])
    accepted = [o.sent_at for o in outcomes if o.status == "sent" and o.sent_at is not None]
    if item is not None and request.planned_at is not None and accepted:
        metrics.rung_sent(request.tier, item.item_type, request.planned_at, max(accepted))


def _not_now(rows: Sequence[Any]) -> dict[str, MailOutcome]:
    """The outcomes of the attempted rows that are not to be sent now: final or deferred."""
    outcomes = {}
    for row in rows:
        user_id = str(row.recipient_id)
        if row.status in FINAL:
            outcomes[user_id] = _final(row)
        elif row.status == "deferred":
            outcomes[user_id] = MailOutcome(
                user_id=user_id, status="deferred", deferred_until=row.deferred_until
            )
    return outcomes


def _mail_item(row: Any) -> MailItem:
    return MailItem(
        id=row.id,
        title=row.title,
        item_type=row.item_type,
        kind=row.kind,
        due_at=row.due_at,
        engineer_notes=row.engineer_notes,
        priority=row.priority,
        zone=row.tz,
        offsets=_offsets(row.rungs),
    )


@functools.lru_cache(maxsize=1024)
def _described(rungs: str) -> dict[str, str]:
    parsed = parse_rungs(json.loads(rungs))
    return {name: rung.offset.describe() for name, rung in parsed.items() if rung is not None}


def _offsets(rungs: dict[str, Any]) -> dict[str, str]:
    """Each rung's offset in words; a policy version never changes, so this is cached."""
    return _described(json.dumps(rungs, sort_keys=True))


def _final(row: Any) -> MailOutcome:
    return MailOutcome(
        user_id=str(row.recipient_id),
        status=row.status,
        message_id=row.message_id,
        sent_at=row.sent_at,
    )


def _outcome(
    row: Any, result: datetime | aiosmtplib.SMTPException, request: SendEmails
) -> MailOutcome:
    user_id = str(row.recipient_id)
    if isinstance(result, datetime):
        return MailOutcome(
            user_id=user_id,
            status="sent",
            sent_at=result,
            message_id=message_id(user_id, request.item_id, request.event_key),
        )
    status = "failed" if _is_permanent(result) else "retry"
    return MailOutcome(user_id=user_id, status=status, error=str(result))


def _recorded(row: Any, outcome: MailOutcome) -> dict[str, Any]:
    if outcome.status == "sent":
        # keep the RFC 1047 note: this row was sent twice
        note = row.last_error if row.last_error == UNKNOWN_OUTCOME else None
        return _change(
            row,
            status="sent",
            sent_at=outcome.sent_at,
            message_id=outcome.message_id,
            last_error=note,
        )
    status = "failed" if outcome.status == "failed" else "pending"
    return _change(row, status=status, last_error=outcome.error)


def _change(row: Any, **values: Any) -> dict[str, Any]:
    """One row's new values, for `_apply`: every column it sets, the rest as they are."""
    return {
        "row_id": row.id,
        "status": values.get("status", row.status),
        "attempts": values.get("attempts", row.attempts),
        "last_error": values.get("last_error", row.last_error),
        "message_id": values.get("message_id", row.message_id),
        "sent_at": values.get("sent_at", row.sent_at),
        "deferred_until": values.get("deferred_until", row.deferred_until),
    }


_APPLY = (
    update(DELIVERY)
    .where(DELIVERY.c.id == bindparam("row_id"))
    .values(
        status=bindparam("status"),
        attempts=bindparam("attempts"),
        last_error=bindparam("last_error"),
        message_id=bindparam("message_id"),
        sent_at=bindparam("sent_at"),
        deferred_until=bindparam("deferred_until"),
    )
)


async def _apply(session: AsyncSession, changes: list[dict[str, Any]]) -> None:
    """Every row's change in one executemany UPDATE."""
    if changes:
        await session.execute(_APPLY, changes)


async def _audit_failure(session: AsyncSession, row: Any, tier: int, error: str) -> None:
    await audit.delivery_failed(session, row, tier, recipient_id=str(row.recipient_id), error=error)


def _quiet_until(recipient: Recipient, at: datetime) -> datetime | None:
    start = time.fromisoformat(recipient.quiet_start) if recipient.quiet_start else None
    end = time.fromisoformat(recipient.quiet_end) if recipient.quiet_end else None
    return quiet_until(at, recipient.timezone, start, end)

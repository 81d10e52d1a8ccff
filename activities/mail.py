"""A notification mail: what it says (Jinja templates, the policy's words, the calendar's
zone), whom it is for and what it links to. Pure rendering, no I/O: the delivery engine
(`activities.email`) calls it once per recipient, and an address that cannot be encoded is
that recipient's failure there, never the batch's."""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

from config import Settings
from domain import links
from domain.addresses import for_smtp
from domain.people import Recipient
from domain.policy import base_event, parse_rungs
from workflows.types import SendEmails

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


def message_id(user_id: str, item_id: str, event_key: str) -> str:
    """Deterministic: the same delivery key always gives the same Message-ID, so even a
    resend after a lost commit is recognisable downstream."""
    key = f"{user_id}:{item_id}:{event_key}:email"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@escalator>"


def thread_of(item_id: str) -> str:
    """The thread every mail about the item replies to (a root no mail carries itself)."""
    return f"<item-{item_id}@escalator>"


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
    assignee: str = ""  # whose it is, by name
    creator: str = ""  # who made it (a handoff: the engineer who escalated it), by name


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
    request: SendEmails,
    recipient: Recipient,
    item: MailItem,
    to: MailLinks | None = None,
    *,
    smtputf8: bool = False,
) -> Message:
    """The mail, as a compat32 MIME message: the modern `EmailMessage` API parses every
    header it is given, which made rendering most of a 500-recipient rung's CPU. Header
    values are single lines (a title's line breaks can never start a header of their own).
    The wording comes from the policy ("2 business days past due"), the due instant is in
    the calendar's zone, and each mail links to its item and to a claim as its recipient.
    Raises `Undeliverable` for an address that cannot go on the wire."""
    to = to or MailLinks.from_settings(Settings())
    event, repeat = base_event(request.event_key)  # a repeat reads as its rung does
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
        "event_key": event,
        "notes": item.engineer_notes or "",
        "priority": item.priority or "",
        "assignee": item.assignee,
        "creator": item.creator,
        "item_url": to.item(request.item_id),
        "claim_url": to.claim(request, recipient),
    }
    parts = {}
    for env, part in ((TEMPLATES, "subject"), (TEMPLATES, "text"), (HTML, "html")):
        try:
            template = env.get_template(f"{event}.j2")
        except TemplateNotFound:  # an admin-defined event key without its own wording
            template = env.get_template("_base.j2")
        parts[part] = template.render(variables, part=part)
    message = MIMEMultipart("alternative")
    again = f"[still unclaimed, notice {repeat + 1}] " if repeat else ""
    subject = Header(again + _one_line(parts["subject"]), "utf-8", header_name="Subject")
    message["Subject"] = subject.encode()
    message["To"] = to_header(recipient.name, for_smtp(recipient.email, smtputf8=smtputf8))
    message["Message-ID"] = message_id(recipient.user_id, request.item_id, request.event_key)
    # Every mail about one item names the same thread root, so mail clients group them.
    message["In-Reply-To"] = message["References"] = thread_of(request.item_id)
    message["Date"] = format_datetime(request.at)
    message["X-Escalator-Event"] = request.event_key
    message["X-Escalator-Item"] = request.item_id
    message.attach(MIMEText(parts["text"], "plain", "utf-8"))
    message.attach(MIMEText(parts["html"], "html", "utf-8"))
    return message


def to_header(name: str, address: str) -> str:
    """`Name <address>`: the name RFC 2047-encoded when it is not ASCII, the address as
    given (`formataddr` refuses a non-ASCII address even where SMTPUTF8 carries it)."""
    shown = _one_line(name)
    if shown.isascii():
        return formataddr((shown, "x@x")).rsplit("<", 1)[0] + f"<{address}>"
    return f"{Header(shown, 'utf-8').encode()} <{address}>"


def _one_line(value: str) -> str:
    return " ".join(value.split())


def mail_item(row: Any) -> MailItem:
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
        assignee=row.assignee_name or "",
        creator=row.creator_name or "",
    )


@functools.lru_cache(maxsize=1024)
def _described(rungs: str) -> dict[str, str]:
    parsed = parse_rungs(json.loads(rungs))
    return {name: rung.offset.describe() for name, rung in parsed.items() if rung is not None}


def _offsets(rungs: dict[str, Any]) -> dict[str, str]:
    """Each rung's offset in words; a policy version never changes, so this is cached."""
    return _described(json.dumps(rungs, sort_keys=True))


SUBJECTS = {
    "auth.sign_in": "Your sign-in link for {account}",
    "auth.confirm_email": "Confirm your new address for {account}",
    "auth.email_changing": "Your address for {account} is being changed",
    "webhook.disabled": "A webhook endpoint of {account} was switched off",
    "webhook.recovered": "A webhook endpoint of {account} works again",
}


def account_message(
    kind: str,
    *,
    name: str,
    address: str,
    account: str,
    at: datetime,
    message_id: str,
    **variables: str,
) -> Message:
    """A mail about the person's account (`kind`, one of `SUBJECTS`), rendered from the
    template of that name with `variables`. `address` as on the wire."""
    message = MIMEMultipart("alternative")
    subject = SUBJECTS[kind].format(account=_one_line(account))
    message["Subject"] = Header(f"[escalator] {subject}", "utf-8").encode()
    message["To"] = to_header(name, address)
    message["Message-ID"] = message_id
    message["Date"] = format_datetime(at)
    message["X-Escalator-Event"] = kind
    values = {"name": name, "account": account, **variables}
    for env, part in ((TEMPLATES, "plain"), (HTML, "html")):
        text = env.get_template(f"{kind}.j2").render(values, part=part)
        message.attach(MIMEText(text, part, "utf-8"))
    return message

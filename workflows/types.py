"""Messages between the API, the workflow and its activities.

They live outside the workflow module and are imported passed-through: dataclasses with
`datetime` fields defined inside a sandboxed workflow module fail to decode. Every type is
frozen and keyword-only, and new fields get defaults so old histories still decode. Only
JSON-friendly field types (str, int, bool, datetime, lists, dicts) are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.people import Recipient

__all__ = ["Recipient"]


# The item workflow's registered name: the API and the reconciler start it by this name, so
# they never import workflow code (tests/workflows/test_starts.py checks the two agree).
ESCALATION_WORKFLOW = "EscalationWorkflow"
SIGN_IN_WORKFLOW = "SignInMailWorkflow"
ACCOUNT_MAIL_WORKFLOW = "AccountMailWorkflow"
RESEND_WEBHOOK_WORKFLOW = "ResendWebhookWorkflow"


def workflow_id(item_id: str) -> str:
    return f"item-{item_id}"


@dataclass(frozen=True, kw_only=True)
class RungMark:
    name: str
    status: str  # fired | skipped
    at: datetime


@dataclass(frozen=True, kw_only=True)
class PauseSpan:
    start: datetime
    end: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Notification:
    """One notification of an item: a rung's, or a handoff's fan-out."""

    event_key: str
    rung: str
    tier: int
    chain: list[str]
    channels: list[str]
    critical: bool
    push_kind: str
    actor_id: str | None = None
    planned_at: datetime | None = None  # the rung's instant: the lateness metric's start
    repeat: int = 0  # the rung's nth repeat (its event key ends `~n`); 0: the rung itself


@dataclass(frozen=True, kw_only=True)
class PendingSend:
    """A send still to make when the workflow continues as new: mails to `recipients`
    (not before `not_before`: a backoff or quiet hours), or a webhook to `endpoint_id`
    (its event stamped `at`), carried into the next run instead of drained."""

    note: Notification
    recipients: list[Recipient] = field(default_factory=list)
    not_before: datetime | None = None
    attempt: int = 0  # SMTP attempts made so far (the retry budget continues)
    endpoint_id: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Carry:
    """What a continued-as-new run takes over from its predecessor."""

    state: str
    claimed_by: str | None
    due_at: datetime | None
    pauses: list[PauseSpan] = field(default_factory=list)
    done: list[RungMark] = field(default_factory=list)
    handoff_notified: bool = False
    tier: int = -1
    sends: list[PendingSend] = field(default_factory=list)
    due_marked: datetime | None = None
    repeats: int = 0
    repeated_at: datetime | None = None
    renotify: bool = False
    claimed_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class EscalationInput:
    item_id: str
    account_id: str
    carry: Carry | None = None


@dataclass(frozen=True, kw_only=True)
class EscalationResult:
    state: str
    fired: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ItemRef:
    item_id: str
    account_id: str


@dataclass(frozen=True, kw_only=True)
class ItemHook:
    """A lifecycle webhook still to post (`item.claimed@7` to one endpoint), its event
    stamped `at` (when the transition committed)."""

    endpoint_id: str
    event_key: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class ItemSnapshot:
    """Everything the workflow plans with, loaded once (and again on `replan`)."""

    item_id: str
    account_id: str
    kind: str
    item_type: str
    title: str
    state: str
    due_at: datetime | None
    created_at: datetime
    paused_at: datetime | None
    intent: str | None
    creator_id: str | None
    claimed_by: str | None
    policy_version: int
    rungs: dict[str, Any]  # the pinned sla_policy.rungs document
    calendar: dict[str, Any]  # BusinessCalendar.to_dict(), holidays expanded to dates
    done: list[RungMark] = field(default_factory=list)
    pauses: list[PauseSpan] = field(default_factory=list)
    version: int = 0  # item.version as read
    calendar_version: int = 0  # the pinned calendar version's number
    # For the Temporal UI only (never planned with): who each rung would notify now, and
    # the claimer, by name.
    notified: dict[str, list[str]] = field(default_factory=dict)
    claimer_name: str = ""
    claimed_at: datetime | None = None
    hooks: list[ItemHook] = field(default_factory=list)  # lifecycle webhooks to post


@dataclass(frozen=True, kw_only=True)
class AppliedVersion:
    item_id: str
    account_id: str
    version: int


@dataclass(frozen=True, kw_only=True)
class RecordRung:
    item_id: str
    account_id: str
    rung: str
    tier: int
    status: str  # fired | skipped
    at: datetime
    planned_at: datetime


@dataclass(frozen=True, kw_only=True)
class MarkDue:
    """The item fell due at `due_at` (its effective due, pauses included)."""

    item_id: str
    account_id: str
    due_at: datetime


@dataclass(frozen=True, kw_only=True)
class TimeOutClaim:
    """`claimed_by`'s claim of `claimed_at` was not resolved in time: reopen the item."""

    item_id: str
    account_id: str
    claimed_by: str
    claimed_at: datetime
    at: datetime


@dataclass(frozen=True, kw_only=True)
class RungRecorded:
    recorded: bool
    state: str  # the item's state in the database, the truth when the two disagree
    claimed_by: str | None = None


@dataclass(frozen=True, kw_only=True)
class FireRung:
    """One rung firing: everything `fire_rung` writes in its one transaction."""

    item_id: str
    account_id: str
    rung: str
    tier: int
    at: datetime
    planned_at: datetime
    event_key: str
    chain: list[str]
    channels: list[str]
    push_kind: str = "rung.fired"
    critical: bool = False  # `fire_and_send`: a critical rung's mail pierces quiet hours
    actor_id: str | None = None  # left out of the recipients (a handoff's escalator)
    repeat: int = 0  # a repeat locks the item instead of stamping it, and audits its own row
    # The due instant the item falls due at, when the rung fires at that same instant: its
    # `fell_due` row and `item.overdue` event go in the rung's transaction (no `record_due`).
    fell_due: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class RungFired:
    recorded: bool  # False: the item was no longer open, nothing was written
    state: str  # the item's state in the database
    claimed_by: str | None = None
    recipients: list[Recipient] = field(default_factory=list)  # whom to email
    tried: list[str] = field(default_factory=list)
    # `fire_and_send`: each recipient's mail outcome, when it sent them itself (None: the
    # workflow sends them with `send_emails`, as for a chain of more than LOCAL_SENDS).
    outcomes: list[MailOutcome] | None = None
    rung: str = ""  # what fired: a rung's name, or `handoff` (its fan-out)


@dataclass(frozen=True, kw_only=True)
class RecordPlan:
    item_id: str
    account_id: str
    instants: dict[str, datetime | None]  # rung -> planned fire instant


@dataclass(frozen=True, kw_only=True)
class SendEmails:
    """One rung's mails (or the part of them still to send): one activity over the pool."""

    item_id: str
    account_id: str
    recipients: list[Recipient]
    event_key: str
    rung: str
    tier: int
    critical: bool
    at: datetime  # the workflow's now: quiet hours are judged at this instant
    # The rung's planned instant on its first attempt (the lateness metric's start); None
    # on a retry or after quiet hours, whose lateness is not the stack's.
    planned_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class MailOutcome:
    """What became of one recipient's mail in one `send_emails` attempt."""

    user_id: str
    # sent | suppressed | deferred | failed | retry (a transient error: send again after a
    # backoff) | later (not tried: its batch ran out of time; send at once)
    status: str
    deferred_until: datetime | None = None
    message_id: str | None = None
    sent_at: datetime | None = None
    error: str | None = None  # set when this attempt failed it (failed or retry)
    # False when the database failed after SMTP answered: the workflow records it.
    recorded: bool = True


@dataclass(frozen=True, kw_only=True)
class SendEmailsResult:
    outcomes: list[MailOutcome] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class RecordFailures:
    """Recipients whose mail ran out of attempts: marked `failed` if still pending."""

    item_id: str
    account_id: str
    event_key: str
    tier: int
    recipient_ids: list[str]
    error: str
    emails: dict[str, str] = field(default_factory=dict)  # user id -> address, for the push


@dataclass(frozen=True, kw_only=True)
class RecordOutcomes:
    """What a `send_emails` did but could not record (Postgres failed after SMTP answered)."""

    batch: SendEmails
    outcomes: list[MailOutcome]


@dataclass(frozen=True, kw_only=True)
class ClaimSignal:
    user_id: str
    at: datetime | None = None
    name: str | None = None  # the claimer's, for the Temporal UI (`ClaimedByName`)


@dataclass(frozen=True, kw_only=True)
class AtSignal:
    """For release/pause/resume/resolve/cancel: when the API committed it."""

    at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class ChangeDueSignal:
    due_at: datetime


@dataclass(frozen=True, kw_only=True)
class RungView:
    name: str
    tier: int
    deadline: datetime
    fire_at: datetime
    status: str


@dataclass(frozen=True, kw_only=True)
class StateView:
    state: str
    claimed_by: str | None
    due_at: datetime | None
    effective_due_at: datetime | None
    tier: int
    rungs: list[RungView] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ReconcileInput:
    """The reconciler's rounds: one every `every_seconds`; `rounds` ends it after that many
    (tests), else it runs for ever (continuing as new, with its walk's cursor)."""

    every_seconds: int
    rounds: int | None = None
    after: NudgeCursor | None = None


@dataclass(frozen=True, kw_only=True)
class Pruned:
    """What a round's pruning deleted: push events past retention, used links past the
    longest life of their link."""

    push_events: int = 0
    used_links: int = 0


@dataclass(frozen=True, kw_only=True)
class NudgeCursor:
    """Where the reconciler's walk through the lagging items stands: the last item it
    reached, in (updated_at, id) order."""

    updated_at: datetime
    item_id: str


@dataclass(frozen=True, kw_only=True)
class NudgePass:
    """One pass of the walk, from `after` (None: from the start)."""

    after: NudgeCursor | None = None


@dataclass(frozen=True, kw_only=True)
class Nudged:
    """What a pass did: `nudged` workflows signalled `sync`; `gone`, items whose workflow
    Temporal no longer has (settled, or to start afresh); `failed`, signals that did not
    arrive (counted, logged, tried again on the next walk); `after`, where the next pass
    goes on (None: this one reached the end, the next starts over)."""

    nudged: int = 0
    gone: int = 0
    failed: int = 0
    after: NudgeCursor | None = None


@dataclass(frozen=True, kw_only=True)
class SignIn:
    """A sign-in request: its `sign_in_request` row, which holds the address."""

    request_id: int


@dataclass(frozen=True, kw_only=True)
class AccountMail:
    """One mail about a person's account rather than an item, asked for at `requested_at`
    (its link is valid from then); its delivery row's id is `delivery_id`, so a retry never
    makes a second row or mail. `kind`:
    - `auth.sign_in`: a sign-in link, to the user's address;
    - `auth.confirm_email`: the link that confirms `address` as the user's new address, sent
      to it (only while that change is still pending);
    - `auth.email_changing`: the notice to the old `address` that `new_address` was asked
      for by `actor`;
    - `webhook.disabled` / `webhook.recovered`: to an admin, that escalator switched the
      webhook `endpoint` off (for `reason`), or that it works again."""

    delivery_id: str
    account_id: str
    user_id: str
    requested_at: datetime
    kind: str = "auth.sign_in"
    address: str | None = None
    new_address: str | None = None
    actor: str | None = None
    endpoint: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class AccountMails:
    """The mails of one address change (`address-<id>`)."""

    id: str
    mails: list[AccountMail]


@dataclass(frozen=True, kw_only=True)
class AccountMailOutcome:
    """What became of an account mail: sent | failed | suppressed (the user is gone, or the
    address change was withdrawn)."""

    status: str
    sent_at: datetime | None = None
    message_id: str | None = None
    error: str | None = None
    # False when Postgres failed after SMTP accepted: the workflow records it.
    recorded: bool = True


@dataclass(frozen=True, kw_only=True)
class RecordAccountMail:
    mail: AccountMail
    outcome: AccountMailOutcome

"""Saved real histories must replay against today's workflow code: a non-deterministic change
fails here, not in production. And every path of the workflows has a saved history, so a
change to any of them is checked.

The 1.0 baseline: no deployment has run an older generation, so there is one generation of
histories and no `workflow.patched`. Until the README announces a release, a change to
workflow code re-saves them: `ESCALATOR_SAVE_HISTORIES=1 pytest tests/workflows` writes
`<scenario>.json` for every scenario below. From the first release on, see the README's
"Changing workflow code": `patched`, then `deprecate_patch`, then removal, each generation's
histories kept while a workflow of it may run.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.escalation import EscalationWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.replan import ReplanWorkflow
from workflows.resend import ResendWebhookWorkflow
from workflows.sign_in import AccountMailWorkflow, SignInMailWorkflow

HISTORIES = {
    path.stem: path.read_text()
    for path in sorted(Path(__file__).with_name("histories").glob("*.json"))
}


@dataclass
class Seen:
    """What one history holds: workflow type, activities run (local ones by their marker),
    signals, timer summaries, event types, and the results the activities returned."""

    workflow: str = ""
    activities: set[str] = field(default_factory=set)
    signals: set[str] = field(default_factory=set)
    timers: list[str] = field(default_factory=list)
    events: set[str] = field(default_factory=set)
    results: list[Any] = field(default_factory=list)


def _payloads(holder: dict[str, Any]) -> list[Any]:
    return [
        json.loads(base64.b64decode(p["data"])) if "data" in p else None  # None: binary/null
        for p in holder.get("payloads", [])
    ]


def seen(raw: str) -> Seen:
    found = Seen()
    for event in json.loads(raw)["events"]:
        kind = event["eventType"].removeprefix("EVENT_TYPE_")
        found.events.add(kind)
        if kind == "WORKFLOW_EXECUTION_STARTED":
            found.workflow = event["workflowExecutionStartedEventAttributes"]["workflowType"][
                "name"
            ]
        elif kind == "ACTIVITY_TASK_SCHEDULED":
            attributes = event["activityTaskScheduledEventAttributes"]
            found.activities.add(attributes["activityType"]["name"])
        elif kind == "ACTIVITY_TASK_COMPLETED":
            found.results += _payloads(
                event["activityTaskCompletedEventAttributes"].get("result", {})
            )
        elif kind == "MARKER_RECORDED":
            details = event["markerRecordedEventAttributes"]["details"]
            [data] = _payloads(details["data"])
            found.activities.add(data["activity_type"])
            found.results += _payloads(details.get("result", {}))
        elif kind == "WORKFLOW_EXECUTION_SIGNALED":
            found.signals.add(event["workflowExecutionSignaledEventAttributes"]["signalName"])
        elif kind == "TIMER_STARTED":
            summary = event.get("userMetadata", {}).get("summary")
            found.timers += _payloads({"payloads": [summary]}) if summary else []
    return found


SEEN = {name: seen(raw) for name, raw in HISTORIES.items()}


def _result_says(text: str) -> Callable[[Seen], bool]:
    return lambda s: any(text in json.dumps(r) for r in s.results)


def _activity(name: str) -> Callable[[Seen], bool]:
    return lambda s: name in s.activities


def _signal(name: str) -> Callable[[Seen], bool]:
    return lambda s: name in s.signals


def _timer(text: str) -> Callable[[Seen], bool]:
    return lambda s: any(text in t for t in s.timers)


# Every path through the workflows, and how a history shows that it took it.
PATHS: dict[str, Callable[[Seen], bool]] = {
    "a rung fires with its mails": _activity("fire_and_send"),
    "a far rung is armed afresh before its instant": _timer("escalate_1 at"),
    "a fan-out too big to mail with the fire": _activity("send_emails"),
    "a rung is skipped": _activity("record_rung"),
    "the last rung repeats until claimed": _timer("again at"),
    "a claim not resolved in time reopens the item": _activity("time_out_claim"),
    "the item falls due, audited and pushed": _activity("record_due"),
    "the timer until the item falls due": _timer("due at"),
    "the plan is recorded": _activity("record_plan"),
    "the handoff fan-out, fired like a rung": _result_says('"rung": "handoff"'),
    "quiet hours defer a mail": _timer("quiet hours"),
    "a transient SMTP error is retried after a backoff": _timer("SMTP retry"),
    "out of attempts, the mail is failed": _activity("record_failures"),
    "a recipient's 5xx is recorded": _result_says('"status": "failed"'),
    "the workflow records what the send could not": _activity("record_outcomes"),
    "the fire finds a claim whose signal was lost (follow)": _result_says('"recorded": false'),
    "continue-as-new carries a pending send": lambda s: (
        "WORKFLOW_EXECUTION_CONTINUED_AS_NEW" in s.events
    ),
    "a carried send resumes in the next run": _timer("carried retry"),
    "webhooks are planned and posted": _activity("send_webhook"),
    "a transition's webhooks are posted, the item's end waits for them": _result_says(
        "item.resolved@"
    ),
    "an endpoint's admins are told it was switched off": _activity("endpoint_news"),
    "a delivery sent again at an admin's request": lambda s: s.workflow == "ResendWebhookWorkflow",
    "a bulk re-plan runs in batches": _activity("replan_batch"),
    "a bulk re-plan nudges the workflows it moved": lambda s: (
        "EXTERNAL_WORKFLOW_EXECUTION_SIGNALED" in s.events
    ),
    "a bulk re-plan that cannot go on is failed, on the record": _activity("fail_replan"),
    "a long bulk re-plan continues as new from its cursor": lambda s: (
        s.workflow == "ReplanWorkflow" and "WORKFLOW_EXECUTION_CONTINUED_AS_NEW" in s.events
    ),
    **{
        f"signal {name}": _signal(name)
        for name in (
            "claim",
            "release",
            "resolve",
            "cancel",
            "pause",
            "resume",
            "change_due",
            "replan",
            "sync",
        )
    },
    "the reconciler's workflow": lambda s: s.workflow == "ReconcileWorkflow",
    "the reconciler sleeps between rounds": _timer("until the next round"),
    "the reconciler answers a lost sign-in request": _activity("start_missing_sign_ins"),
    "the reconciler walks the lagging items": _activity("nudge_lagging_workflows"),
    "the reconciler prunes what is past keeping": _activity("prune_tables"),
    "a sign-in request is looked up": _activity("sign_in_recipients"),
    "an account mail": _activity("send_account_mail"),
    "an address change's mails": lambda s: s.workflow == "AccountMailWorkflow",
    "a sign-in request's address is cleared": _activity("sign_in_handled"),
    "an account mail given up, on the record": _activity("record_account_mail"),
}


@pytest.mark.parametrize("path", PATHS)
def test_every_workflow_path_has_a_saved_history(path: str) -> None:
    assert any(PATHS[path](s) for s in SEEN.values()), f"no saved history takes: {path}"


@pytest.mark.parametrize("name", HISTORIES)
async def test_history_replays_deterministically(name: str) -> None:
    history = WorkflowHistory.from_json(f"wf-{name}", HISTORIES[name])
    await Replayer(
        workflows=[
            EscalationWorkflow,
            ReconcileWorkflow,
            SignInMailWorkflow,
            AccountMailWorkflow,
            ResendWebhookWorkflow,
            ReplanWorkflow,
        ]
    ).replay_workflow(history)

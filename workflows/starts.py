"""Starting and signalling item workflows from outside them (the API after its commit, the
reconciler), by the workflow's name: nothing here imports workflow code, so the API does
not load the workflow's activities (SMTP, templates, HTTP).

Temporal being slow or down never fails a request: the item is already committed. A start
that did not happen (or whose workflow never ran) leaves `workflow_started_at` empty, and the
reconciler starts it (a repeat is a no-op); a
signal that did not arrive is harmless because the workflow reads the item's state from the
database when it starts and whenever a rung would fire.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from workflows.replan_types import REPLAN_WORKFLOW, ReplanInput, replan_workflow_id
from workflows.types import (
    ACCOUNT_MAIL_WORKFLOW,
    ESCALATION_WORKFLOW,
    RESEND_WEBHOOK_WORKFLOW,
    SIGN_IN_WORKFLOW,
    AccountMails,
    EscalationInput,
    SignIn,
    workflow_id,
)
from workflows.webhook_types import SendWebhook

log = structlog.get_logger()
TIMEOUT_SECONDS = 3.0
SENT, GONE, FAILED = "sent", "gone", "failed"  # what became of a signal


async def start_item(
    client: Client | None,
    task_queue: str,
    item_id: uuid.UUID,
    account_id: uuid.UUID,
    summary: str | None = None,
) -> bool:
    """Start the item's workflow (idempotent by its id); True if Temporal took it. The
    workflow's first step stamps `workflow_started_at`. `summary` ("CAPA: Pump P-101
    leaks") is what the Temporal UI lists it by."""
    start = EscalationInput(item_id=str(item_id), account_id=str(account_id))
    return await _start(
        client, ESCALATION_WORKFLOW, start, workflow_id(str(item_id)), task_queue, summary
    )


async def start_sign_in(client: Client | None, task_queue: str, request: SignIn) -> bool:
    """Start the workflow that answers one sign-in request (idempotent by its id); False
    (logged) if Temporal did not take it: the reconciler starts it later."""
    workflow = f"sign-in-{request.request_id}"
    return await _start(client, SIGN_IN_WORKFLOW, request, workflow, task_queue, "sign-in mail")


async def start_account_mails(client: Client | None, task_queue: str, mails: AccountMails) -> bool:
    """Start the workflow that sends the mails of one address change; False (logged) if
    Temporal did not take it: the change stays pending, and asking for it again mails anew."""
    workflow = f"address-{mails.id}"
    return await _start(
        client, ACCOUNT_MAIL_WORKFLOW, mails, workflow, task_queue, "address change"
    )


async def start_resend(
    client: Client | None, task_queue: str, request: SendWebhook, name: str
) -> bool:
    """Start the workflow that sends one webhook delivery again; False (logged) if Temporal
    did not take it: the row stays `pending` and the admin asks again."""
    return await _start(
        client, RESEND_WEBHOOK_WORKFLOW, request, name, task_queue, "webhook sent again"
    )


async def start_replan(client: Client | None, task_queue: str, job: ReplanInput) -> bool:
    """Start the workflow that runs one bulk re-plan job (idempotent by the job's id); False
    (logged) if Temporal did not take it: the job stays `running` with nothing done until
    the reconciler starts it (`escalator_replans_to_start`)."""
    return await _start(
        client,
        REPLAN_WORKFLOW,
        job,
        replan_workflow_id(job.job_id),
        task_queue,
        "bulk re-plan",
    )


async def _start(
    client: Client | None,
    name: str,
    arg: Any,
    workflow: str,
    task_queue: str,
    summary: str | None,
) -> bool:
    if client is None:
        log.warning("workflow.start_deferred", workflow_id=workflow, reason="temporal connecting")
        return False
    try:
        await asyncio.wait_for(
            client.start_workflow(
                name,
                arg,
                id=workflow,
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                static_summary=summary,
            ),
            TIMEOUT_SECONDS,
        )
    except Exception as error:  # any failure: the reconciler starts it later
        log.warning("workflow.start_deferred", workflow_id=workflow, error=str(error))
        return False
    return True


async def signal_item(client: Client | None, item_id: uuid.UUID, signal: str, arg: Any) -> bool:
    outcome = await signal_outcome(client, item_id, signal, arg)
    if outcome == GONE:  # the reconciler starts a missing one; the caller is told
        log.warning("workflow.signal_failed", item_id=str(item_id), signal=signal, error=GONE)
    return outcome == SENT


async def signal_outcome(
    client: Client | None, item_id: uuid.UUID, signal: str, arg: Any = None
) -> str:
    """Signal the item's workflow: SENT; GONE if Temporal has no such workflow running (it
    never started, or it ended); FAILED otherwise (logged: a timeout, Temporal away). The
    workflow re-reads the database when it hears, so nothing is lost either way."""
    if client is None:
        return FAILED
    handle = client.get_workflow_handle(workflow_id(str(item_id)))
    try:
        if arg is None:
            await asyncio.wait_for(handle.signal(signal), TIMEOUT_SECONDS)
        else:
            await asyncio.wait_for(handle.signal(signal, arg), TIMEOUT_SECONDS)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return GONE
        failure = str(error)
    except Exception as error:  # a timeout, Temporal unreachable
        failure = repr(error)
    else:
        return SENT
    log.warning("workflow.signal_failed", item_id=str(item_id), signal=signal, error=failure)
    return FAILED

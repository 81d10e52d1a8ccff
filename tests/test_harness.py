"""The real parts the suite stands on: both Temporal servers with our search attributes, and
the SMTP sink on a real port."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import aiosmtplib
from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from mailsink import MailSink
from workflows import search_attributes


@workflow.defn(sandboxed=False)
class Noop:
    @workflow.run
    async def run(self) -> None:
        return None


async def _accepts_and_indexes_our_attributes(env: WorkflowEnvironment) -> str:
    """Run a workflow carrying every attribute: the server rejects unregistered ones, and
    describe shows what it indexed. (It must really run: on the time-skipping server a
    workflow task nobody picks up stops time from skipping for every later test.)"""
    now = datetime(2026, 11, 27, 9, tzinfo=UTC)
    values: dict[SearchAttributeKey[Any], Any] = {
        search_attributes.ESCALATION_STATE: "open",
        search_attributes.ESCALATION_TIER: 2,
        search_attributes.ITEM_KIND: "task",
        search_attributes.ITEM_TYPE: "CAPA",
        search_attributes.ITEM_TITLE: "Pump P-101 leaks",
        search_attributes.ACCOUNT_ID: "acc",
        search_attributes.DUE_AT: now,
        search_attributes.NEXT_RUNG_AT: now,
        search_attributes.CLAIMED_BY: "nobody",
        search_attributes.CLAIMED_BY_NAME: "Nobody Yet",
    }
    assert set(values) == set(search_attributes.ALL)
    task_queue = f"harness-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=task_queue, workflows=[Noop]):
        handle = await env.client.start_workflow(
            Noop.run,
            id=f"harness-{uuid.uuid4()}",
            task_queue=task_queue,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(key, value) for key, value in values.items()]
            ),
        )
        await handle.result()
    described = await handle.describe()
    assert described.typed_search_attributes[search_attributes.ESCALATION_TIER] == 2
    assert described.typed_search_attributes[search_attributes.DUE_AT] == now
    return handle.id


async def test_time_skipping_server_has_our_search_attributes(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    await _accepts_and_indexes_our_attributes(time_skipping_env)


async def test_dev_server_has_our_search_attributes(dev_env: WorkflowEnvironment) -> None:
    """...and a word of the title finds the item: `ItemTitle = "pump"`."""
    workflow_id = await _accepts_and_indexes_our_attributes(dev_env)
    for _ in range(50):  # visibility is eventually consistent
        found = [w.id async for w in dev_env.client.list_workflows('ItemTitle = "pump"')]
        if workflow_id in found:
            break
        await asyncio.sleep(0.1)
    assert workflow_id in found


async def test_mail_sink_receives_over_real_smtp(mail_sink: MailSink) -> None:
    await aiosmtplib.send(
        "Subject: hello\r\nMessage-ID: <m1@test>\r\n\r\nbody",
        sender="a@example.test",
        recipients=["b@example.test"],
        hostname=mail_sink.host,
        port=mail_sink.port,
    )
    [mail] = await mail_sink.wait_for(1)
    assert (mail.subject, mail.message_id, mail.rcpt_tos) == (
        "hello",
        "<m1@test>",
        ("b@example.test",),
    )

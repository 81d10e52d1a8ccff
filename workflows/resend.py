"""`ResendWebhookWorkflow`: one delivery to a webhook endpoint sent again at an admin's
request (`POST /v1/deliveries/{id}/resend`), as the notifier sends it: retried by Temporal
on the webhooks queue, `failed` on the record once out of attempts. Its id is the request's
(`resend-<delivery id>-<n>`); no signals, no queries."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.notifier import post_webhook
    from workflows.webhook_types import SendWebhook


@workflow.defn
class ResendWebhookWorkflow:
    @workflow.run
    async def run(self, request: SendWebhook) -> None:
        await post_webhook(request, f"webhook sent again → endpoint {request.endpoint_id}")

"""Activities against real Postgres, a real SMTP sink and a real webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.email import EmailActivities
from activities.smtp import Smtp
from activities.webhook import WebhookActivities
from mailsink import MailSink
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture
def email(
    app_sessionmaker: async_sessionmaker[AsyncSession], mail_sink: MailSink
) -> EmailActivities:
    smtp = Smtp(host=mail_sink.host, port=mail_sink.port, mail_from="escalator@test", timeout=5)
    return EmailActivities(app_sessionmaker, smtp)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def webhooks(app_sessionmaker: async_sessionmaker[AsyncSession]) -> WebhookActivities:
    """A 1 s timeout, disabled after 3 failures in a row: tests stay short."""
    return WebhookActivities(
        app_sessionmaker,
        base_url="http://escalator.test",
        timeout_seconds=1.0,
        disable_after=3,
        allow_private=True,  # the receivers are on 127.0.0.1
    )

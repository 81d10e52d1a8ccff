"""Activities against real Postgres and a real SMTP sink."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.email import EmailActivities
from activities.smtp import Smtp
from mailsink import MailSink


@pytest.fixture
def email(
    app_sessionmaker: async_sessionmaker[AsyncSession], mail_sink: MailSink
) -> EmailActivities:
    smtp = Smtp(host=mail_sink.host, port=mail_sink.port, mail_from="escalator@test", timeout=5)
    return EmailActivities(app_sessionmaker, smtp)

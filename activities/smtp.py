"""SMTP settings and a pool of persistent connections.

A new SMTP connection per mail costs a TCP handshake, the greeting and EHLO (and TLS, in
production) before the one MAIL/RCPT/DATA that matters; at a 09:00 peak that is most of the
cost of a mail. `SmtpPool` keeps up to `size` connections open and lends one per send, so
at most `size` sends talk to the server at once. A connection that was idle for a while is
checked with NOOP before it is trusted; one that failed in any way is closed, never reused:
the next send opens a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message

import aiosmtplib

from config import Settings

IDLE_CHECK_SECONDS = 5.0  # a server may drop an idle connection: NOOP it before reuse


@dataclass(frozen=True, kw_only=True)
class Smtp:
    host: str
    port: int
    mail_from: str
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 10.0
    smtputf8: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Smtp:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            mail_from=settings.mail_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
            smtputf8=settings.smtp_utf8,
        )


@dataclass(frozen=True)
class Attempt:
    """What became of one mail: `sent`, `failed` (a 5xx, or a message that cannot be sent:
    trying again would not help) or `retry` (a 4xx, a refused or reset connection, or no
    answer in time), with the error."""

    status: str
    error: str | None = None


def is_permanent(error: aiosmtplib.SMTPException) -> bool:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refused.code >= 500 for refused in error.recipients)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code >= 500
    return False


class SmtpPool:
    def __init__(self, smtp: Smtp, size: int) -> None:
        self.smtp = smtp
        self.size = size
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # (connection, idle since)

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpPool:
        return cls(Smtp.from_settings(settings), settings.smtp_concurrency)

    async def send(
        self, message: Message | Callable[[], Message], *, sender: str, recipients: list[str]
    ) -> None:
        """Send over a pooled connection; a callable `message` is built only once a
        connection is free for it. Raises what aiosmtplib raises; the connection it used is
        then closed, so a half-spoken session is never reused."""
        async with self.slot():
            if callable(message):
                message = message()
            await self.send_now(message, sender=sender, recipients=recipients)

    def slot(self) -> asyncio.Semaphore:
        """One of the pool's `size` turns: hold it around `send_now`."""
        return self._slots

    async def send_now(self, message: Message, *, sender: str, recipients: list[str]) -> None:
        """`send` for a caller that holds a `slot()` already."""
        client = await self._take()
        try:
            await client.send_message(message, sender=sender, recipients=recipients)
        except BaseException:
            client.close()
            raise
        self._idle.append((client, time.monotonic()))

    async def attempt(self, message: Message, address: str) -> Attempt:
        """One mail to `address`, within the SMTP timeout, for a caller that holds a
        `slot()`: its outcome, never an exception."""
        try:
            async with asyncio.timeout(self.smtp.timeout):
                await self.send_now(message, sender=self.smtp.mail_from, recipients=[address])
        except aiosmtplib.SMTPException as error:
            return Attempt(status="failed" if is_permanent(error) else "retry", error=str(error))
        except (OSError, TimeoutError) as error:  # refused, reset, or slower than its time
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            return Attempt(status="retry", error=reason)
        except Exception as error:  # this message cannot be sent (an encoding, say)
            return Attempt(
                status="failed", error=f"cannot be sent: {type(error).__name__}: {error}"
            )
        return Attempt(status="sent")

    async def _take(self) -> aiosmtplib.SMTP:
        while self._idle:
            client, since = self._idle.pop()
            if not client.is_connected:
                continue
            if time.monotonic() - since < IDLE_CHECK_SECONDS:
                return client
            try:
                await client.noop()
            except aiosmtplib.SMTPException:
                client.close()
                continue
            return client
        smtp = self.smtp
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password,
            start_tls=smtp.starttls,
            timeout=smtp.timeout,
        )
        await client.connect()
        return client

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client, _ in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()

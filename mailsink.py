"""A real SMTP sink (aiosmtpd) for the dev stack and the tests.

It accepts every message, keeps it in memory, optionally saves it as an `.eml` file in a
directory and logs one line per mail. Run it alone with `python mailsink.py --port 8025
--dir .escalator/mail`.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import socket
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = structlog.get_logger()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    received_at: float  # time.monotonic() when the sink accepted it
    received_wall: float  # time.time() of the same moment, to compare with planned instants

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._sink.delay:  # a slow server, to hold a sender inside its SMTP call
            await asyncio.sleep(self._sink.delay)
        reject = self._sink.reject_for(tuple(envelope.rcpt_tos))
        if reject is not None:
            return reject
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        mail = ReceivedMail(
            str(envelope.mail_from),
            tuple(envelope.rcpt_tos),
            message,
            time.monotonic(),
            time.time(),
        )
        self._sink.add(mail, data)
        return "250 Message accepted for delivery"


class MailSink:
    """Collects mail on a real SMTP port. Thread-safe: aiosmtpd runs in its own thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, save_dir: Path | None = None):
        self._lock = threading.Lock()
        self._mails: list[ReceivedMail] = []
        self._rejects: dict[str, str] = {}
        self.save_dir = save_dir
        self.delay = 0.0
        # aiosmtpd's start-up probe cannot follow port 0, so pick the free port here.
        self.port = port or free_port(host)
        self._controller = Controller(_Handler(self), hostname=host, port=self.port)

    @property
    def host(self) -> str:
        return str(self._controller.hostname)

    def start(self) -> MailSink:
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def reject(self, address: str, reply: str = "550 5.1.1 mailbox unavailable") -> None:
        """Answer DATA for `address` with an SMTP error, e.g. a permanent 5xx."""
        with self._lock:
            self._rejects[address.lower()] = reply

    def accept(self, address: str) -> None:
        """Lift `reject`: mail for `address` is accepted again."""
        with self._lock:
            self._rejects.pop(address.lower(), None)

    def reject_for(self, rcpt_tos: tuple[str, ...]) -> str | None:
        with self._lock:
            for rcpt in rcpt_tos:
                if rcpt.lower() in self._rejects:
                    return self._rejects[rcpt.lower()]
        return None

    def add(self, mail: ReceivedMail, raw: bytes) -> None:
        with self._lock:
            self._mails.append(mail)
            number = len(self._mails)
        if self.save_dir is not None:
            (self.save_dir / f"{number:06d}.eml").write_bytes(raw)
        log.info("mail.received", to=",".join(mail.rcpt_tos), subject=mail.subject)

    def to(self, address: str) -> list[ReceivedMail]:
        return [m for m in self.mails if address in m.rcpt_tos]

    @property
    def mails(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._mails)

    def clear(self) -> None:
        with self._lock:
            self._mails.clear()
            self._rejects.clear()

    async def wait_for(self, count: int, within: float = 10.0) -> list[ReceivedMail]:
        """Wait until at least `count` mails arrived; raise TimeoutError with what did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self.mails) < count:
            if loop.time() > deadline:
                got = [m.subject for m in self.mails]
                raise TimeoutError(f"expected {count} mails, got {len(got)}: {got}")
            await asyncio.sleep(0.05)
        return self.mails


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    sink = MailSink(args.host, args.port, args.dir).start()
    log.info("mailsink.ready", host=args.host, port=sink.port, dir=str(args.dir))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()

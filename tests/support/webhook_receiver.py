"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 (a free port, its own
thread, so any event loop and any client can reach it) that checks every request's
Standard Webhooks signature and records what it got.

    with WebhookReceiver(secrets=[secret]) as receiver:
        ... point an endpoint at receiver.url ...
        [got] = receiver.requests
        assert got.verified_with == [secret]

`status` is the answer (or `answers`, a queue consumed first, one per request), `delay`
how long it waits before answering, `headers` extra response headers (`Retry-After`).
Every secret in `secrets` is tried on its own with `Webhook(secret).verify`; a request no
secret verifies is answered 401, as a real receiver would, and recorded with
`verified_with == []`. With no secrets, nothing is verified and `status` is answered.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified_with: list[str]  # the secrets whose signature matched
    received_at: float = field(default_factory=time.monotonic)
    answered_at: float | None = None  # after `delay`: when the answer went back

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def signatures(self) -> list[str]:
        return self.headers.get("webhook-signature", "").split(" ")


class WebhookReceiver:
    def __init__(
        self, *, secrets: list[str] | None = None, status: int = 200, delay: float = 0.0
    ) -> None:
        self.secrets = list(secrets or [])
        self.status = status
        self.answers: list[int] = []
        self.delay = delay
        self.headers: dict[str, str] = {}
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def verify(self, body: bytes, headers: dict[str, str]) -> list[str]:
        verified = []
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            verified.append(secret)
        return verified

    def _receive(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str]]:
        verified = self.verify(body, headers)
        got = Received(path, headers, body, verified)
        with self._lock:
            self.requests.append(got)
            status = self.answers.pop(0) if self.answers else self.status
            extra = dict(self.headers)
        if self.secrets and not verified:
            status, extra = 401, {}
        elif self.delay:
            time.sleep(self.delay)
        got.answered_at = time.monotonic()
        return status, extra

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra = receiver._receive(self.path, headers, body)
                try:
                    self.send_response(status)
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up waiting (a timeout test)
                    pass

            def log_message(self, *_: Any) -> None:  # quiet
                pass

        return Handler

"""The outermost layer of every request: its id, its body limit, and the last word on errors.

- **Request id.** A caller's `X-Request-ID` (if it is a sane token) or a new one. It is in
  every log line of the request, in the `X-Request-ID` response header, and in every error
  body, so a user's report and the server's log meet on one string. A request about an
  item (`/v1/items/<id>/...`) also logs the item's id and its workflow's.
- **Body limit.** A body over `Settings.max_body_bytes` is a 413 before any of it is parsed,
  whether the client announced its length or streams it chunked.
- **Unexpected errors** still answer in the one error shape: 503 `database_unavailable`
  (with `Retry-After`) when Postgres cannot be reached, else 500 `internal`; the traceback
  goes to the log under the request id. Nothing here is raised on to the server, so the
  keep-alive connection survives.
"""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import REQUEST_ID, too_large_response, unexpected_error_response
from logs import bind_item, unbound_items

log = structlog.get_logger()
_CALLER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ITEM_PATH = re.compile(r"^/(?:v1/items|items)/([0-9a-fA-F-]{36})(?:/|$)")


# What every response says to a browser: no referrer leaves (links carry tokens), no type
# sniffing. The pages and their assets also get a policy that runs only this site's own
# scripts and styles, none inline, and may not be framed. The API docs (Swagger UI, Redoc)
# start themselves with an inline script, so they keep only the frame rule.
_EVERYWHERE = [(b"referrer-policy", b"no-referrer"), (b"x-content-type-options", b"nosniff")]
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_DOCS = ("/docs", "/redoc", "/static/docs/", "/openapi.json")


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    policy = "frame-ancestors 'none'" if path.startswith(_DOCS) else PAGE_POLICY
    return [*_EVERYWHERE, (b"content-security-policy", policy.encode())]


class RequestContext:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _CALLER_ID.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = False
        refused = False  # we answered 413 ourselves mid-body; the app's answer is dropped

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    *security_headers(scope["path"]),
                ]
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes and not started:
                    # A streamed body (no Content-Length) crossed the limit: answer now and
                    # tell the app the client left, so it stops reading and writes nothing.
                    await self._too_large(scope, send_with_id)
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        named = _ITEM_PATH.match(scope["path"])
        with structlog.contextvars.bound_contextvars(request_id=request_id), unbound_items():
            if named:  # every line of a request about an item names it and its workflow
                bind_item(named.group(1))
            try:
                if self._announced_too_large(headers):
                    await self._too_large(scope, send_with_id)
                    return
                await self.app(scope, limited_receive, send_with_id)
            except Exception as error:
                if refused:
                    return  # the app noticed the "disconnect"; the caller has its 413
                if started:  # a stream already under way: all that is left is to log it
                    log.exception("request.failed_mid_response", path=scope["path"])
                    return
                response = unexpected_error_response(error)
                where = {"path": scope["path"], "method": scope["method"]}
                if response.status_code == 503:  # an outage, not a bug: no traceback each time
                    log.warning("request.database_unavailable", error=repr(error), **where)
                else:
                    log.error(
                        "request.failed", status=response.status_code, exc_info=error, **where
                    )
                await response(scope, receive, send_with_id)
            finally:
                REQUEST_ID.reset(token)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await too_large_response(self.max_body_bytes)(scope, nothing, send)

    def _announced_too_large(self, headers: dict[bytes, bytes]) -> bool:
        length = headers.get(b"content-length")
        return length is not None and length.isdigit() and int(length) > self.max_body_bytes

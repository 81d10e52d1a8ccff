"""The one error shape, asserted the same way everywhere."""

from __future__ import annotations

from typing import Any

import httpx


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error body of `response`, after checking its status and its whole shape: a code,
    a message, details, and the request id that the X-Request-ID header also carries."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()["error"]
    assert set(body) == {"code", "message", "details", "request_id"}, body
    assert body["message"], body
    assert body["request_id"] == response.headers["x-request-id"]
    return body

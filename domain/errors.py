"""Domain errors carry their HTTP status and a machine code; one API handler renders them."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class AlreadyClaimed(Conflict):
    code = "already_claimed"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Invalid(DomainError):
    status = 400
    code = "invalid"


class UndeliverableAddress(Invalid):
    code = "undeliverable_address"


class IdempotencyKeyReused(DomainError):
    """Stripe's rule: a key names one request. Sent again with a different body (or by
    someone else), it is refused rather than answered with the first request's result."""

    status = 422
    code = "idempotency_key_reused"


class LinkUsed(Conflict):
    code = "link_used"


class BadLink(Invalid):
    code = "invalid_link"


class TooManyRequests(DomainError):
    status = 429
    code = "too_many_requests"

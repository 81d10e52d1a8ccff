"""One error shape everywhere: `{"error": {"code", "message", "details", "request_id"}}`.

Domain errors carry their status; payload-shape problems are 422; anything the database
rejects as a conflict is 409; a value it cannot store is 400; an unreachable database is 503
with `Retry-After`. A bug is still a 500 (in the same shape, see `api.middleware`), but bad
input never is.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException
from starlette.types import Scope

from db import database_unavailable
from domain.errors import DomainError

# Set by `api.middleware.RequestContext` for the whole of each request.
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
RETRY_AFTER_SECONDS = 5
LOCK_NOT_AVAILABLE, QUERY_CANCELED = "55P03", "57014"  # SQLSTATEs of the two timeouts


class ErrorBody(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["item 0b9e4a52-6a4f-4c1e-9a53-2f0d4f5b7c11 not found"])
    details: dict[str, Any] = {}
    request_id: str = Field(
        description="also in the X-Request-ID header and the server's log",
        examples=["7f1c2e9a4b6d4e0f8a3b5c7d9e1f2a4b"],
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(
        error=ErrorBody(
            code=code, message=message, details=details or {}, request_id=REQUEST_ID.get()
        )
    )
    return JSONResponse(jsonable_encoder(body), status_code=status_code, headers=headers)


def unavailable_response() -> JSONResponse:
    return error_response(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the database cannot be reached right now; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def too_large_response(limit: int) -> JSONResponse:
    return error_response(
        status.HTTP_413_CONTENT_TOO_LARGE,
        "too_large",
        f"the request body is larger than {limit} bytes",
        {"limit_bytes": limit},
    )


def unexpected_error_response(error: Exception) -> JSONResponse:
    """The answer to an error no handler took, in the one shape."""
    if database_unavailable(error):
        return unavailable_response()
    return error_response(
        status.HTTP_500_INTERNAL_SERVER_ERROR,
        "internal",
        "an unexpected error; it is logged under this request id",
    )


_HTTP_CODES = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
}


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    methods: set[str] = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path_regex.match(scope["path"]):
            methods |= context.methods or set()
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, error: DomainError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.details)

    @app.exception_handler(RequestValidationError)
    async def invalid_payload(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {"at": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in error.errors()
        ]
        first = problems[0] if problems else {"at": "", "problem": "invalid request"}
        return error_response(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "invalid_payload",
            f"{first['at']}: {first['problem']}",
            {"problems": problems},
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "http_error")
        response = error_response(error.status_code, code, str(error.detail))
        if error.headers:
            response.headers.update(error.headers)
        if error.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            # Starlette names only the first route that matched the path; FastAPI has one
            # route per method, so gather them all.
            response.headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return response

    @app.exception_handler(DBAPIError)
    async def database_rejected(_: Request, error: DBAPIError) -> JSONResponse:
        if database_unavailable(error):
            return unavailable_response()
        # SQLSTATE class 22 is "data exception": a value Postgres cannot store, such as a
        # NUL character in text or JSON. That is bad input, not a server fault.
        cause = getattr(error.orig, "__cause__", None) or error.orig
        sqlstate = str(getattr(cause, "sqlstate", "") or "")
        if sqlstate in (LOCK_NOT_AVAILABLE, QUERY_CANCELED):  # lock_timeout, statement_timeout
            response = error_response(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "database_busy",
                "the database did not answer in time (a lock or a statement took too long); "
                "nothing was changed, try again",
                {"sqlstate": sqlstate},
            )
            response.headers["Retry-After"] = "1"
            return response
        if sqlstate.startswith("22"):
            reason = str(getattr(cause, "message", None) or cause).splitlines()[0]
            return error_response(
                status.HTTP_400_BAD_REQUEST,
                "invalid_value",
                f"a value the database cannot store: {reason}",
                {"sqlstate": sqlstate},
            )
        raise error  # not the caller's fault: the middleware logs it and answers 500

    @app.exception_handler(IntegrityError)
    async def integrity(_: Request, error: IntegrityError) -> JSONResponse:
        if database_unavailable(error):
            return unavailable_response()
        # A constraint caught what validation did not (e.g. a concurrent duplicate).
        constraint = getattr(getattr(error.orig, "__cause__", None), "constraint_name", None)
        return error_response(
            status.HTTP_409_CONFLICT,
            "constraint_violated",
            "the change conflicts with existing data",
            {"constraint": constraint} if constraint else {},
        )

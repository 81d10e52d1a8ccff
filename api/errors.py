"""One error shape everywhere: `{"error": {"code", "message", "details"}}`.

Domain errors carry their status; payload-shape problems are 422; anything the database
rejects as a conflict is 409. A bug is still a 500, but bad input never is.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException

from domain.errors import DomainError


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_response(
    status_code: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details or {}))
    return JSONResponse(jsonable_encoder(body), status_code=status_code)


_HTTP_CODES = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
}


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
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "http_error")
        response = error_response(error.status_code, code, str(error.detail))
        if error.headers:
            response.headers.update(error.headers)
        return response

    @app.exception_handler(DBAPIError)
    async def database_rejected(_: Request, error: DBAPIError) -> JSONResponse:
        # SQLSTATE class 22 is "data exception": a value Postgres cannot store, such as a
        # NUL character in text or JSON. That is bad input, not a server fault.
        cause = getattr(error.orig, "__cause__", None) or error.orig
        sqlstate = str(getattr(cause, "sqlstate", "") or "")
        if sqlstate.startswith("22"):
            reason = str(getattr(cause, "message", None) or cause).splitlines()[0]
            return error_response(
                status.HTTP_400_BAD_REQUEST,
                "invalid_value",
                f"a value the database cannot store: {reason}",
                {"sqlstate": sqlstate},
            )
        return error_response(
            status.HTTP_500_INTERNAL_SERVER_ERROR, "internal", "the database refused the request"
        )

    @app.exception_handler(IntegrityError)
    async def integrity(_: Request, error: IntegrityError) -> JSONResponse:
        # A constraint caught what validation did not (e.g. a concurrent duplicate).
        constraint = getattr(getattr(error.orig, "__cause__", None), "constraint_name", None)
        return error_response(
            status.HTTP_409_CONFLICT,
            "constraint_violated",
            "the change conflicts with existing data",
            {"constraint": constraint} if constraint else {},
        )

"""The OpenAPI document as the contract: every operation lists every error status it can
answer with, in the one error shape.

The statuses follow from what a route is built of, read off the route itself, so a new
route is documented by construction:

| the route has | it can answer |
|---|---|
| any operation | 500 (a bug, in the error shape) |
| a bearer token (any `/v1` route) | 401; 503 while Postgres is unreachable |
| a role gate above viewer | 403 |
| a path parameter | 404 |
| parameters or a body | 400 (a value that parses but means nothing here), 422 (shape) |
| a body | 413 (over `ESCALATOR_MAX_BODY_BYTES`) |
| a body on a write | 409 (conflicts with existing data) |

Routes add their own descriptions (`responses=`) where a status means something specific.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from api.auth import RANK, Require, get_principal
from api.errors import RETRY_AFTER_SECONDS, ErrorResponse

_REF = "#/components/schemas/{model}"
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_DESCRIPTIONS = {
    "400": "A value that is well-formed but unusable here (an unknown type or user, a bad "
    "cursor, a value the database cannot store)",
    "401": "Missing, invalid or expired bearer token, or its user is no longer active",
    "403": "Your role is below what this operation needs",
    "404": "No such thing in your account",
    "409": "Conflicts with existing data or with the item's current state",
    "413": "The request body is over the size limit",
    "422": "The request does not match this schema, or an Idempotency-Key was reused",
    "500": "An unexpected error, logged under the request id",
    "503": "The database cannot be reached right now; retry after `Retry-After` seconds",
}
_ID = "7f1c2e9a4b6d4e0f8a3b5c7d9e1f2a4b"
# One example per status, each what that status really says (Swagger shows it beside it).
_EXAMPLES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "400": (
        "invalid",
        "unknown item type 'CAPX': no SLA policy defines it",
        {"field": "type"},
    ),
    "401": ("unauthenticated", "missing bearer token", {}),
    "403": ("forbidden", "requires role engineer or above", {}),
    "404": ("not_found", "item 0b9e4a52-6a4f-4c1e-9a53-2f0d4f5b7c11 not found", {}),
    "409": (
        "already_claimed",
        "item already claimed by Emil Engineer",
        {
            "claimed_by": {"id": "5d2c8f0e-1b7a-4c3e-9f6d-2a4b8c1e7d90", "name": "Emil Engineer"},
            "claimed_at": "2026-12-07T09:14:03+00:00",
        },
    ),
    "413": ("too_large", "the request body is larger than 1048576 bytes", {"limit_bytes": 1048576}),
    "422": (
        "invalid_payload",
        "body.title: String should have at least 1 character",
        {"problems": [{"at": "body.title", "problem": "String should have at least 1 character"}]},
    ),
    "500": ("internal", "an unexpected error; it is logged under this request id", {}),
    "503": (
        "database_unavailable",
        "the database cannot be reached right now; retry shortly",
        {},
    ),
}


def _error_content(status: str) -> dict[str, Any]:
    code, message, details = _EXAMPLES[status]
    example = {"error": {"code": code, "message": message, "details": details, "request_id": _ID}}
    return {"application/json": {**_ERROR["application/json"], "example": example}}


_HEADERS = {
    "401": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    "503": {
        "Retry-After": {
            "schema": {"type": "integer", "example": RETRY_AFTER_SECONDS},
            "description": "seconds",
        }
    },
}
_WRITES = {"post", "put", "patch", "delete"}


def _calls(dependant: Dependant) -> list[Any]:
    found = [dependant.call]
    for child in dependant.dependencies:
        found += _calls(child)
    return found


def error_statuses(dependant: Dependant, method: str) -> set[str]:
    calls = _calls(dependant)
    statuses = {"500"}
    gates = [c for c in calls if isinstance(c, Require)]
    if gates or get_principal in calls:
        statuses |= {"401", "503"}
    if any(RANK[g.role] > RANK["viewer"] for g in gates):
        statuses.add("403")
    params = dependant.path_params + dependant.query_params + dependant.header_params
    body = dependant.body_params
    if dependant.path_params:
        statuses.add("404")
    if params or body:
        statuses |= {"400", "422"}
    if body:
        statuses.add("413")
        if method in _WRITES:
            statuses.add("409")
    return statuses


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        error_schema = ErrorResponse.model_json_schema(ref_template=_REF)
        components.update(error_schema.pop("$defs", {}))
        components.setdefault("ErrorResponse", error_schema)
        # FastAPI wraps included routers; its route contexts give each route's full path.
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            for method in context.methods or ():
                operation = schema["paths"][context.path_format][method.lower()]
                responses = operation.setdefault("responses", {})
                for status in sorted(error_statuses(route.dependant, method.lower())):
                    entry = responses.setdefault(status, {})
                    # FastAPI's own 422 shape is not what we send.
                    entry["content"] = _error_content(status)
                    entry.setdefault("description", _DESCRIPTIONS[status])
                    if entry["description"] in ("Validation Error", "Additional Response"):
                        entry["description"] = _DESCRIPTIONS[status]
                    if status in _HEADERS:
                        entry["headers"] = _HEADERS[status]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

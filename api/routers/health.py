"""`GET /health`: 200 while the database answers; Temporal's state is reported, not required,
because the API keeps accepting items while Temporal is away."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel
from sqlalchemy import text

from api.deps import EngineDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    temporal: Literal["ok", "connecting"]


@router.get("/health", response_model=Health)
async def health(request: Request, response: Response, engine: EngineDep) -> Health:
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        database: Literal["ok", "unavailable"] = "ok"
    except Exception:  # any DB failure is "unavailable"; the status code says so
        database = "unavailable"
    temporal: Literal["ok", "connecting"] = (
        "ok" if request.app.state.temporal.client is not None else "connecting"
    )
    if database != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(
        status="ok" if database == "ok" else "degraded", database=database, temporal=temporal
    )

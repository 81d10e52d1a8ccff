"""Liveness of the worker's own dependencies."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity


class HealthActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @activity.defn
    async def ping_database(self) -> str:
        """Side effect: none (a `SELECT 1`); safe to retry."""
        async with self._engine.connect() as connection:
            version = await connection.scalar(text("SELECT version()"))
        return str(version)

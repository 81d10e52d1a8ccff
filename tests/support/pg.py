"""Throwaway Postgres databases for the suite: on DATABASE_URL's server when it is set,
else on one embedded pgserver per session."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from config import to_libpq_url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(url: str, sql: str) -> None:
    connection = await asyncpg.connect(to_libpq_url(with_database(url, "postgres")))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def create_database(server_url: str, prefix: str = "escalator_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    return with_database(server_url, name)


def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _fetch(url: str, sql: str) -> list[tuple[object, ...]]:
    connection = await asyncpg.connect(to_libpq_url(url))
    try:
        return [tuple(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


def fetch(url: str, sql: str) -> list[tuple[object, ...]]:
    """Run one query as the URL's user (the owner), from sync code."""
    return asyncio.run(_fetch(url, sql))

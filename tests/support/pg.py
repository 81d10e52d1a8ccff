"""Throwaway Postgres databases for the suite: on DATABASE_URL's server when it is set,
else on one embedded pgserver per session."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

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


class StoppablePostgres:
    """An embedded Postgres of its own that a test may stop and start again (same data,
    same socket), to see what the service does while its database is away."""

    def __init__(self, data_dir: Path) -> None:
        import pgserver  # dev-only dependency

        self._data_dir = data_dir
        self._server: Any = pgserver.get_server(data_dir, cleanup_mode=None)
        self.url = str(self._server.get_uri())

    def _pg_ctl(self, *args: str) -> None:
        commands: Any = importlib.import_module("pgserver._commands")
        commands.pg_ctl(list(args), pgdata=self._data_dir, user=self._server.system_user)

    def stop(self) -> None:
        self._pg_ctl("-w", "stop", "-m", "fast")

    def start(self) -> None:
        # As pgserver starts it (its own get_server thinks the server is still up): no TCP,
        # the same socket directory, so the URL stays valid.
        socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]
        log = str(self._data_dir / "restart.log")
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", log, "start")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

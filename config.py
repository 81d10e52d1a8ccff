"""Typed settings. One `Settings`, read from the environment (prefix `ESCALATOR_`), passed
explicitly into every factory so tests can build their own."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TASK_QUEUE = "escalator"
DEV_JWT_SECRET = "dev-only-insecure-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESCALATOR_", env_file=".env", extra="ignore")

    environment: Literal["dev", "test", "prod"] = "dev"
    state_dir: Path = Path(".escalator")

    # `DATABASE_URL` (no prefix) is the conventional name; it wins when set.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    # The app switches to this role on every connection so row-level security applies to it;
    # the migration owner (the URL's user) bypasses RLS. Empty disables the switch, for
    # deployments whose URL already logs in as a non-owner role.
    db_app_role: str = "escalator_app"
    db_pool_size: int = 10

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    task_queue: str = TASK_QUEUE

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "escalator@localhost"
    smtp_timeout_seconds: float = 10.0
    smtp_concurrency: int = 8

    jwt_secret: str = DEV_JWT_SECRET
    reconcile_every_seconds: int = 60
    sse_heartbeat_seconds: float = 25.0
    sse_buffer: int = 1000  # events a subscriber may lag behind before it is disconnected
    push_retention_days: int = 7

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if self.environment == "prod" and self.jwt_secret == DEV_JWT_SECRET:
            raise ValueError("ESCALATOR_JWT_SECRET must be set to a real secret in prod")
        return self

    @property
    def async_database_url(self) -> str:
        """The SQLAlchemy URL with the asyncpg driver, whatever scheme was given."""
        if self.database_url is None:
            raise RuntimeError("DATABASE_URL is not set (the dev stack and tests set it for you)")
        return to_asyncpg_url(self.database_url)


def to_libpq_url(url: str) -> str:
    """The plain `postgresql://` form that asyncpg itself (not SQLAlchemy) connects with."""
    return to_asyncpg_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


def to_asyncpg_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")

"""Typed settings. One `Settings`, read from the environment (prefix `ESCALATOR_`), passed
explicitly into every factory so tests can build their own."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TASK_QUEUE = "escalator"
DEV_JWT_SECRET = "dev-only-insecure-secret-change-me"
# Secrets that were ever shipped as defaults or examples: never accepted outside dev.
KNOWN_SECRETS = frozenset({DEV_JWT_SECRET, "change-me-in-compose", "change-me", "secret"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESCALATOR_", env_file=".env", extra="ignore")

    environment: Literal["dev", "test", "prod"] = "dev"
    state_dir: Path = Path(".escalator")

    # Two logins. `DATABASE_URL` (no prefix, the conventional name) is the *owner*: it runs
    # migrations and operator CLIs, and bypasses row-level security. The API and the worker
    # log in as the app role instead (`ESCALATOR_APP_DATABASE_URL`), which the migrations
    # create and which cannot bypass RLS. Unset, the app URL is DATABASE_URL with the user
    # swapped for `db_app_role` (and `db_app_password`), which suits trust or peer auth.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    app_database_url: str | None = None
    db_app_role: str = Field(default="escalator_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # Set on the app role by the migrations when given (ALTER ROLE ... PASSWORD).
    db_app_password: SecretStr | None = None
    db_pool_size: int = 10
    # The app role's waits (API and worker): a lock held longer than this (a claim behind a
    # mail in flight waits at most one SMTP timeout), or a statement slower than that, ends
    # the request in the error shape (503 database_busy) instead of hanging on.
    db_lock_timeout_seconds: float = Field(default=15.0, gt=0, le=600)
    db_statement_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    # A real cluster (temporal_connection.py): TLS with the system's roots, or this CA; mTLS
    # with a client certificate and key; an API key (Temporal Cloud), which implies TLS.
    temporal_tls: bool = False
    temporal_tls_server_ca: Path | None = None
    temporal_tls_client_cert: Path | None = None
    temporal_tls_client_key: Path | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: SecretStr | None = None
    temporal_ui_port: int = 8233
    task_queue: str = TASK_QUEUE

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Where people reach the API's pages: the base of every link in a mail (sign-in, item,
    # claim). Unset, http://<api_host>:<api_port>.
    public_url: str | None = None
    # Sign-in links asked for one address within 15 minutes, beyond which it is a 429.
    sign_in_requests_per_window: int = 5
    # Larger request bodies are a 413 before any parsing (the biggest legitimate one, a
    # handoff with a 64 KiB snapshot, fits with room to spare).
    max_body_bytes: int = 256 * 1024
    # How long readiness waits for each of Postgres and Temporal before calling it down.
    ready_timeout_seconds: float = 2.0
    # How long the API and worker wait for Postgres at start-up before giving up.
    db_startup_timeout_seconds: float = 60.0

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "escalator@localhost"
    # The longest one mail may take, connection included; a batch starts no mail it has
    # less time left for, so a slow but working server is never cut off mid-mail.
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    smtp_concurrency: int = 8
    # Whether the SMTP server offers SMTPUTF8 (RFC 6531): only then may an address's part
    # before @ be non-ASCII; without it such a user is refused (400 undeliverable_address).
    smtp_utf8: bool = False
    # Webhooks: each POST waits this long for an answer. An endpoint is disabled once it has
    # failed (5xx, timeouts, refused connections, 4xx) without a single success for
    # `webhook_disable_after_seconds` (a day) and at least `webhook_disable_after_failures`
    # times: a receiver's blip during a burst never switches an integration off.
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_disable_after_failures: int = Field(default=10, ge=1)
    webhook_disable_after_seconds: float = Field(default=86_400, ge=0)
    # Worker tuning (see the README's "Scaling the worker"): the workflow cache holds the
    # items that can fire together (a 09:00 peak replays every evicted one), the slots bound
    # concurrent workflow tasks and activities. Each send holds a DB connection across SMTP
    # and each local DB step one: activity slots (sends) + local slots (`db_pool_size`) stay
    # within the pool plus its overflow of 10.
    worker_cache_size: int = 3000
    worker_workflow_slots: int = 100
    worker_activity_slots: int = 10
    # False runs workflow code unsandboxed: cheaper activations, no guard against a
    # non-deterministic import. The replay tests run sandboxed either way.
    worker_sandbox: bool = True

    # Observability (see the README, "Watching it run"). The worker serves /metrics on this
    # port (0: none), with the Temporal SDK's worker metrics appended. With a token set, the
    # API's /metrics needs it as a bearer token. Logs are `console` or `json` lines.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    metrics_token: SecretStr | None = None
    # The API's metrics on an internal port of their own (0: off), for a scraper inside the
    # network; outside `dev` and `test` the public `/metrics` needs `metrics_token`.
    api_metrics_host: str = "127.0.0.1"
    api_metrics_port: int = Field(default=0, ge=0, le=65535)
    log_format: Literal["console", "json"] = "console"
    # Tracing is on when the standard OTLP endpoint variable is set (see tracing.py).
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    otel_service_name: str | None = Field(default=None, validation_alias="OTEL_SERVICE_NAME")
    # Spans waiting for export: the SDK's default (2,048) is 500 rungs at 4 spans each, and
    # a 09:00 peak makes more within seconds; beyond the queue, spans are dropped.
    otel_bsp_max_queue_size: int = Field(
        default=32768, ge=512, validation_alias="OTEL_BSP_MAX_QUEUE_SIZE"
    )
    # Webhooks to loopback or private addresses (domain/destinations.py): refused in every
    # environment unless allowed here (development and tests post to 127.0.0.1).
    webhook_allow_private: bool = False

    jwt_secret: str = DEV_JWT_SECRET
    reconcile_every_seconds: int = 60
    sse_heartbeat_seconds: float = 25.0
    sse_buffer: int = 1000  # events a subscriber may lag behind before it is disconnected
    push_retention_days: int = 7

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        """Outside development and tests, a secret anyone could know (this file's, the
        compose file's, a placeholder) or could guess (short) would let them mint tokens
        for any user: the API and the worker refuse to start with one."""
        if self.environment in ("dev", "test"):
            return self
        secret = self.jwt_secret
        if secret in KNOWN_SECRETS or "change-me" in secret.lower() or len(secret) < 32:
            raise ValueError(
                "ESCALATOR_JWT_SECRET must be a real secret outside dev: at least 32 "
                "random characters, not a placeholder (e.g. `openssl rand -hex 32`)"
            )
        return self

    @property
    def metrics_open(self) -> bool:
        """Whether the public `/metrics` answers without a token."""
        return self.metrics_token is None and self.environment in ("dev", "test")

    @property
    def webhooks_reach_private(self) -> bool:
        return self.webhook_allow_private

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def async_database_url(self) -> str:
        """The owner's SQLAlchemy URL with the asyncpg driver, whatever scheme was given."""
        if self.database_url is None:
            raise RuntimeError(
                "DATABASE_URL is not set: it is the migration owner's URL "
                "(`make run` sets it for its own children; see README, Databases)"
            )
        return to_asyncpg_url(self.database_url)

    @property
    def async_app_database_url(self) -> str:
        """The app role's SQLAlchemy URL: the API's and the worker's only login."""
        if self.app_database_url is not None:
            return to_asyncpg_url(self.app_database_url)
        if self.database_url is None:
            raise RuntimeError(
                "neither ESCALATOR_APP_DATABASE_URL nor DATABASE_URL is set (see README, Databases)"
            )
        password = self.db_app_password.get_secret_value() if self.db_app_password else None
        return to_asyncpg_url(with_login(self.database_url, self.db_app_role, password))


def to_libpq_url(url: str) -> str:
    """The plain `postgresql://` form that asyncpg itself (not SQLAlchemy) connects with."""
    return to_asyncpg_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


def with_login(url: str, user: str, password: str | None) -> str:
    """The same server and database, logged in as another user."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    login = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit(parts._replace(netloc=f"{login}@{host}"))


def to_asyncpg_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")

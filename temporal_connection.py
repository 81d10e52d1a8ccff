"""How the API and the worker reach Temporal: the dev server in plain gRPC, or a real
cluster with TLS (a server CA, and a client certificate and key for mTLS) and/or an API key
(Temporal Cloud). `ESCALATOR_TEMPORAL_*` settings; see the README, "Pointing it at real
infrastructure"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.service import TLSConfig

from config import Settings


class TemporalConfigError(ValueError):
    """Settings that cannot make a connection; the message says which and why."""


@dataclass(frozen=True)
class Connection:
    target: str
    namespace: str
    tls: TLSConfig | bool
    api_key: str | None

    def options(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "tls": self.tls, "api_key": self.api_key}

    async def connect(self, **extra: Any) -> Client:
        return await Client.connect(self.target, **self.options(), **extra)


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise TemporalConfigError(f"{what} {path} cannot be read: {error.strerror}") from error


def connection(settings: Settings) -> Connection:
    """The client options the settings ask for. An API key implies TLS (Temporal Cloud
    refuses it in the clear); a client certificate needs its key and the other way round."""
    cert = _read(settings.temporal_tls_client_cert, "ESCALATOR_TEMPORAL_TLS_CLIENT_CERT")
    key = _read(settings.temporal_tls_client_key, "ESCALATOR_TEMPORAL_TLS_CLIENT_KEY")
    ca = _read(settings.temporal_tls_server_ca, "ESCALATOR_TEMPORAL_TLS_SERVER_CA")
    if (cert is None) != (key is None):
        raise TemporalConfigError(
            "ESCALATOR_TEMPORAL_TLS_CLIENT_CERT and ESCALATOR_TEMPORAL_TLS_CLIENT_KEY go "
            "together: set both for mTLS, or neither"
        )
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    wants_tls = settings.temporal_tls or any(v is not None for v in (cert, ca, api_key))
    tls: TLSConfig | bool = (
        TLSConfig(
            server_root_ca_cert=ca,
            client_cert=cert,
            client_private_key=key,
            domain=settings.temporal_tls_server_name,
        )
        if wants_tls
        else False
    )
    return Connection(settings.temporal_address, settings.temporal_namespace, tls, api_key)

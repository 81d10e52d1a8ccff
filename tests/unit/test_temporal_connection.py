"""The Temporal client options the settings build: plain gRPC for the dev server, TLS with a
CA and mTLS with a client certificate for a self-hosted cluster, an API key (and so TLS) for
Temporal Cloud; settings that cannot work are refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.service import TLSConfig

from config import Settings
from temporal_connection import TemporalConfigError, connection


def test_the_dev_server_is_plain_grpc() -> None:
    made = connection(Settings(temporal_address="127.0.0.1:7233"))
    assert (made.target, made.namespace, made.tls, made.api_key) == (
        "127.0.0.1:7233",
        "default",
        False,
        None,
    )


def test_an_api_key_implies_tls_with_the_system_roots() -> None:
    made = connection(
        Settings(
            temporal_address="acme.a1b2c.tmprl.cloud:7233",
            temporal_namespace="acme.a1b2c",
            temporal_api_key=SecretStr("key-123"),
        )
    )
    assert made.api_key == "key-123"
    assert made.tls == TLSConfig()
    assert made.options() == {"namespace": "acme.a1b2c", "tls": TLSConfig(), "api_key": "key-123"}


def test_mtls_reads_the_ca_certificate_and_key(tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for name, path in files.items():
        path.write_bytes(f"-----{name}-----".encode())
    made = connection(
        Settings(
            temporal_tls_server_ca=files["ca"],
            temporal_tls_client_cert=files["cert"],
            temporal_tls_client_key=files["key"],
            temporal_tls_server_name="temporal.internal",
        )
    )
    assert made.tls == TLSConfig(
        server_root_ca_cert=b"-----ca-----",
        client_cert=b"-----cert-----",
        client_private_key=b"-----key-----",
        domain="temporal.internal",
    )


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(b"cert")
    with pytest.raises(TemporalConfigError, match=r"CLIENT_CERT and .*CLIENT_KEY go together"):
        connection(Settings(temporal_tls_client_cert=cert))


def test_an_unreadable_file_names_its_setting(tmp_path: Path) -> None:
    with pytest.raises(TemporalConfigError, match=r"ESCALATOR_TEMPORAL_TLS_SERVER_CA .* cannot"):
        connection(Settings(temporal_tls_server_ca=tmp_path / "missing.pem"))


def test_the_environment_spells_them_as_the_readme_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESCALATOR_TEMPORAL_TLS", "true")
    monkeypatch.setenv("ESCALATOR_TEMPORAL_API_KEY", "k")
    monkeypatch.setenv("ESCALATOR_TEMPORAL_NAMESPACE", "prod.acme")
    made = connection(Settings())
    assert (made.namespace, made.api_key, made.tls) == ("prod.acme", "k", TLSConfig())

"""Webhook destinations: a host that is, or resolves to, a non-public address is refused
(server-side request forgery into escalator's own network)."""

from __future__ import annotations

import pytest

from domain.destinations import PrivateDestination, refuse_private


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5432/",
        "http://localhost:7233/",  # /etc/hosts, no DNS needed
        "http://10.1.2.3/hook",
        "http://172.16.0.9/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://100.64.0.1/hook",  # shared address space
        "http://0.0.0.0:8000/",
        "http://[::1]:8000/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
        "http://[fd00::1]/",
        "http://224.0.0.1/",
    ],
)
async def test_private_and_local_destinations_are_refused(url: str) -> None:
    with pytest.raises(PrivateDestination) as refused:
        await refuse_private(url)
    assert "private or local address" in refused.value.message
    assert refused.value.details == {"field": "url"}


@pytest.mark.parametrize("url", ["https://8.8.8.8/hook", "http://[2606:4700:4700::1111]/"])
async def test_public_addresses_pass(url: str) -> None:
    await refuse_private(url)

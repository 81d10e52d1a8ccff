"""Where a webhook may go: public hosts only, unless the operator allows private ones.

A webhook URL is chosen by an account's admin, and the worker POSTs to it from inside
escalator's own network: without a guard, any admin could make the worker call Postgres'
neighbours, the Temporal frontend or a cloud metadata address (server-side request
forgery). So a host that is, or resolves to, a loopback, private, link-local, shared,
multicast or reserved address is refused, when the endpoint is saved (a 400 naming the
address) and again before every POST (DNS may have changed since). Development and tests
post to receivers on 127.0.0.1: `ESCALATOR_WEBHOOK_ALLOW_PRIVATE` (default: allowed outside
`prod`) lets them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from domain.errors import Invalid

RESOLVE_TIMEOUT_SECONDS = 2.0


class PrivateDestination(Invalid):
    code = "private_destination"


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def addresses(host: str, port: int) -> list[str]:
    """The host's addresses: itself if it is one, else what DNS says (bounded)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError) as error:
        raise Invalid(f"url's host {host} does not resolve: {error}", field="url") from error
    return sorted({str(info[4][0]) for info in found})


async def refuse_private(url: str) -> None:
    """`PrivateDestination` if the URL's host is, or resolves to, a non-public address."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for address in await addresses(host, port):
        if _is_private(address):
            raise PrivateDestination(
                f"url's host {host} is {address}, a private or local address: webhooks go "
                "to public hosts only (an operator may allow private ones with "
                "ESCALATOR_WEBHOOK_ALLOW_PRIVATE)",
                field="url",
            )

"""Where a webhook may go: public hosts only, unless the operator allows private ones.

A webhook URL is chosen by an account's admin, and the worker POSTs to it from inside
escalator's own network: without a guard, any admin could make the worker call Postgres'
neighbours, the Temporal frontend or a cloud metadata address (server-side request
forgery). So a host that is, or resolves to, a loopback, private, link-local, shared,
multicast or reserved address is refused, when the endpoint is saved (a 400 naming the
address) and again before every POST. One rule classifies every address, IPv6 forms that
embed an IPv4 address included (mapped, compatible, NAT64, 6to4, Teredo). Before a POST
the host is resolved once (`pin`) and the worker connects to exactly the address that was
checked, keeping the name for TLS and the `Host` header: a name that answers a public
address first and 127.0.0.1 next (DNS rebinding) gains nothing. Development and tests post
to receivers on 127.0.0.1 with `ESCALATOR_WEBHOOK_ALLOW_PRIVATE=true`; it is off by default
in every environment.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from domain.errors import Invalid

RESOLVE_TIMEOUT_SECONDS = 2.0


class PrivateDestination(Invalid):
    code = "private_destination"


# NAT64's well-known and local-use prefixes: the last 32 bits are an IPv4 address.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: mapped (::ffff:a.b.c.d), compatible
    (::a.b.c.d), NAT64, 6to4 (2002::/16) and Teredo (2001::/32, server and client)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if int(ip) >> 32 == 0 or any(ip in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def is_public(address: str) -> bool:
    """The one rule: the address, and every IPv4 address it embeds, is globally routable
    unicast (not loopback, private, link-local, shared, multicast, reserved or
    unspecified)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        candidates += embedded_ipv4(ip)
    return all(c.is_global and not c.is_multicast for c in candidates)


def _is_private(address: str) -> bool:
    return not is_public(address)


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


@dataclass(frozen=True)
class Pinned:
    """A URL's host as checked: connect to `address`, speak to `host` (TLS, `Host`)."""

    host: str
    port: int
    address: str


async def pin(url: str) -> Pinned:
    """The URL's host resolved once, every address it has checked: the one to connect
    to, or `PrivateDestination` if any is not public."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    found = await addresses(host, port)
    for address in found:
        if _is_private(address):
            raise PrivateDestination(
                f"url's host {host} is {address}, a private or local address: webhooks go "
                "to public hosts only (an operator may allow private ones with "
                "ESCALATOR_WEBHOOK_ALLOW_PRIVATE)",
                field="url",
            )
    if not found:
        raise Invalid(f"url's host {host} has no address", field="url")
    return Pinned(host=host, port=port, address=found[0])


async def refuse_private(url: str) -> None:
    """`PrivateDestination` if the URL's host is, or resolves to, a non-public address."""
    await pin(url)

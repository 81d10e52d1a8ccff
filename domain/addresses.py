"""Whether a mail address can be delivered over SMTP as escalator speaks it.

Without the server's SMTPUTF8 extension (RFC 6531), an address travels as ASCII: the local
part must be ASCII, and a domain of other letters goes as IDNA ("bücher.de" becomes
"xn--bcher-kva.de"). `for_smtp` returns that form, or raises `Undeliverable` with the reason,
so a user whose address cannot be sent to is refused when created or changed, and a mail
to one that slipped through fails for that recipient alone.
"""

from __future__ import annotations


class Undeliverable(ValueError):
    """The address cannot be sent to; the message says why."""


def for_smtp(address: str, *, smtputf8: bool = False) -> str:
    """The address as it goes on the wire (its domain IDNA-encoded unless `smtputf8`)."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise Undeliverable(f"{address!r} is not an address (local@domain)")
    if smtputf8:
        return address
    if not local.isascii():
        raise Undeliverable(
            f"the part before @ of {address!r} is not ASCII, and the mail server is not "
            "configured for SMTPUTF8 (ESCALATOR_SMTP_UTF8)"
        )
    try:
        wire = domain.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise Undeliverable(f"the domain of {address!r} is not a valid IDNA name") from error
    return f"{local}@{wire}"

"""The normal form of a list value, per list type: what is stored and what a lookup compares.
Phones and e-mail addresses are hashed here, so neither is ever stored; a value that is already
a SHA-256 (64 hex digits) is taken as the hash."""

from __future__ import annotations

import hashlib
import ipaddress
import re

from paymux.risk.models import ListType

MAX_VALUE = 128
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_REGION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
_PHONE = re.compile(r"^\+?[0-9]{5,20}$")


class ValueInvalid(ValueError):
    """A value that is not of its list's type (the message says why)."""


def normal(kind: ListType, value: str) -> tuple[str, bool]:
    """The stored form of ``value`` in a list of ``kind``, and whether it is an IP network."""
    text = value.strip()
    if not text:
        raise ValueInvalid("the value is empty")
    if kind is ListType.ip:
        return _ip(text)
    if kind in (ListType.email_hash, ListType.phone_hash):
        return _hashed(kind, text), False
    if kind is ListType.region:
        region = text.upper()
        if not _REGION.match(region):
            raise ValueInvalid(f"not an ISO 3166 region code (CN, CN-44): {text[:40]!r}")
        return region, False
    if len(text) > MAX_VALUE:
        raise ValueInvalid(f"longer than {MAX_VALUE} characters")
    if any(ord(c) < 32 for c in text):
        raise ValueInvalid("control characters are not allowed")
    return text, False


def _ip(text: str) -> tuple[str, bool]:
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            if network.num_addresses == 1:
                return str(network.network_address), False
            return str(network), True
        return str(ipaddress.ip_address(text)), False
    except ValueError:
        raise ValueInvalid(f"not an IP address or network: {text[:60]!r}") from None


def _hashed(kind: ListType, text: str) -> str:
    lowered = text.lower()
    if _HEX64.match(lowered):
        return lowered
    if kind is ListType.email_hash:
        if "@" not in lowered or len(lowered) > 254:
            raise ValueInvalid("not an e-mail address (nor its SHA-256)")
        return hashlib.sha256(lowered.encode()).hexdigest()
    digits = re.sub(r"[\s()\-.]", "", text)
    if not _PHONE.match(digits):
        raise ValueInvalid("not a phone number (nor its SHA-256)")
    return hashlib.sha256(digits.encode()).hexdigest()


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def lookup_forms(kind: ListType, value: str) -> tuple[str, Address | None]:
    """What a lookup of ``value`` compares: its normal form, and for an IP the address (to be
    tested against the list's networks). Raises ValueInvalid like :func:`normal`."""
    form, network = normal(kind, value)
    if kind is not ListType.ip:
        return form, None
    if network:
        raise ValueInvalid("look up an address, not a network")
    return form, ipaddress.ip_address(form)

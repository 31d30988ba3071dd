"""Prefixed, opaque, creation-ordered identifiers (``pay_…``, ``att_…``, ``evt_…``).

The body is a 48-bit millisecond timestamp followed by 80 random bits in Crockford base32
(lower case), so ids sort by creation time: cursor pagination can order by id alone.
"""

from __future__ import annotations

import secrets

from paymux.kit import clock

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A new id such as ``pay_01jd3x…`` (prefix + 26 characters)."""
    millis = int(clock.now().timestamp() * 1000)
    return f"{prefix}_{_b32(millis, 10)}{_b32(secrets.randbits(80), 16)}"


def token(prefix: str, nbytes: int = 24) -> str:
    """A random secret token such as ``sk_test_…``."""
    return f"{prefix}{secrets.token_urlsafe(nbytes)}"

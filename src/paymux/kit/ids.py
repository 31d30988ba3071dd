"""Prefixed, opaque, creation-ordered identifiers (``pay_…``, ``att_…``, ``evt_…``).

The body is a 48-bit millisecond timestamp followed by 80 random bits in Crockford base32
(lower case), so ids sort by creation time: cursor pagination can order by id alone.
"""

from __future__ import annotations

import base64
import os
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


_RFC_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def new_ids(prefix: str, n: int) -> list[str]:
    """``n`` ids in :func:`new_id`'s format (same millisecond, 80 random bits each), made in
    one go: a ledger batch needs three per transfer."""
    head = f"{prefix}_{_b32(int(clock.now().timestamp() * 1000), 10)}"
    # 10 random bytes are exactly 16 base32 digits: the same digits _b32 would make of them.
    body = base64.b32encode(os.urandom(10 * n)).translate(_RFC_TO_CROCKFORD).decode()
    return [head + body[i : i + 16] for i in range(0, 16 * n, 16)]


def token(prefix: str, nbytes: int = 24) -> str:
    """A random secret token such as ``sk_test_…``."""
    return f"{prefix}{secrets.token_urlsafe(nbytes)}"

"""Envelope encryption of secrets at rest, and hashing of API keys.

Each secret is encrypted with its own random data key (AES-256-GCM); the data key is wrapped by
the master key (AES-256-GCM). The stored token is ``v1.<wrapped key>.<nonce>.<ciphertext>`` in
URL-safe base64, so a master-key rotation only re-wraps data keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class DecryptionError(Exception):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Vault:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("master key must be 32 bytes")
        self._master = AESGCM(master_key)

    def encrypt(self, plaintext: bytes, *, context: str = "") -> str:
        data_key = AESGCM.generate_key(bit_length=256)
        key_nonce, nonce = os.urandom(12), os.urandom(12)
        wrapped = key_nonce + self._master.encrypt(key_nonce, data_key, b"dek")
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, context.encode())
        return ".".join(("v1", _b64(wrapped), _b64(nonce), _b64(ciphertext)))

    def decrypt(self, token: str, *, context: str = "") -> bytes:
        try:
            version, wrapped_b64, nonce_b64, ct_b64 = token.split(".")
            if version != "v1":
                raise DecryptionError(f"unknown envelope version {version!r}")
            wrapped = _unb64(wrapped_b64)
            data_key = self._master.decrypt(wrapped[:12], wrapped[12:], b"dek")
            return AESGCM(data_key).decrypt(_unb64(nonce_b64), _unb64(ct_b64), context.encode())
        except (ValueError, InvalidTag) as exc:
            raise DecryptionError("secret could not be decrypted") from exc

    def encrypt_json(self, value: Any, *, context: str = "") -> str:
        return self.encrypt(json.dumps(value, sort_keys=True).encode(), context=context)

    def decrypt_json(self, token: str, *, context: str = "") -> Any:
        return json.loads(self.decrypt(token, context=context))


def hash_api_key(key: str) -> str:
    """API keys carry 192 random bits, so a plain SHA-256 is a safe, fast lookup hash."""
    return hashlib.sha256(key.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())

"""API key material: `ee_` + 8 hex characters of lookup prefix + 40 hex characters of secret.

Keys are 192 random bits, so a salted SHA-256 is enough at rest (a slow hash defends weak
passwords, which these are not) and keeps verification cheap on every request. The stored prefix
finds the row; the hash is compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_PATTERN = re.compile(r"^ee_[0-9a-f]{48}$")
PREFIX_LEN = len("ee_") + 8


def new_key() -> str:
    return "ee_" + secrets.token_hex(24)


def prefix_of(plain: str) -> str:
    return plain[:PREFIX_LEN]


def new_salt() -> str:
    return secrets.token_hex(16)


def hash_key(plain: str, salt: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + plain.encode()).hexdigest()


def matches(plain: str, salt: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_key(plain, salt), key_hash)


def well_formed(plain: str) -> bool:
    return bool(KEY_PATTERN.match(plain))

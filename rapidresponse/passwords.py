"""Staff passwords: argon2id, with parameters that argon2-cffi keeps current."""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2id with argon2-cffi's defaults: RFC 9106's low-memory profile (3 passes, 64 MiB).
PRODUCTION_HASHER = PasswordHasher()
_hasher = PRODUCTION_HASHER  # the test suite swaps in a cheap one (tests/conftest.py)

MIN_PASSWORD_LENGTH = 12


class WeakPassword(ValueError):
    """The password is too short to protect a dispatcher account."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A random password that survives being read aloud over a phone (no look-alikes)."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    groups = ["".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4)]
    return "-".join(groups)


@functools.cache
def _decoy_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def spend_as_long_as_a_check(password: str) -> None:
    """Verify against a hash nobody has, so that an unknown email takes as long to refuse
    as a wrong password and the login form does not reveal who has an account."""
    verify_password(_decoy_hash(), password)

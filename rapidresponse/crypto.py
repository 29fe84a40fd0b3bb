"""Field encryption and blind indexes for phone numbers and other stored secrets.

A seized database file must not reveal who subscribes or who responds. Values are
sealed with AES-256-GCM under the newest key of DATA_KEYS; older keys still open what
they sealed, so keys can be rotated without a flag day. Lookups ("is this number a
subscriber?") use a keyed HMAC under a separate INDEX_KEY, so the index alone gives an
attacker nothing to brute-force offline without that key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = b"\x01"


class Purpose:
    """What a sealed value is. It is bound into the ciphertext (as associated data), so a
    value sealed for one column cannot be pasted into another and opened there."""

    PHONE_INDEX = "phone"  # one blind index per number, shared by every role that looks it up
    SUBSCRIBER_PHONE = "subscriber.phone"
    RESPONDER_PHONE = "responder.phone"
    OUTBOX_TO = "outbox.to"
    OUTBOX_BODY = "outbox.body"
    REPORT_TEXT = "report.text"
    DISPATCH_NOTE = "dispatch.note"
    INCIDENT_COMMENT = "incident.comment"
    STAFF_TOTP = "staff.totp"
    LOGIN_LIMIT = "login.limit"  # rate-limit keys for sign-in attempts (email, address)
    LOCATION = "location"  # an incident's or a report's coordinates, about 100 m
    ALERT_TEXTS = "alert.texts"  # an incident's alert texts, as JSON (language -> text)
    SPOOLED = "spool.message"  # an inbound text kept on disk while the database was down
    PROVIDER_SID = "provider.sid"  # a message id waiting to be deleted at the provider
    SEALED_INTAKE = "intake.sealed"  # what arrived while the deployment was sealed


KEY_ID_BYTES = 4
NONCE_BYTES = 12


class DecryptionError(ValueError):
    """A sealed value could not be opened: unknown key, or tampered with."""


def key_id_of(key: bytes) -> bytes:
    """The short id a sealed value carries to name its key (not enough to guess the key)."""
    return hmac.new(key, b"rapidresponse key id", hashlib.sha256).digest()[:KEY_ID_BYTES]


class FieldCipher:
    """Seals and opens short strings. The purpose string binds a ciphertext to its column.

    Args:
        keys: 32-byte keys, newest first. The first seals; every one can open.

    Raises:
        ValueError: no keys, or a key that is not 32 bytes.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("keys: at least one key is needed")
        if any(len(key) != 32 for key in keys):
            raise ValueError("keys: every key must be 32 bytes")
        self._sealer = AESGCM(keys[0])
        self._sealer_id = key_id_of(keys[0])
        self._openers = {key_id_of(key): AESGCM(key) for key in keys}

    def encrypt(self, plaintext: str, purpose: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._sealer.encrypt(nonce, plaintext.encode("utf-8"), purpose.encode("ascii"))
        return FORMAT_VERSION + self._sealer_id + nonce + sealed

    def decrypt(self, token: bytes, purpose: str) -> str:
        version, key_id = token[:1], token[1 : 1 + KEY_ID_BYTES]
        nonce = token[1 + KEY_ID_BYTES : 1 + KEY_ID_BYTES + NONCE_BYTES]
        opener = self._openers.get(key_id)
        if version != FORMAT_VERSION or opener is None:
            raise DecryptionError("sealed with an unknown key or format")
        try:
            plain = opener.decrypt(
                nonce, token[1 + KEY_ID_BYTES + NONCE_BYTES :], purpose.encode("ascii")
            )
        except InvalidTag:
            raise DecryptionError("tampered with, or sealed for another purpose") from None
        return plain.decode("utf-8")

    def needs_rotation(self, token: bytes) -> bool:
        """True when the value was sealed with an older key than the newest."""
        return token[1 : 1 + KEY_ID_BYTES] != self._sealer_id


class BlindIndex:
    """A keyed, deterministic digest for equality lookups on encrypted columns."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("key: the index key must be 32 bytes")
        self._key = key

    def digest(self, value: str, purpose: str) -> str:
        message = purpose.encode("ascii") + b"\x00" + value.encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

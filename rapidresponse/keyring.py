"""The keyring, kept on disk only wrapped: a seized or copied server yields nothing readable.

Every key that opens stored data (DATA_KEYS, INDEX_KEY, SECRET_KEY, the key that wraps
the shred keys, and the private half of the intake key) is one ``Keyring``. On disk it
exists only sealed under a *wrap key* that is never stored anywhere:

- ``shares``: the wrap key comes from a random secret split into n SLIP-39 recovery
  phrases (Shamir's scheme, by the ``shamir-mnemonic`` library), any k of which rebuild
  it. Fewer than k reveal nothing about it. Each phrase goes to a different person.
- ``passphrase``: the wrap key is derived from a long passphrase by argon2id with a
  memory cost that makes guessing it from a disk copy slow.

The file's header (how to unlock, the keyring's fingerprint, the intake's public key) is
bound to the sealed keyring as associated data, so none of it can be altered unnoticed.
The fingerprint lets a process that receives a keyring from another (``dispatch.keyring``)
check that it is this deployment's, not one an attacker made.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import shamir_mnemonic
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rapidresponse.private_dirs import fsync_folder, private_directory

FORMAT = "rapidresponse-keyring"
VERSION = 1
KEY_BYTES = 32
SHARE_SECRET_BYTES = 16  # 20 words per SLIP-39 phrase; stretched to 32 bytes by HKDF
NONCE_BYTES = 12
MAX_SHARES = 16  # SLIP-39's limit per group
MIN_PASSPHRASE_LENGTH = 20  # four or five ordinary words


@dataclass(frozen=True)
class PassphraseCost:
    """argon2id's cost for a passphrase: RFC 9106's first recommendation (2 GiB) is too
    much for a small server, so 256 MiB and 4 passes, about a second here."""

    memory_kib: int = 262_144
    time_cost: int = 4
    parallelism: int = 2


class KeyringError(ValueError):
    """The keyring file is missing, malformed, or does not open with what was given. The
    message says what to do and never holds a share or a passphrase."""


@dataclass(frozen=True)
class Keyring:
    """Every key of a deployment, in memory only."""

    secret_key: str
    data_keys: tuple[bytes, ...]
    index_key: bytes
    shred_wrap_key: bytes  # seals each shred key file (rapidresponse.shredding)
    intake_key: bytes  # X25519 private key: opens what was received while sealed

    def __repr__(self) -> str:
        return f"Keyring(fingerprint={self.fingerprint()[:12]}…)"

    @classmethod
    def generate(
        cls, secret_key: str | None = None, data_keys: Sequence[bytes] = (), index_key: bytes = b""
    ) -> Keyring:
        """Fresh keys; existing ones (a deployment moving its keys into a keyring) are kept."""
        return cls(
            secret_key=secret_key or secrets.token_urlsafe(48),
            data_keys=tuple(data_keys) or (os.urandom(KEY_BYTES),),
            index_key=index_key or os.urandom(KEY_BYTES),
            shred_wrap_key=os.urandom(KEY_BYTES),
            intake_key=X25519PrivateKey.generate().private_bytes_raw(),
        )

    def to_bytes(self) -> bytes:
        """A canonical form: the same keyring always gives the same bytes."""
        fields = {
            "secret_key": self.secret_key,
            "data_keys": [_b64(key) for key in self.data_keys],
            "index_key": _b64(self.index_key),
            "shred_wrap_key": _b64(self.shred_wrap_key),
            "intake_key": _b64(self.intake_key),
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Keyring:
        try:
            fields = json.loads(raw)
            keyring = cls(
                secret_key=str(fields["secret_key"]),
                data_keys=tuple(_unb64(key) for key in fields["data_keys"]),
                index_key=_unb64(fields["index_key"]),
                shred_wrap_key=_unb64(fields["shred_wrap_key"]),
                intake_key=_unb64(fields["intake_key"]),
            )
        except (ValueError, KeyError, TypeError):
            raise KeyringError("not a keyring") from None
        keys = (*keyring.data_keys, keyring.index_key, keyring.shred_wrap_key, keyring.intake_key)
        if not keyring.data_keys or any(len(key) != KEY_BYTES for key in keys):
            raise KeyringError("not a keyring: a key has the wrong length")
        return keyring

    def fingerprint(self) -> str:
        """Names this keyring without revealing it (its keys are random, 256 bits)."""
        return hashlib.sha256(b"rapidresponse keyring\x00" + self.to_bytes()).hexdigest()

    def intake_public(self) -> bytes:
        return X25519PrivateKey.from_private_bytes(self.intake_key).public_key().public_bytes_raw()


@dataclass(frozen=True)
class WrappedKeyring:
    """The keyring as stored: sealed, with how to unlock it."""

    scheme: str  # "shares" or "passphrase"
    threshold: int  # shares needed (1 for a passphrase)
    shares: int  # shares made (1 for a passphrase)
    fingerprint: str
    intake_public: bytes
    sealed: bytes
    salt: bytes = b""
    cost: PassphraseCost | None = None

    def header(self) -> bytes:
        """What the sealed part is bound to: changing any of it makes unsealing fail."""
        fields: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "scheme": self.scheme,
            "threshold": self.threshold,
            "shares": self.shares,
            "fingerprint": self.fingerprint,
            "intake_public": _b64(self.intake_public),
        }
        if self.scheme == "passphrase" and self.cost is not None:
            fields |= {
                "salt": _b64(self.salt),
                "memory_kib": self.cost.memory_kib,
                "time_cost": self.cost.time_cost,
                "parallelism": self.cost.parallelism,
            }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> str:
        document = json.loads(self.header())
        document["sealed"] = _b64(self.sealed)
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> WrappedKeyring:
        try:
            fields = json.loads(text)
            if fields.get("format") != FORMAT or fields.get("version") != VERSION:
                raise KeyringError("not a rapidresponse keyring file (or a newer version)")
            scheme = fields["scheme"]
            if scheme not in ("shares", "passphrase"):
                raise KeyringError(f"unknown unlock scheme {scheme!r}")
            cost = None
            if scheme == "passphrase":
                cost = PassphraseCost(
                    int(fields["memory_kib"]), int(fields["time_cost"]), int(fields["parallelism"])
                )
            return cls(
                scheme=scheme,
                threshold=int(fields["threshold"]),
                shares=int(fields["shares"]),
                fingerprint=str(fields["fingerprint"]),
                intake_public=_unb64(fields["intake_public"]),
                sealed=_unb64(fields["sealed"]),
                salt=_unb64(fields.get("salt", "")),
                cost=cost,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, KeyringError):
                raise
            raise KeyringError("the keyring file is damaged (not the expected JSON)") from None

    def unwrap(self, wrap_key: bytes) -> Keyring:
        nonce, body = self.sealed[:NONCE_BYTES], self.sealed[NONCE_BYTES:]
        try:
            raw = AESGCM(wrap_key).decrypt(nonce, body, self.header())
        except ValueError:  # a nonce cut short: the file was truncated or edited
            raise KeyringError(
                "the keyring file is damaged (its sealed part is cut short)"
            ) from None
        except InvalidTag:
            raise KeyringError(_wrong_secret(self.scheme)) from None
        keyring = Keyring.from_bytes(raw)
        if keyring.fingerprint() != self.fingerprint:
            raise KeyringError("the keyring inside does not match its file's fingerprint")
        return keyring


@dataclass(frozen=True)
class Shared:
    """A keyring just split: the file to store, and the phrases to hand out (never stored)."""

    wrapped: WrappedKeyring
    phrases: list[str] = field(repr=False)


def split_into_shares(keyring: Keyring, threshold: int, shares: int) -> Shared:
    """Wrap ``keyring`` so that any ``threshold`` of ``shares`` recovery phrases open it."""
    if not 1 <= threshold <= shares <= MAX_SHARES:
        raise KeyringError(f"need 1 <= threshold <= shares <= {MAX_SHARES}")
    if threshold == 1 and shares > 1:
        # SLIP-39 then hands every holder the same phrase; say so instead of pretending.
        raise KeyringError("a threshold of 1 gives everyone the same phrase: use 1 of 1")
    secret = os.urandom(SHARE_SECRET_BYTES)
    groups = shamir_mnemonic.generate_mnemonics(1, [(threshold, shares)], secret)
    wrapped = _wrap(keyring, _stretch(secret), "shares", threshold, shares)
    return Shared(wrapped=wrapped, phrases=list(groups[0]))


def wrap_with_passphrase(
    keyring: Keyring, passphrase: str, cost: PassphraseCost | None = None
) -> WrappedKeyring:
    if len(passphrase.strip()) < MIN_PASSPHRASE_LENGTH:
        raise KeyringError(
            f"the passphrase must be at least {MIN_PASSPHRASE_LENGTH} characters "
            "(four or five words nobody would guess)"
        )
    cost = cost or PassphraseCost()
    salt = os.urandom(16)
    return _wrap(keyring, _derive(passphrase, salt, cost), "passphrase", 1, 1, salt=salt, cost=cost)


def unwrap_with_shares(wrapped: WrappedKeyring, phrases: Iterable[str]) -> Keyring:
    """The keyring, from at least ``threshold`` distinct phrases."""
    if wrapped.scheme != "shares":
        raise KeyringError("this keyring opens with a passphrase, not with shares")
    given = sorted({" ".join(phrase.lower().split()) for phrase in phrases if phrase.strip()})
    for phrase in given:
        _check_phrase(phrase)
    if len(given) < wrapped.threshold:
        raise KeyringError(
            f"{wrapped.threshold} of the {wrapped.shares} shares are needed; {len(given)} given"
        )
    try:
        secret = shamir_mnemonic.combine_mnemonics(given)
    except shamir_mnemonic.MnemonicError:
        raise KeyringError(
            "these shares do not belong together (from different keyrings, or one repeated)"
        ) from None
    return wrapped.unwrap(_stretch(secret))


def unwrap_with_passphrase(wrapped: WrappedKeyring, passphrase: str) -> Keyring:
    if wrapped.scheme != "passphrase" or wrapped.cost is None:
        raise KeyringError("this keyring opens with shares, not with a passphrase")
    return wrapped.unwrap(_derive(passphrase, wrapped.salt, wrapped.cost))


def phrase_is_valid(phrase: str) -> bool:
    """Whether one phrase is well formed (its checksum holds): a typo shows at once."""
    try:
        _check_phrase(" ".join(phrase.lower().split()))
    except KeyringError:
        return False
    return True


def read_wrapped(path: Path) -> WrappedKeyring:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyringError(f"no keyring at {path}: run 'rapidresponse keys init'") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyringError(f"cannot read {path} ({exc.__class__.__name__})") from None
    return WrappedKeyring.from_json(text)


def write_wrapped(path: Path, wrapped: WrappedKeyring) -> None:
    """Write the file (0600) atomically; an existing keyring is never overwritten."""
    private_directory(path.parent)
    fd, aside = tempfile.mkstemp(dir=path.parent, prefix=".keyring-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(wrapped.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.link(aside, path)
        fsync_folder(path.parent)  # the shares handed out open this file: it must be there
    except FileExistsError:
        raise KeyringError(f"{path} exists: a deployment has one keyring") from None
    finally:
        os.unlink(aside)


def seal_to(public_key: bytes, plaintext: bytes, purpose: str) -> bytes:
    """Seal for whoever holds the private key, with the public key alone: what arrives
    while the deployment is sealed is stored this way, readable only after the unseal."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public_key))
    key = _box_key(shared, ephemeral_public, public_key)
    nonce = os.urandom(NONCE_BYTES)
    return ephemeral_public + nonce + AESGCM(key).encrypt(nonce, plaintext, purpose.encode())


def open_sealed(private_key: bytes, token: bytes, purpose: str) -> bytes:
    """Open what ``seal_to`` sealed. Raises KeyringError if it is not for this key."""
    ephemeral_public, nonce = token[:KEY_BYTES], token[KEY_BYTES : KEY_BYTES + NONCE_BYTES]
    own = X25519PrivateKey.from_private_bytes(private_key)
    try:
        shared = own.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        key = _box_key(shared, ephemeral_public, own.public_key().public_bytes_raw())
        return AESGCM(key).decrypt(nonce, token[KEY_BYTES + NONCE_BYTES :], purpose.encode())
    except (InvalidTag, ValueError):
        raise KeyringError("sealed for another key, or damaged") from None


def _box_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=ephemeral_public + recipient_public,
        info=b"rapidresponse sealed box",
    ).derive(shared)


def _check_phrase(phrase: str) -> None:
    try:
        shamir_mnemonic.share.Share.from_mnemonic(phrase)
    except shamir_mnemonic.MnemonicError:
        raise KeyringError(
            "a share is mistyped: check each word against the card (the last words are a "
            "checksum, so one wrong word shows)"
        ) from None


def _wrap(
    keyring: Keyring,
    wrap_key: bytes,
    scheme: str,
    threshold: int,
    shares: int,
    salt: bytes = b"",
    cost: PassphraseCost | None = None,
) -> WrappedKeyring:
    unsealed = WrappedKeyring(
        scheme=scheme,
        threshold=threshold,
        shares=shares,
        fingerprint=keyring.fingerprint(),
        intake_public=keyring.intake_public(),
        sealed=b"",
        salt=salt,
        cost=cost,
    )
    nonce = os.urandom(NONCE_BYTES)
    sealed = nonce + AESGCM(wrap_key).encrypt(nonce, keyring.to_bytes(), unsealed.header())
    return replace(unsealed, sealed=sealed)


def _stretch(secret: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"rapidresponse wrap key"
    ).derive(secret)


def _derive(passphrase: str, salt: bytes, cost: PassphraseCost) -> bytes:
    return hash_secret_raw(
        secret=" ".join(passphrase.split()).encode("utf-8"),
        salt=salt,
        time_cost=cost.time_cost,
        memory_cost=cost.memory_kib,
        parallelism=cost.parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )


def _wrong_secret(scheme: str) -> str:
    if scheme == "passphrase":
        return "wrong passphrase"
    return "these shares do not open this keyring (shares of another keyring?)"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)

"""Crypto-shredding: what is erased on a schedule is sealed under a key that is destroyed.

Purging a column leaves its old bytes behind: in SQLite's WAL and free pages, in
PostgreSQL's heap and pg_wal until a VACUUM FULL, in backups. So what must be erasable is
never stored readable: it is sealed under a *shred key* that lives outside anything that
keeps old versions (not in the SQL database or its WAL, not in Redis or its append-only
file), and erasing it means destroying that key. What is left anywhere is then noise.

The key hierarchy, in one place (key: where it lives; what it seals; when it goes):

- DATA_KEYS: the environment; numbers of subscribers and responders, TOTP secrets;
  replaced by rotation.
- INDEX_KEY: the environment; the blind index of numbers; replaced by rotation.
- a reporter key per window: the volatile Redis only; nothing is sealed, it makes the
  HMACs that link a reporter's texts; expires after its window (``dispatch.reporter_keys``).
- shred key ``incident-<id>``: SHRED_KEYS_DIR; the texts of its reports, its responders'
  notes, its dispatchers' comments, its and its reports' coordinates, the texts of its
  alerts (a follow-up's note among them); destroyed REPORT_RETENTION_DAYS after the
  incident closes.
- shred key ``outbox-<day>``: SHRED_KEYS_DIR; the simulator's messages of that day;
  destroyed REPORT_RETENTION_DAYS after the day.
- shred key ``redaction-<hour>``: SHRED_KEYS_DIR; the ids of messages waiting to be
  deleted at the provider, scheduled in that hour; destroyed once none of them is left
  and the next hour is over (``rapidresponse.redaction``).

A sealed value names its key by a 4-byte id (see ``crypto``), so opening needs no
lookup table: ``ShreddingCipher.decrypt`` finds the key by that id among DATA_KEYS and the
shred keys still on disk. A destroyed key makes every value sealed under it undecryptable.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rapidresponse.crypto import KEY_ID_BYTES, DecryptionError, FieldCipher, key_id_of
from rapidresponse.private_dirs import destroy_file, fsync_folder, private_directory

KEY_BYTES = 32
WRAPPED = b"W1"  # a shred key file that holds its key wrapped (62 bytes, not 32)
WRAP_NONCE_BYTES = 12
WRAPPED_BYTES = len(WRAPPED) + WRAP_NONCE_BYTES + KEY_BYTES + 16  # the GCM tag
KEY_NAME = re.compile(r"^[a-z]+-[0-9a-zA-Z-]{1,40}$")
SUFFIX = ".key"


def incident_key(incident_id: int) -> str:
    return f"incident-{incident_id}"


def outbox_key(day: str) -> str:
    return f"outbox-{day}"


class ShredKeys:
    """Shred keys as files in one folder (mode 0700, each file 0600), shared by every
    process of the installation.

    Creating is atomic (written aside, then hard-linked into place: two processes asking
    for the same new key get the same one). Destroying overwrites the file with zeros,
    syncs it, then unlinks it and syncs the folder; see README for what a filesystem or
    an SSD may still keep.
    """

    def __init__(self, directory: Path, wrap_key: bytes | None = None) -> None:
        self.directory = directory
        # With a sealed keyring each file holds its key wrapped under the keyring's shred
        # wrap key, so the folder alone opens nothing; without one (development, or keys
        # from the environment) the files hold the keys themselves.
        self._wrapper = None if wrap_key is None else AESGCM(wrap_key)
        self._by_id: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def _path(self, name: str) -> Path:
        if not KEY_NAME.match(name):
            raise ValueError("name: not a shred key name")
        return self.directory / f"{name}{SUFFIX}"

    def key(self, name: str) -> bytes:
        """The key called ``name``, made now if it does not exist yet."""
        path = self._path(name)
        existing = self._read(path)
        if existing is not None:
            return existing
        private_directory(self.directory)
        aside = self.directory / f".{name}.{os.getpid()}.{threading.get_ident()}.new"
        descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, self._stored_form(name, os.urandom(KEY_BYTES)))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(aside, path)  # fails if another process made it first: use theirs
        except FileExistsError:
            pass
        finally:
            aside.unlink(missing_ok=True)
        made = self._read(path)
        if made is None:
            raise OSError(f"shred key {name} could not be created")
        return made

    def find(self, key_id: bytes) -> bytes | None:
        """The existing key with that id; None when it was destroyed (or never was)."""
        with self._lock:
            known = self._by_id.get(key_id)
        if known is not None:
            key = self._read(self._path(known))
            if key is not None:
                return key
        return self._rescan(key_id)

    def _rescan(self, key_id: bytes) -> bytes | None:
        found: dict[bytes, str] = {}
        for name in self.names():
            key = self._read(self._path(name))
            if key is not None:
                found[key_id_of(key)] = name
        with self._lock:
            self._by_id = found
        match = found.get(key_id)
        return None if match is None else self._read(self._path(match))

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in self.directory.glob(f"*{SUFFIX}"))

    def destroy(self, name: str) -> bool:
        """Destroy the key (overwritten, then unlinked). True if there was one."""
        return destroy_file(self._path(name))

    def wrap_existing(self) -> int:
        """Rewrite every key still stored bare in its wrapped form (a deployment moving to
        a sealed keyring). Returns how many were rewritten."""
        if self._wrapper is None:
            raise ValueError("no wrap key")
        rewritten = 0
        for name in self.names():
            path = self._path(name)
            stored = _read_file(path)
            if stored is None or len(stored) != KEY_BYTES:
                continue
            _replace_durably(path, self._stored_form(name, stored))
            rewritten += 1
        return rewritten

    def _stored_form(self, name: str, key: bytes) -> bytes:
        if self._wrapper is None:
            return key
        nonce = os.urandom(WRAP_NONCE_BYTES)
        return WRAPPED + nonce + self._wrapper.encrypt(nonce, key, name.encode("ascii"))

    def _read(self, path: Path) -> bytes | None:
        stored = _read_file(path)
        if stored is None or not any(stored):
            return None  # missing, or zeroed by a destroy in progress
        if len(stored) == KEY_BYTES:
            return stored  # bare (a bare key may begin with the bytes "W1" too)
        if len(stored) != WRAPPED_BYTES or not stored.startswith(WRAPPED):
            return None
        if self._wrapper is None:
            return None  # wrapped under a keyring this process does not hold
        name = path.name[: -len(SUFFIX)]
        nonce = stored[len(WRAPPED) : len(WRAPPED) + WRAP_NONCE_BYTES]
        try:
            return self._wrapper.decrypt(
                nonce, stored[len(WRAPPED) + WRAP_NONCE_BYTES :], name.encode("ascii")
            )
        except InvalidTag:
            return None  # another keyring's, or tampered with


def _replace_durably(path: Path, data: bytes) -> None:
    """Put ``data`` in place of ``path``'s contents so that a crash at any moment leaves
    the old or the new contents, then overwrite the old ones (through the old inode)."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.new")
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    with open(path, "r+b") as old:
        os.replace(aside, path)
        fsync_folder(path.parent)
        old.write(bytes(os.fstat(old.fileno()).st_size))
        old.flush()
        os.fsync(old.fileno())


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class ShreddingCipher(FieldCipher):
    """DATA_KEYS for what lasts, shred keys for what is erased on a schedule.

    ``encrypt`` seals with the newest DATA_KEY as before; ``seal`` seals under a named
    shred key; ``decrypt`` opens either, finding the key by the id in the value.
    """

    def __init__(self, keys: Sequence[bytes], shred_keys: ShredKeys) -> None:
        super().__init__(keys)
        self.shred_keys = shred_keys

    def seal(self, key_name: str, plaintext: str, purpose: str) -> bytes:
        return FieldCipher([self.shred_keys.key(key_name)]).encrypt(plaintext, purpose)

    def decrypt(self, token: bytes, purpose: str) -> str:
        try:
            return super().decrypt(token, purpose)
        except DecryptionError:
            key = self.shred_keys.find(token[1 : 1 + KEY_ID_BYTES])
            if key is None:
                raise  # shredded: its key is gone
            return FieldCipher([key]).decrypt(token, purpose)


def shred_expired_keys(keys: ShredKeys, incidents: Sequence[int], before: date) -> list[str]:
    """Destroy the keys of ``incidents`` (past their retention) and of outbox days before
    ``before``. Returns the names destroyed."""
    expired = {incident_key(incident_id) for incident_id in incidents}
    doomed = [name for name in keys.names() if name in expired or _outbox_before(name, before)]
    return [name for name in doomed if keys.destroy(name)]


def _outbox_before(name: str, before: date) -> bool:
    kind, _, day = name.partition("-")
    try:
        return kind == "outbox" and date.fromisoformat(day) < before
    except ValueError:
        return False

"""Texts the database could not take, kept on this host's disk until it can.

When the database is locked past the webhook's budget, or down, an inbound text is
still answered, and kept here: one file per text, written and fsynced before Twilio
hears "200", so a crash or a restart loses nothing. Why a directory and not Redis:
Redis may be the very thing that is down, and ours keeps nothing on disk for what links
a person to a text; why not a second database: it would fail with the first.

Each file is sealed under a shred key of its own (``SHRED_KEYS_DIR``), destroyed when
the text has been stored: a copy of the disk taken later finds only unreadable bytes.
Files are claimed by an atomic rename, so several web processes can share one spool.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rapidresponse.crypto import DecryptionError, Purpose
from rapidresponse.keyring import KeyringError, open_sealed, seal_to
from rapidresponse.private_dirs import destroy_file, fsync_folder, private_directory
from rapidresponse.shredding import ShreddingCipher

log = logging.getLogger(__name__)

SUFFIX = ".msg"
SEALED_FOLDER = "sealed"
UNREADABLE = ".unreadable"  # sealed to a keyring that is not this one: kept, never opened
CLAIMED = ".claimed"
# A claim older than this belongs to a process that died while storing it: take it back.
STALE_CLAIM_SECONDS = 300


@dataclass(frozen=True)
class SpooledText:
    """One inbound text as it arrived (the Twilio id, for redaction once it is stored)."""

    phone: str
    body: str
    sid: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    channel: str = "sms"  # or "whatsapp" (ReportChannel's value)


class StorageBreaker:
    """Whether the database takes texts, as this process last found it.

    A text the database could not take within its budget (a lock held by a migration,
    a database away) held a web thread for up to two lock waits. The web process has
    few threads (see ``web.server.WEB_THREADS``): if every text waited as long, texts
    would queue behind each other past the 15 s Twilio waits and be lost. Once one
    text has failed, the others go straight to the spool while a single text at a time
    (the probe) tries the database; the first one stored closes the breaker.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing = False
        self._probing = False

    def may_try(self) -> bool:
        """Whether this text should try the database (False: spool it now). A True
        while failing makes this thread the probe: report how it went with ``tried``."""
        with self._lock:
            if not self._failing:
                return True
            if self._probing:
                return False
            self._probing = True
            return True

    def tried(self, *, stored: bool | None) -> None:
        """How a text's try went: stored, not (the database could not take it), or
        None (it failed for a reason of its own, which says nothing of the database)."""
        with self._lock:
            if stored is not None:
                self._failing = not stored
            self._probing = False

    @property
    def failing(self) -> bool:
        return self._failing


class Spool:
    def __init__(self, directory: Path, cipher: ShreddingCipher) -> None:
        self.directory = directory
        self.cipher = cipher

    def keep(self, text: SpooledText, name: str | None = None) -> str:
        """Write ``text`` durably (file and folder fsynced); its name. A ``name`` already
        in the spool is not written twice (a release retried after a crash)."""
        name = name or _new_name()
        if self.holds(name):
            return name
        sealed = self.cipher.seal(_key(name), json.dumps(asdict(text)), Purpose.SPOOLED)
        _write_durably(self.directory, name + SUFFIX, sealed)
        return name

    def holds(self, name: str) -> bool:
        return (self.directory / f"{name}{SUFFIX}").exists() or self._claimed_path(name).exists()

    def waiting(self) -> list[str]:
        """Names of the texts waiting, oldest first (stale claims put back first)."""
        if not self.directory.is_dir():
            return []
        _take_back_stale_claims(self.directory)
        return sorted(path.name[: -len(SUFFIX)] for path in self.directory.glob(f"*{SUFFIX}"))

    def claim(self, name: str) -> SpooledText | None:
        """Take ``name`` for storing; None if another process took it, or it is unreadable
        (its key destroyed: then there is nothing left to store, and the file goes)."""
        claimed = self._claimed_path(name)
        try:
            (self.directory / f"{name}{SUFFIX}").rename(claimed)
        except FileNotFoundError:
            return None
        os.utime(claimed)  # the claim's age, for a process that dies holding it
        try:
            fields = json.loads(self.cipher.decrypt(claimed.read_bytes(), Purpose.SPOOLED))
            return SpooledText(**fields)
        except (DecryptionError, ValueError, TypeError):
            log.error("a spooled text could not be read; removed")
            self.done(name)
            return None

    def release(self, name: str) -> None:
        """Put a claimed text back (the database is still not taking it)."""
        self._claimed_path(name).rename(self.directory / f"{name}{SUFFIX}")

    def done(self, name: str) -> None:
        """The text is stored: destroy its key, then the file."""
        self.cipher.shred_keys.destroy(_key(name))
        self._claimed_path(name).unlink(missing_ok=True)
        fsync_folder(self.directory)

    def _claimed_path(self, name: str) -> Path:
        return self.directory / f"{name}{CLAIMED}"


class SealedIntake:
    """What arrives while the deployment is sealed (``rapidresponse.keyring``), kept in
    the spool's ``sealed/`` folder, each file sealed to the keyring's intake *public* key:
    the sealed web process can write it and nobody can read it until the unseal.

    An entry is a text (``SpooledText``), or the id of a TwiML reply to delete at the
    provider. After the unseal, ``release`` moves the texts into the spool (sealed there
    under shred keys as usual, and stored by its drain) and hands back the ids.
    """

    def __init__(self, spool_directory: Path, public_key: bytes) -> None:
        self.directory = spool_directory / SEALED_FOLDER
        self.public_key = public_key

    def keep_text(self, text: SpooledText) -> str:
        return self._keep({"text": asdict(text)})

    def keep_redaction(self, sid: str) -> str:
        return self._keep({"redact": sid})

    def _keep(self, entry: dict[str, object]) -> str:
        name = _new_name()
        sealed = seal_to(self.public_key, json.dumps(entry).encode(), Purpose.SEALED_INTAKE)
        _write_durably(self.directory, name + SUFFIX, sealed)
        return name

    def release(self, private_key: bytes, spool: Spool) -> list[str]:
        """Move every entry into ``spool`` (oldest first, under the same name, so a release
        cut short and tried again writes nothing twice); the provider ids to delete.

        Raises:
            OSError: the spool could not take an entry; it is put back for the next try.
        """
        to_redact: list[str] = []
        if not self.directory.is_dir():
            return to_redact
        _take_back_stale_claims(self.directory)
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            claimed = path.with_suffix(CLAIMED)
            try:
                path.rename(claimed)  # another web process may be releasing too
            except FileNotFoundError:
                continue
            os.utime(claimed)  # the claim's age (renaming kept the entry's): not stale yet
            try:
                entry = json.loads(
                    open_sealed(private_key, claimed.read_bytes(), Purpose.SEALED_INTAKE)
                )
            except (KeyringError, ValueError):
                # Sealed to another keyring (a re-made one?): kept aside, never destroyed.
                log.error("an entry kept while sealed does not open with this keyring; set aside")
                claimed.rename(claimed.with_suffix(UNREADABLE))
                continue
            try:
                if isinstance(entry.get("text"), dict):
                    spool.keep(SpooledText(**entry["text"]), name=path.stem)
                elif isinstance(entry.get("redact"), str):
                    to_redact.append(entry["redact"])
            except OSError:
                claimed.rename(path)
                raise
            except TypeError:
                log.error("an entry kept while sealed was malformed; removed")
            destroy_file(claimed)
        return to_redact

    def waiting(self) -> int:
        """Entries not stored yet (waiting, or being released)."""
        if not self.directory.is_dir():
            return 0
        return sum(1 for path in self.directory.iterdir() if path.suffix in (SUFFIX, CLAIMED))


def _take_back_stale_claims(directory: Path) -> None:
    deadline = time.time() - STALE_CLAIM_SECONDS
    for path in directory.glob(f"*{CLAIMED}"):
        try:
            if path.stat().st_mtime < deadline:
                path.rename(path.with_suffix(SUFFIX))
        except FileNotFoundError:
            continue  # its process finished it just now


def _new_name() -> str:
    return f"{time.time_ns():020d}-{secrets.token_hex(8)}"


def _write_durably(directory: Path, filename: str, data: bytes) -> None:
    private_directory(directory)
    aside = directory / f".{filename}.new"
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    aside.rename(directory / filename)
    fsync_folder(directory)


def _key(name: str) -> str:
    return f"spool-{name}"

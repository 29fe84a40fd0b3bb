"""Shred keys: a value sealed under one opens until its key is destroyed, then never."""

from __future__ import annotations

import stat
import threading
from datetime import date
from pathlib import Path

import pytest

from rapidresponse.config import new_key, parse_data_keys
from rapidresponse.crypto import DecryptionError, Purpose, key_id_of
from rapidresponse.shredding import (
    KEY_BYTES,
    ShreddingCipher,
    ShredKeys,
    incident_key,
    outbox_key,
    shred_expired_keys,
)

TEXT = "agents at the corner of 82nd and Foster, a white van"


@pytest.fixture
def keys(tmp_path: Path) -> ShredKeys:
    return ShredKeys(tmp_path / "shred-keys")


@pytest.fixture
def cipher(keys: ShredKeys) -> ShreddingCipher:
    return ShreddingCipher(parse_data_keys(new_key()), keys)


def test_a_sealed_value_opens_until_its_key_is_destroyed(
    cipher: ShreddingCipher, keys: ShredKeys
) -> None:
    token = cipher.seal(incident_key(7), TEXT, Purpose.REPORT_TEXT)
    assert TEXT.encode() not in token
    assert cipher.decrypt(token, Purpose.REPORT_TEXT) == TEXT
    assert keys.destroy(incident_key(7)) is True
    with pytest.raises(DecryptionError):
        cipher.decrypt(token, Purpose.REPORT_TEXT)
    assert keys.destroy(incident_key(7)) is False


def test_another_process_sees_the_destruction(cipher: ShreddingCipher, keys: ShredKeys) -> None:
    token = cipher.seal(incident_key(8), TEXT, Purpose.REPORT_TEXT)
    assert cipher.decrypt(token, Purpose.REPORT_TEXT) == TEXT  # now known to this cipher
    ShredKeys(keys.directory).destroy(incident_key(8))  # as another worker would
    with pytest.raises(DecryptionError):
        cipher.decrypt(token, Purpose.REPORT_TEXT)


def test_data_keys_still_seal_what_lasts(cipher: ShreddingCipher, keys: ShredKeys) -> None:
    token = cipher.encrypt("+15035550142", Purpose.SUBSCRIBER_PHONE)
    assert cipher.decrypt(token, Purpose.SUBSCRIBER_PHONE) == "+15035550142"
    assert keys.names() == []  # no shred key was needed


def test_keys_are_kept_private_on_disk(keys: ShredKeys) -> None:
    keys.key(incident_key(1))
    path = keys.directory / "incident-1.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.directory.stat().st_mode) == 0o700
    assert len(path.read_bytes()) == KEY_BYTES
    keys.destroy(incident_key(1))
    assert list(keys.directory.iterdir()) == []  # nothing left, not even a temporary file


def test_processes_making_the_same_key_at_once_get_one_key(keys: ShredKeys) -> None:
    found: list[bytes] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        found.append(keys.key(incident_key(3)))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1 and keys.names() == ["incident-3"]


@pytest.mark.parametrize("name", ["../etc/passwd", "incident-1/x", "", "INCIDENT-1"])
def test_a_key_name_cannot_leave_its_folder(keys: ShredKeys, name: str) -> None:
    with pytest.raises(ValueError, match="not a shred key name"):
        keys.key(name)


def test_expired_incidents_and_old_outbox_days_are_shredded(keys: ShredKeys) -> None:
    for name in (
        incident_key(1),
        incident_key(2),
        outbox_key("2026-11-01"),
        outbox_key("2026-11-30"),
    ):
        keys.key(name)
    destroyed = shred_expired_keys(keys, [1, 99], date(2026, 11, 30))
    assert sorted(destroyed) == ["incident-1", "outbox-2026-11-01"]
    assert keys.names() == ["incident-2", "outbox-2026-11-30"]


def test_with_a_keyring_each_file_holds_its_key_wrapped(tmp_path: Path) -> None:
    wrap_key = bytes(range(32))
    folder = tmp_path / "wrapped"
    wrapped = ShredKeys(folder, wrap_key)
    key = wrapped.key(incident_key(3))
    stored = (folder / "incident-3.key").read_bytes()
    assert len(stored) == 62 and key not in stored
    assert ShredKeys(folder, wrap_key).key(incident_key(3)) == key  # another process
    assert ShredKeys(folder).find(key_id_of(key)) is None  # the folder alone opens nothing
    assert ShredKeys(folder, bytes(32)).find(key_id_of(key)) is None  # nor another keyring
    assert ShredKeys(folder, wrap_key).find(key_id_of(key)) == key
    assert wrapped.destroy(incident_key(3))
    assert ShredKeys(folder, wrap_key).find(key_id_of(key)) is None


def test_keys_stored_bare_are_rewrapped_when_a_keyring_is_made(tmp_path: Path) -> None:
    folder = tmp_path / "moving"
    bare = ShredKeys(folder).key(incident_key(9))
    assert (folder / "incident-9.key").read_bytes() == bare
    moved = ShredKeys(folder, b"\x07" * 32)
    assert moved.wrap_existing() == 1
    assert bare not in (folder / "incident-9.key").read_bytes()
    assert moved.key(incident_key(9)) == bare  # nothing sealed under it is lost
    assert moved.wrap_existing() == 0
    assert [p.name for p in folder.iterdir()] == ["incident-9.key"]


def test_a_bare_key_that_happens_to_begin_like_a_wrapped_one_still_reads(tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    key = b"W1" + bytes(range(30))
    (folder / "incident-5.key").write_bytes(key)
    assert ShredKeys(folder).key(incident_key(5)) == key
    assert ShredKeys(folder, b"\x07" * 32).key(incident_key(5)) == key

"""Field encryption with key rotation, and the blind index."""

from __future__ import annotations

import os

import pytest

from rapidresponse.crypto import BlindIndex, DecryptionError, FieldCipher

NUMBER = "+15035550123"


def key() -> bytes:
    return os.urandom(32)


def test_a_sealed_value_opens_again() -> None:
    cipher = FieldCipher([key()])
    token = cipher.encrypt(NUMBER, "subscriber.phone")
    assert NUMBER.encode() not in token
    assert cipher.decrypt(token, "subscriber.phone") == NUMBER


def test_sealing_twice_gives_different_ciphertexts() -> None:
    cipher = FieldCipher([key()])
    assert cipher.encrypt(NUMBER, "p") != cipher.encrypt(NUMBER, "p")


def test_an_older_key_still_opens_what_it_sealed() -> None:
    old, new = key(), key()
    token = FieldCipher([old]).encrypt(NUMBER, "p")
    rotated = FieldCipher([new, old])
    assert rotated.decrypt(token, "p") == NUMBER
    assert rotated.needs_rotation(token)
    assert not rotated.needs_rotation(rotated.encrypt(NUMBER, "p"))


def test_a_dropped_key_no_longer_opens_anything() -> None:
    old, new = key(), key()
    token = FieldCipher([old]).encrypt(NUMBER, "p")
    with pytest.raises(DecryptionError):
        FieldCipher([new]).decrypt(token, "p")


def test_a_tampered_value_is_refused() -> None:
    cipher = FieldCipher([key()])
    token = bytearray(cipher.encrypt(NUMBER, "p"))
    token[-1] ^= 1
    with pytest.raises(DecryptionError):
        cipher.decrypt(bytes(token), "p")


def test_a_value_sealed_for_one_column_does_not_open_in_another() -> None:
    cipher = FieldCipher([key()])
    with pytest.raises(DecryptionError):
        cipher.decrypt(cipher.encrypt(NUMBER, "responder.phone"), "subscriber.phone")


def test_the_blind_index_is_deterministic_and_keyed() -> None:
    first, second = BlindIndex(key()), BlindIndex(key())
    assert first.digest(NUMBER, "phone") == first.digest(NUMBER, "phone")
    assert first.digest(NUMBER, "phone") != second.digest(NUMBER, "phone")
    assert first.digest(NUMBER, "phone") != first.digest(NUMBER, "other")
    assert "5550123" not in first.digest(NUMBER, "phone")


@pytest.mark.parametrize("keys", [[], [b"short"]])
def test_bad_keys_are_refused(keys: list[bytes]) -> None:
    with pytest.raises(ValueError, match="keys"):
        FieldCipher(keys)

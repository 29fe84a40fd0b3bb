"""The sealed keyring: k of n recovery phrases open it, k-1 do not; a passphrase opens
its own; nothing in the file opens it by itself, and nothing in it can be altered."""

from __future__ import annotations

import base64
import itertools
import json
import stat
from pathlib import Path

import pytest

from rapidresponse.keyring import (
    Keyring,
    KeyringError,
    PassphraseCost,
    WrappedKeyring,
    open_sealed,
    phrase_is_valid,
    read_wrapped,
    seal_to,
    split_into_shares,
    unwrap_with_passphrase,
    unwrap_with_shares,
    wrap_with_passphrase,
    write_wrapped,
)

CHEAP = PassphraseCost(memory_kib=8192, time_cost=1, parallelism=1)  # the real one: 256 MiB
PASSPHRASE = "lentils under the bridge at dawn"


@pytest.fixture(scope="module")
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture(scope="module")
def three_of_five(keyring: Keyring) -> tuple[WrappedKeyring, list[str]]:
    split = split_into_shares(keyring, threshold=3, shares=5)
    return split.wrapped, split.phrases


def key_forms(keyring: Keyring) -> list[bytes]:
    """Every key, as bytes and in the text forms a file might hold it."""
    raw = [*keyring.data_keys, keyring.index_key, keyring.shred_wrap_key, keyring.intake_key]
    forms = [keyring.secret_key.encode()]
    for key in raw:
        forms += [key, base64.b64encode(key), base64.urlsafe_b64encode(key), key.hex().encode()]
    return forms


def test_any_three_of_five_shares_open_it(
    keyring: Keyring, three_of_five: tuple[WrappedKeyring, list[str]]
) -> None:
    wrapped, phrases = three_of_five
    assert len(phrases) == 5 and len(set(phrases)) == 5
    assert all(len(phrase.split()) == 20 for phrase in phrases)
    for chosen in itertools.combinations(phrases, 3):
        assert unwrap_with_shares(wrapped, chosen) == keyring


def test_two_of_five_do_not(three_of_five: tuple[WrappedKeyring, list[str]]) -> None:
    wrapped, phrases = three_of_five
    for chosen in itertools.combinations(phrases, 2):
        with pytest.raises(KeyringError, match="3 of the 5 shares are needed; 2 given"):
            unwrap_with_shares(wrapped, chosen)
    with pytest.raises(KeyringError, match="3 of the 5 shares are needed; 2 given"):
        unwrap_with_shares(wrapped, [phrases[0], phrases[0].upper(), phrases[1]])  # repeated


def test_shares_of_another_keyring_do_not_mix_in(
    three_of_five: tuple[WrappedKeyring, list[str]],
) -> None:
    wrapped, phrases = three_of_five
    other = split_into_shares(Keyring.generate(), threshold=3, shares=5)
    with pytest.raises(KeyringError, match="do not belong together"):
        unwrap_with_shares(wrapped, [*phrases[:2], other.phrases[0]])
    with pytest.raises(KeyringError, match="do not open this keyring"):
        unwrap_with_shares(wrapped, other.phrases[:3])


def test_a_mistyped_word_is_caught_by_the_checksum(
    three_of_five: tuple[WrappedKeyring, list[str]],
) -> None:
    wrapped, phrases = three_of_five
    words = phrases[0].split()
    words[5] = "academic" if words[5] != "academic" else "acid"
    typo = " ".join(words)
    assert not phrase_is_valid(typo)
    assert phrase_is_valid("  " + phrases[0].upper().replace(" ", "   ") + "\n")
    with pytest.raises(KeyringError, match="mistyped"):
        unwrap_with_shares(wrapped, [typo, *phrases[1:3]])


def test_the_file_holds_no_key_and_its_header_cannot_be_altered(
    keyring: Keyring, three_of_five: tuple[WrappedKeyring, list[str]], tmp_path: Path
) -> None:
    wrapped, phrases = three_of_five
    path = tmp_path / "keyring.json"
    write_wrapped(path, wrapped)
    stored = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for form in key_forms(keyring):
        assert form not in stored
    assert unwrap_with_shares(read_wrapped(path), phrases[2:]) == keyring
    with pytest.raises(KeyringError, match="exists"):
        write_wrapped(path, wrapped)  # never overwritten: the shares out there open this one

    document = json.loads(stored)
    for field, value in (("threshold", 2), ("shares", 4), ("fingerprint", "0" * 64)):
        altered = WrappedKeyring.from_json(json.dumps({**document, field: value}))
        with pytest.raises(KeyringError):
            unwrap_with_shares(altered, phrases[:3])


def test_a_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="no keyring at"):
        read_wrapped(tmp_path / "missing.json")
    for text in ("", "{", "[]", '{"format": "other"}', '{"format": "rapidresponse-keyring"}'):
        with pytest.raises(KeyringError):
            WrappedKeyring.from_json(text)


def test_a_passphrase_opens_its_own_keyring_and_nothing_else(
    keyring: Keyring, three_of_five: tuple[WrappedKeyring, list[str]]
) -> None:
    wrapped = wrap_with_passphrase(keyring, PASSPHRASE, CHEAP)
    again = WrappedKeyring.from_json(wrapped.to_json())
    assert unwrap_with_passphrase(again, "  lentils under the  bridge at dawn ") == keyring
    with pytest.raises(KeyringError, match="wrong passphrase"):
        unwrap_with_passphrase(again, "lentils under the bridge at dusk")
    with pytest.raises(KeyringError, match="at least 20 characters"):
        wrap_with_passphrase(keyring, "short one", CHEAP)
    with pytest.raises(KeyringError, match="opens with shares"):
        unwrap_with_passphrase(three_of_five[0], PASSPHRASE)
    with pytest.raises(KeyringError, match="opens with a passphrase"):
        unwrap_with_shares(again, three_of_five[1][:3])


def test_the_production_passphrase_cost_is_memory_hard() -> None:
    cost = PassphraseCost()
    assert cost.memory_kib >= 256 * 1024 and cost.time_cost >= 3


def test_thresholds_that_would_mislead_are_refused(keyring: Keyring) -> None:
    for threshold, shares in ((0, 3), (4, 3), (1, 3), (2, 17)):
        with pytest.raises(KeyringError):
            split_into_shares(keyring, threshold, shares)
    single = split_into_shares(keyring, 1, 1)
    assert unwrap_with_shares(single.wrapped, single.phrases) == keyring


def test_keys_moved_in_from_the_environment_are_kept() -> None:
    data_keys = (b"\x01" * 32, b"\x02" * 32)
    moved = Keyring.generate("s" * 48, data_keys, b"\x03" * 32)
    assert moved.data_keys == data_keys and moved.index_key == b"\x03" * 32
    assert Keyring.from_bytes(moved.to_bytes()) == moved
    assert "fingerprint" in repr(moved) and moved.secret_key not in repr(moved)


def test_what_is_sealed_to_the_intake_key_opens_only_with_its_private_half(
    keyring: Keyring,
) -> None:
    token = seal_to(keyring.intake_public(), b"ICE at 82nd and Foster", "intake")
    assert b"Foster" not in token
    assert open_sealed(keyring.intake_key, token, "intake") == b"ICE at 82nd and Foster"
    with pytest.raises(KeyringError):
        open_sealed(Keyring.generate().intake_key, token, "intake")
    with pytest.raises(KeyringError):
        open_sealed(keyring.intake_key, token, "another purpose")
    with pytest.raises(KeyringError):
        open_sealed(keyring.intake_key, token[:-1] + bytes([token[-1] ^ 1]), "intake")

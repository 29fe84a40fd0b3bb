"""Keys from process to process through a real Redis: only to a one-time public key,
only this deployment's keyring accepted, and a seal takes them from every holder."""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from redis import Redis

from dispatch import key_custody
from rapidresponse.keyring import Keyring, WrappedKeyring, seal_to, split_into_shares

ASK_SECONDS = 5.0


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture
def wrapped(keyring: Keyring) -> WrappedKeyring:
    return split_into_shares(keyring, 2, 3).wrapped


@pytest.fixture
def holders() -> Iterator[list[key_custody.KeyHolder]]:
    started: list[key_custody.KeyHolder] = []
    yield started
    for holder in started:
        holder.stop()


def hold(
    redis: Redis, keyring: Keyring, started: list[key_custody.KeyHolder]
) -> tuple[key_custody.KeyHolder, threading.Event]:
    sealed = threading.Event()
    holder = key_custody.KeyHolder(redis, keyring, on_seal=sealed.set).start()
    started.append(holder)
    return holder, sealed


# How Redis's MONITOR prints a byte it escapes (sdscatrepr), back to the byte itself.
ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}
ESCAPED = re.compile(rb'\\(x[0-9a-f]{2}|[nrtab"\\])')


def unescape(line: bytes) -> bytes:
    def byte(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code.startswith(b"x"):
            return bytes([int(code[1:], 16)])
        return ESCAPES.get(code, code)

    return ESCAPED.sub(byte, line)


@contextmanager
def every_command(redis: Redis) -> Iterator[list[bytes]]:
    """Every command Redis receives meanwhile, from any client, as the bytes sent: a
    watch that cannot miss a key that lived only a millisecond."""
    lines: list[bytes] = []
    done = threading.Event()
    with redis.monitor() as monitor:

        def listen() -> None:
            while not done.is_set():
                lines.append(unescape(monitor.connection.read_response()))

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        try:
            yield lines
        finally:
            done.set()
            redis.ping()  # wakes the listener, which then sees `done`
            listener.join(5)


def key_forms(keyring: Keyring) -> list[bytes]:
    raw = [*keyring.data_keys, keyring.index_key, keyring.shred_wrap_key, keyring.intake_key]
    return [keyring.secret_key.encode()] + [
        form for key in raw for form in (key, base64.b64encode(key), key.hex().encode())
    ]


def test_a_process_that_asks_gets_the_keyring_and_redis_never_holds_a_key(
    redis_client: Redis,
    keyring: Keyring,
    wrapped: WrappedKeyring,
    holders: list[key_custody.KeyHolder],
) -> None:
    key_custody.mark_unsealed(redis_client, keyring)
    assert key_custody.is_unsealed(redis_client, wrapped)
    hold(redis_client, keyring, holders)
    with every_command(redis_client) as commands:
        got = key_custody.ask_for_keys(redis_client, wrapped, "worker", ASK_SECONDS)
    assert got == keyring
    blob = b"\n".join(commands)
    assert b"rr:keys:want:" in blob and b"rr:keys:give:" in blob  # the watch saw the handoff
    for form in key_forms(keyring):
        assert form not in blob
    # The control: a raw key that does pass through Redis is seen by the same watch.
    with every_command(redis_client) as control:
        redis_client.publish("rr:test:control", keyring.index_key)
    assert keyring.index_key in b"\n".join(control)


def test_a_keyring_that_is_not_this_deployments_is_refused(
    redis_client: Redis, wrapped: WrappedKeyring
) -> None:
    """Someone who can write to Redis answers first, with keys of their own: the asker
    checks the fingerprint in its own keyring file and keeps waiting."""
    forged = Keyring.generate()

    def answer_with_forgery() -> None:
        deadline = time.monotonic() + ASK_SECONDS
        while time.monotonic() < deadline:
            for request in redis_client.smembers(key_custody.WANTING):
                key = key_custody.WANT + request.decode()
                public = base64.b64decode(redis_client.hget(key, "public") or b"")
                sealed = seal_to(public, forged.to_bytes(), key_custody.PURPOSE + request.decode())
                redis_client.rpush(key_custody.GIVE + request.decode(), sealed)
                return
            time.sleep(0.01)
        raise AssertionError("no request to answer")

    pushed = threading.Event()
    attacker = threading.Thread(target=lambda: answer_with_forgery() or pushed.set())
    attacker.start()
    key_custody.mark_unsealed(redis_client, forged)  # the attacker says so too: no matter
    assert key_custody.ask_for_keys(redis_client, wrapped, "web", timeout=1.5) is None
    attacker.join()
    assert pushed.is_set()


def test_nobody_answers_while_sealed(redis_client: Redis, wrapped: WrappedKeyring) -> None:
    started = time.monotonic()
    assert key_custody.ask_for_keys(redis_client, wrapped, "web", timeout=0.5) is None
    assert time.monotonic() - started < 2
    assert not key_custody.is_unsealed(redis_client, wrapped)
    assert list(redis_client.scan_iter(match=key_custody.WANT + "*")) == []  # cleaned up
    assert redis_client.scard(key_custody.WANTING) == 0


def test_a_seal_reaches_every_holder_within_seconds_and_they_stop_answering(
    redis_client: Redis,
    keyring: Keyring,
    wrapped: WrappedKeyring,
    holders: list[key_custody.KeyHolder],
) -> None:
    key_custody.mark_unsealed(redis_client, keyring)
    watched = [hold(redis_client, keyring, holders) for _ in range(3)]
    time.sleep(0.2)  # subscribed
    sealed_at = time.monotonic()
    key_custody.seal(redis_client)
    for _, sealed in watched:
        assert sealed.wait(3), "a holder kept its keys past the seal"
    assert time.monotonic() - sealed_at < 3
    assert not key_custody.is_unsealed(redis_client, wrapped)
    assert key_custody.ask_for_keys(redis_client, wrapped, "worker", timeout=1.0) is None


def test_a_holder_from_before_a_seal_and_unseal_stops_too(
    redis_client: Redis, keyring: Keyring, holders: list[key_custody.KeyHolder]
) -> None:
    """A seal it missed (Redis away for a moment, say) still ends it: the epoch moved."""
    key_custody.mark_unsealed(redis_client, keyring)
    _, sealed = hold(redis_client, keyring, holders)
    redis_client.incr(key_custody.EPOCH)  # a seal whose announcement was lost
    assert sealed.wait(3)


def test_processes_that_asked_before_the_unseal_are_answered_by_it(
    redis_client: Redis, keyring: Keyring, wrapped: WrappedKeyring
) -> None:
    with ThreadPoolExecutor(2) as pool:
        waiting = [
            pool.submit(key_custody.ask_for_keys, redis_client, wrapped, role, ASK_SECONDS)
            for role in ("web", "worker")
        ]
        deadline = time.monotonic() + ASK_SECONDS
        while redis_client.scard(key_custody.WANTING) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        key_custody.mark_unsealed(redis_client, keyring)
        assert key_custody.answer_waiting(redis_client, keyring) == 2
        assert [future.result() for future in waiting] == [keyring, keyring]


def test_an_answer_not_collected_before_a_seal_is_withdrawn(
    redis_client: Redis, keyring: Keyring, wrapped: WrappedKeyring
) -> None:
    key_custody.mark_unsealed(redis_client, keyring)
    redis_client.rpush(key_custody.GIVE + "late", b"sealed for someone")
    key_custody.seal(redis_client)
    assert redis_client.exists(key_custody.GIVE + "late") == 0


def test_a_holder_that_cannot_watch_lets_go(
    redis_client: Redis, keyring: Keyring, holders: list[key_custody.KeyHolder]
) -> None:
    """It fails closed: anything unexpected (here, an epoch that is not a number) seals
    this process rather than leave it holding keys that no seal could reach."""
    key_custody.mark_unsealed(redis_client, keyring)
    _, sealed = hold(redis_client, keyring, holders)
    redis_client.set(key_custody.EPOCH, "not a number")
    assert sealed.wait(3)


def test_workers_wait_for_what_came_in_while_sealed(redis_client: Redis) -> None:
    key_custody.note_intake_pending(redis_client, "web-1:/var/spool")
    started = time.monotonic()
    assert key_custody.wait_for_intake(redis_client, timeout=0.6) is False
    assert time.monotonic() - started >= 0.5
    threading.Timer(0.3, key_custody.intake_stored, (redis_client, "web-1:/var/spool")).start()
    assert key_custody.wait_for_intake(redis_client, timeout=5) is True

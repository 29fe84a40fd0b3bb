"""Keys from process to process while the deployment is unsealed, never through a file.

A sealed deployment's processes start without keys. ``rapidresponse keys unseal`` opens
the keyring (k recovery phrases, or the passphrase) in its own memory and hands it on;
from then on every process that holds the keyring hands it to the next one that asks.

The handoff, through the queue Redis:

1. A process without keys makes a one-time X25519 key pair in memory, stores its public
   half under ``rr:keys:want:<random id>`` (expiring) and announces it on
   ``rr:keys:events``.
2. A holder seals the keyring to that public key (``rapidresponse.keyring.seal_to``) and
   pushes it to ``rr:keys:give:<id>`` (expiring). Only the asker's private key, which
   never leaves its memory, opens it: Redis, its append-only file and anyone reading
   them see only that ciphertext.
3. The asker checks the keyring against the fingerprint in its own keyring file (so an
   attacker who can write to Redis cannot feed it keys of their own), and forgets its
   private key.

A **seal** (``rapidresponse keys seal``, or the board) needs no key: it deletes
``rr:keys:unsealed``, bumps ``rr:keys:epoch`` and announces it. Every holder checks both
at least once a second and, seeing either, stops: a worker kills the job it runs and
exits, a web process goes back to its sealed form and restarts. Keys exist only in
memory, so a process gone is a process without keys. What the system cannot do: keep
keys from someone who can reach the live Redis with its password *while unsealed* and
asks like a process would; that is what the seal is for.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from redis import Redis
from redis.exceptions import RedisError

from rapidresponse.config import Settings
from rapidresponse.keyring import (
    Keyring,
    KeyringError,
    WrappedKeyring,
    open_sealed,
    read_wrapped,
    seal_to,
)

log = logging.getLogger(__name__)

UNSEALED = "rr:keys:unsealed"  # the fingerprint of the keyring now in memory somewhere
EPOCH = "rr:keys:epoch"  # bumped by every seal: a holder from an earlier epoch stops
EVENTS = "rr:keys:events"
WANT = "rr:keys:want:"
WANTING = "rr:keys:wanting"  # the ids of the requests waiting (no SCAN of the keyspace)
GIVE = "rr:keys:give:"
# What arrived while sealed and is not stored yet, per web host's spool: workers hold
# their sends until it is (a STOP kept while sealed must be applied before any send).
INTAKE_PENDING = "rr:keys:intake-pending"
ASK_SECONDS = 30  # a request (and its answer) expires after this
CHECK_SECONDS = 1.0  # how often a holder looks for a seal it may have missed
INTAKE_WAIT_SECONDS = 120  # at most this long; then a host that never unsealed is skipped
PURPOSE = "keyring handoff"


def is_unsealed(redis: Redis, wrapped: WrappedKeyring) -> bool:
    return _text(redis.get(UNSEALED)) == wrapped.fingerprint


def current_epoch(redis: Redis) -> int:
    return int(_text(redis.get(EPOCH)) or 0)


def mark_unsealed(redis: Redis, keyring: Keyring) -> int:
    """Say the deployment is unsealed (by ``keys unseal``); the epoch its holders serve."""
    redis.set(UNSEALED, keyring.fingerprint())
    return current_epoch(redis)


def seal(redis: Redis) -> int:
    """The panic seal: every holder drops its keys within seconds, and answers not yet
    collected are withdrawn. The new epoch."""
    with redis.pipeline() as pipe:
        pipe.delete(UNSEALED)
        pipe.incr(EPOCH)
        pipe.publish(EVENTS, "seal")
        _, epoch, _ = pipe.execute()
    for request in redis.smembers(WANTING):
        redis.delete(GIVE + _text(request))
    for key in redis.scan_iter(match=GIVE + "*", count=100):  # answered, not collected
        redis.delete(key)
    log.warning("the deployment was sealed")
    return int(epoch)


def ask_for_keys(
    redis: Redis,
    wrapped: WrappedKeyring,
    role: str,
    timeout: float | None = None,
    resend_seconds: float = 5.0,
) -> Keyring | None:
    """Wait for a holder to hand over the keyring. None if ``timeout`` passed first.

    A keyring is taken only if it is this deployment's (its fingerprint) and the
    deployment is still unsealed when it arrives (an answer from just before a seal is
    dropped)."""
    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    request = secrets.token_hex(16)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while deadline is None or time.monotonic() < deadline:
            _announce(redis, request, public, role)
            left = resend_seconds if deadline is None else deadline - time.monotonic()
            answer = redis.blpop([GIVE + request], timeout=max(min(left, resend_seconds), 0.01))
            if answer is None or not isinstance(answer[1], bytes):
                continue
            keyring = _open_answer(answer[1], private, request, wrapped)
            if keyring is not None and is_unsealed(redis, wrapped):
                return keyring
        return None
    finally:
        with redis.pipeline() as pipe:
            pipe.delete(WANT + request)
            pipe.srem(WANTING, request)
            pipe.execute()


def answer_waiting(redis: Redis, keyring: Keyring) -> int:
    """Hand the keyring to every process waiting for it now. How many were answered."""
    answered = 0
    for request in redis.smembers(WANTING):
        if _answer(redis, keyring, _text(request)):
            answered += 1
    return answered


def note_intake_pending(redis: Redis, where: str) -> None:
    """A sealed web process kept something at ``where`` (its host and spool)."""
    redis.hset(INTAKE_PENDING, where, int(time.time()))


def intake_stored(redis: Redis, where: str) -> None:
    redis.hdel(INTAKE_PENDING, where)


def wait_for_intake(redis: Redis, timeout: float = INTAKE_WAIT_SECONDS) -> bool:
    """Wait until what arrived while sealed is stored everywhere (STOPs applied). False
    if some host's intake was still waiting after ``timeout`` (its web not unsealed)."""
    deadline = time.monotonic() + timeout
    while redis.hlen(INTAKE_PENDING):
        if time.monotonic() >= deadline:
            log.warning("texts kept while sealed are not stored everywhere yet; sending anyway")
            return False
        time.sleep(0.5)
    return True


class KeyHolder:
    """Holds a keyring in this process: answers processes that ask, and stops at a seal.

    ``on_seal`` runs once, in the holder's thread, when the deployment is sealed (or was
    sealed and unsealed again while this process was not looking), or when the holder
    itself fails: it must make the process let go of its keys, by exiting or by dropping
    every object that holds them. It fails closed: only ``stop()`` ends it without a seal.
    """

    def __init__(
        self,
        redis: Redis,
        keyring: Keyring,
        on_seal: Callable[[], None],
        epoch: int | None = None,
    ) -> None:
        self.redis = redis
        self.keyring = keyring
        self.on_seal = on_seal
        self.epoch = epoch
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rapidresponse-keys", daemon=True)

    def start(self) -> KeyHolder:
        if self.epoch is None:
            self.epoch = current_epoch(self.redis)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def still_unsealed(self) -> bool:
        try:
            with self.redis.pipeline() as pipe:
                pipe.get(UNSEALED)
                pipe.get(EPOCH)
                fingerprint, epoch = pipe.execute()
        except RedisError:
            return True  # Redis away is not a seal: keep serving what needs no handoff
        same_keyring = _text(fingerprint) == self.keyring.fingerprint()
        return same_keyring and int(_text(epoch) or 0) == self.epoch

    def _run(self) -> None:
        try:
            self._serve()
        except Exception:
            log.exception("key holder failed: letting go of the keys")
        if not self.stopped.is_set():
            log.warning("sealed: this process lets go of its keys")
            self.stopped.set()
            self.on_seal()

    def _serve(self) -> None:
        pubsub = None
        next_check = 0.0
        try:
            while not self.stopped.is_set():
                try:
                    if time.monotonic() >= next_check:
                        next_check = time.monotonic() + CHECK_SECONDS
                        if not self.still_unsealed():
                            return
                        answer_waiting(self.redis, self.keyring)  # announcements missed
                    if pubsub is None:
                        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                        pubsub.subscribe(EVENTS)
                    message = pubsub.get_message(timeout=CHECK_SECONDS)
                    data = "" if message is None else _text(message["data"])
                    if data == "seal" and not self.still_unsealed():
                        return
                    if data.startswith("want:") and self.still_unsealed():
                        _answer(self.redis, self.keyring, data.removeprefix("want:"))
                except (RedisError, OSError) as error:
                    log.warning("key holder: Redis unavailable (%s)", type(error).__name__)
                    if pubsub is not None:
                        pubsub.close()
                    pubsub = None
                    self.stopped.wait(CHECK_SECONDS)
        finally:
            if pubsub is not None:
                pubsub.close()


def wait_for_keyring(
    settings: Settings, redis: Redis, role: str, timeout: float | None = None
) -> tuple[Settings, Keyring | None]:
    """The settings with keys: as they are unless sealed; else once a holder hands the
    keyring over (None for the keyring if ``timeout`` passed first)."""
    if settings.custody != "sealed" or settings.holds_keys:
        return settings, None
    wrapped = read_wrapped(settings.keyring_path)
    if timeout is None:
        log.warning("sealed: waiting for the keys ('rapidresponse keys unseal')")
    keyring = ask_for_keys(redis, wrapped, role, timeout)
    if keyring is None:
        return settings, None
    log.info("keys received")
    return settings.with_keyring(keyring), keyring


def who_am_i(role: str) -> str:
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


def _announce(redis: Redis, request: str, public: bytes, role: str) -> None:
    with redis.pipeline() as pipe:
        pipe.sadd(WANTING, request)
        pipe.hset(
            WANT + request, mapping={"public": base64.b64encode(public), "who": who_am_i(role)}
        )
        pipe.expire(WANT + request, ASK_SECONDS)
        pipe.publish(EVENTS, f"want:{request}")
        pipe.execute()


def _answer(redis: Redis, keyring: Keyring, request: str) -> bool:
    public = redis.hget(WANT + request, "public")
    if public is None or not redis.delete(WANT + request):
        redis.srem(WANTING, request)
        return False  # gone (expired, or its asker gave up), or another holder took it first
    redis.srem(WANTING, request)
    try:
        sealed = seal_to(base64.b64decode(public), keyring.to_bytes(), PURPOSE + request)
    except ValueError:
        return False  # not a public key
    with redis.pipeline() as pipe:
        pipe.rpush(GIVE + request, sealed)
        pipe.expire(GIVE + request, ASK_SECONDS)
        pipe.execute()
    log.info("keys handed to a process that asked")
    return True


def _open_answer(
    sealed: bytes, private: X25519PrivateKey, request: str, wrapped: WrappedKeyring
) -> Keyring | None:
    try:
        keyring = Keyring.from_bytes(
            open_sealed(private.private_bytes_raw(), sealed, PURPOSE + request)
        )
    except KeyringError:
        log.warning("an answer with keys did not open; still waiting")
        return None
    if keyring.fingerprint() != wrapped.fingerprint:
        log.warning("an answer held another keyring (not this deployment's); still waiting")
        return None
    return keyring


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)

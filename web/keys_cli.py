"""``rapidresponse keys ...``: make the sealed keyring, unseal, seal, and look.

See ``rapidresponse.keyring`` (what is stored, and how it opens) and
``dispatch.key_custody`` (how the keys reach processes and how a seal takes them away).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable

import click
from flask.cli import AppGroup
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from dispatch import key_custody
from dispatch.redis_conn import connect
from dispatch.spool import SealedIntake
from rapidresponse.config import GENERATED_SECRETS, SECRETS_FILENAME, ConfigError, Settings
from rapidresponse.db import Database
from rapidresponse.keyring import (
    MIN_PASSPHRASE_LENGTH,
    Keyring,
    KeyringError,
    WrappedKeyring,
    phrase_is_valid,
    read_wrapped,
    split_into_shares,
    unwrap_with_passphrase,
    unwrap_with_shares,
    wrap_with_passphrase,
    write_wrapped,
)
from rapidresponse.models import Responder, StaffUser, Subscriber
from rapidresponse.private_dirs import destroy_file
from rapidresponse.shredding import ShredKeys

HOLD_SECONDS = 60


@click.group("keys", cls=AppGroup)
def keys_group() -> None:
    """The sealed keyring: init, unseal, seal, status."""


@keys_group.command("init", with_appcontext=False)
@click.option("--shares", type=click.IntRange(1, 16), default=5, show_default=True)
@click.option(
    "--threshold",
    type=click.IntRange(1, 16),
    default=3,
    show_default=True,
    help="How many of the shares open the keyring.",
)
@click.option(
    "--passphrase", "use_passphrase", is_flag=True, help="One passphrase instead of shares."
)
@click.option(
    "--new-deployment",
    is_flag=True,
    help="Make new keys although data is stored (it becomes unreadable).",
)
@click.option("--yes", is_flag=True, help="Do not ask whether the shares are written down.")
def keys_init_command(
    shares: int, threshold: int, use_passphrase: bool, new_deployment: bool, yes: bool
) -> None:
    """Seal this deployment's keys into KEYRING_FILE (once).

    The keys in use now (SECRET_KEY, DATA_KEYS and INDEX_KEY from the environment, or
    development's instance/secrets.json) are kept, so nothing stored is lost; the shred
    key files are rewrapped. Then take the keys out of the environment.
    """
    settings, invented = _settings_for_init()
    if settings.custody == "sealed":
        raise click.ClickException(f"{settings.keyring_path} exists: this deployment is sealed")
    if invented and not new_deployment and (found := _stored_data(settings)):
        raise click.ClickException(
            f"no keys were found (SECRET_KEY, DATA_KEYS, INDEX_KEY or their _FILE), but {found} "
            "is stored here: set the keys in use, so that the keyring keeps them. New keys "
            "would make it all unreadable (--new-deployment if that is really wanted)."
        )
    keyring = Keyring.generate(settings.secret_key, settings.data_keys, settings.index_key)
    try:
        if use_passphrase:
            wrapped = wrap_with_passphrase(keyring, _new_passphrase())
        else:
            split = split_into_shares(keyring, threshold, shares)
            wrapped = split.wrapped
            _print_phrases(split.phrases, threshold)
            if not yes:
                click.confirm("Is every share written down?", abort=True)
        # Nothing is changed before this point: without the shares, nothing is lost.
        write_wrapped(settings.keyring_path, wrapped)
    except KeyringError as error:
        raise click.ClickException(str(error)) from None
    rewrapped = ShredKeys(settings.shred_keys_path, keyring.shred_wrap_key).wrap_existing()
    destroy_file(settings.instance_path / SECRETS_FILENAME)  # its keys are in the keyring
    click.echo(
        f"Sealed keyring written to {settings.keyring_path} ({rewrapped} shred keys rewrapped)."
    )
    if settings.custody == "environment" and not invented:
        click.echo(
            "Now remove SECRET_KEY, DATA_KEYS and INDEX_KEY (and their _FILE secrets) from "
            "this deployment: the processes refuse to start while both exist. Destroy the "
            "old key files too (shred -u), and any copy of them: they still open the data."
        )
    click.echo("Every start is sealed until 'rapidresponse keys unseal'.")


def _stored_data(settings: Settings) -> str | None:
    """What this deployment already holds that new keys would lose, if anything."""
    if any(settings.shred_keys_path.glob("*.key")):
        return "a shred key"
    database = Database(settings.database_url)
    try:
        with database.session() as session:
            tables = set(inspect(session.connection()).get_table_names())
            for model in (Subscriber, StaffUser, Responder):
                if model.__tablename__ in tables and session.scalar(
                    select(func.count()).select_from(model)
                ):
                    return f"data ({model.__tablename__})"
    except SQLAlchemyError:
        return "a database that could not be read"
    finally:
        database.dispose()
    return None


@keys_group.command("unseal", with_appcontext=False)
@click.option(
    "--hold",
    type=click.IntRange(1, 3600),
    default=HOLD_SECONDS,
    show_default=True,
    help="Seconds to keep handing the keys to processes that ask.",
)
def keys_unseal_command(hold: int) -> None:
    """Open the keyring with shares (or the passphrase) and hand it to the processes."""
    settings, wrapped = _sealed_settings()
    keyring = _unwrap_interactively(wrapped)
    redis = connect(_redis_url(settings))
    key_custody.mark_unsealed(redis, keyring)
    handed = key_custody.answer_waiting(redis, keyring)
    click.echo(f"Unsealed. Keys handed to {handed} waiting process(es).")
    holder = key_custody.KeyHolder(redis, keyring, on_seal=lambda: None).start()
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline and not holder.stopped.is_set():
        time.sleep(0.2)
    holder.stop()
    click.echo("Running processes hold the keys now; this command forgets them.")


@keys_group.command("seal", with_appcontext=False)
def keys_seal_command() -> None:
    """Panic seal: every process drops its keys within seconds. Needs no key."""
    settings, _ = _sealed_settings()
    epoch = key_custody.seal(connect(_redis_url(settings)))
    click.echo(f"Sealed (epoch {epoch}). Processes let go of their keys within seconds.")


@keys_group.command("status", with_appcontext=False)
def keys_status_command() -> None:
    """Sealed or unsealed, and what waits for the keys."""
    settings, wrapped = _sealed_settings()
    redis = connect(_redis_url(settings))
    state = "unsealed" if key_custody.is_unsealed(redis, wrapped) else "sealed"
    waiting = sum(1 for _ in redis.scan_iter(match=key_custody.WANT + "*", count=100))
    kept = SealedIntake(settings.spool_path, wrapped.intake_public).waiting()
    how = (
        "a passphrase"
        if wrapped.scheme == "passphrase"
        else f"{wrapped.threshold} of {wrapped.shares} shares"
    )
    click.echo(f"{state}; opens with {how}; fingerprint {wrapped.fingerprint[:16]}")
    click.echo(
        f"processes waiting for keys: {waiting}; texts kept while sealed (this host): {kept}"
    )


def _settings_for_init() -> tuple[Settings, bool]:
    """The settings, with fresh keys where a new production deployment has none yet.
    Whether the keys were made here."""
    environ = dict(os.environ)
    has_keys = any(environ.get(name) or environ.get(f"{name}_FILE") for name in GENERATED_SECRETS)
    invented = not has_keys and environ.get("RR_ENV") == "production"
    if invented:
        fresh = Keyring.generate()
        environ |= {
            "SECRET_KEY": fresh.secret_key,
            "DATA_KEYS": base64.b64encode(fresh.data_keys[0]).decode(),
            "INDEX_KEY": base64.b64encode(fresh.index_key).decode(),
        }
    try:
        return Settings.from_env(environ), invented
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _current_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _sealed_settings() -> tuple[Settings, WrappedKeyring]:
    settings = _current_settings()
    if settings.custody != "sealed":
        raise click.ClickException(
            "this deployment has no sealed keyring (KEYRING_FILE): 'rapidresponse keys init'"
        )
    try:
        return settings, read_wrapped(settings.keyring_path)
    except KeyringError as error:
        raise click.ClickException(str(error)) from None


def _redis_url(settings: Settings) -> str:
    if settings.redis_url is not None:
        return settings.redis_url
    from dispatch.redis_conn import EmbeddedRedis

    # The embedded Redis of this instance, started by 'rapidresponse web' (or now).
    return EmbeddedRedis(settings.instance_path / "redis").start()


def _unwrap_interactively(wrapped: WrappedKeyring) -> Keyring:
    if wrapped.scheme == "passphrase":
        return _until_it_opens(lambda: unwrap_with_passphrase(wrapped, _ask_passphrase()))
    click.echo(f"{wrapped.threshold} of the {wrapped.shares} shares open the keyring.")
    phrases: list[str] = []
    while len(phrases) < wrapped.threshold:
        phrase = _ask(f"Share {len(phrases) + 1} of {wrapped.threshold}")
        if not phrase_is_valid(phrase):
            click.echo("That share is mistyped (its checksum fails): check each word, again.")
        elif phrase in phrases:
            click.echo("That share was already given: the next person's, please.")
        else:
            phrases.append(phrase)
    try:
        return unwrap_with_shares(wrapped, phrases)
    except KeyringError as error:
        raise click.ClickException(str(error)) from None


def _until_it_opens(attempt: Callable[[], Keyring], tries: int = 3) -> Keyring:
    for left in range(tries - 1, -1, -1):
        try:
            return attempt()
        except KeyringError as error:
            if left == 0:
                raise click.ClickException(str(error)) from None
            click.echo(f"{error}; {left} more {'try' if left == 1 else 'tries'}.")
    raise AssertionError("unreachable")


def _ask(label: str) -> str:
    """A share, as typed (case and spacing do not matter to a SLIP-39 phrase)."""
    return " ".join(str(click.prompt(label, hide_input=True)).lower().split())


def _ask_passphrase() -> str:
    """The passphrase exactly as typed: its case matters."""
    return str(click.prompt("Passphrase", hide_input=True))


def _new_passphrase() -> str:
    click.echo(
        f"At least {MIN_PASSPHRASE_LENGTH} characters: four or five words nobody would guess."
    )
    return str(click.prompt("New passphrase", hide_input=True, confirmation_prompt=True))


def _print_phrases(phrases: list[str], threshold: int) -> None:
    for number, phrase in enumerate(phrases, start=1):
        click.echo(f"\nShare {number} of {len(phrases)} (any {threshold} open the keyring):")
        click.echo(f"  {phrase}")
    if phrases:
        click.echo(
            "\nGive each share to a different person, on paper. Never store one on this "
            "server or beside another: whoever holds enough of them holds every key.\n"
        )

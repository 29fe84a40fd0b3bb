"""`rapidresponse keys`: init keeps the keys in use (nothing stored is lost) and takes
them off the disk; a wrong passphrase is refused; status says what holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dispatch.services import Services
from rapidresponse.config import ConfigError, Settings, parse_data_keys
from rapidresponse.keyring import read_wrapped, unwrap_with_passphrase, unwrap_with_shares
from rapidresponse.shredding import ShredKeys, incident_key
from tests.factories import add_subscriber
from web.cli import cli

PASSPHRASE = "Our Kitchen Table meets on Tuesdays"
KEY_NAMES = ("SECRET_KEY", "DATA_KEYS", "INDEX_KEY")


def invoke(environ: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    # Variables absent from ``environ`` are unset, not inherited from the test process.
    unset = {name: None for name in KEY_NAMES if name not in environ}
    return CliRunner().invoke(cli, list(args), env={**environ, **unset}, input=stdin)


def without_keys(environ: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in environ.items() if name not in KEY_NAMES}


def test_keys_from_the_environment_move_into_a_passphrase_keyring(
    environ: dict[str, str], redis_url: str
) -> None:
    before = Settings.from_env(environ)
    made = invoke(environ, "keys", "init", "--passphrase", stdin=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    assert made.exit_code == 0, made.output
    assert "remove SECRET_KEY, DATA_KEYS and INDEX_KEY" in made.output
    assert PASSPHRASE not in made.output
    with pytest.raises(ConfigError, match="unset SECRET_KEY"):
        Settings.from_env(environ)  # both at once is refused, not silently preferred

    sealed = without_keys(environ)
    keyring = unwrap_with_passphrase(read_wrapped(before.keyring_path), PASSPHRASE)
    assert keyring.data_keys == before.data_keys and keyring.index_key == before.index_key
    assert keyring.secret_key == before.secret_key
    again = invoke(sealed, "keys", "init", "--passphrase", stdin=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    assert again.exit_code == 1 and "exists" in again.output

    status = invoke(sealed, "keys", "status")
    assert status.exit_code == 0, status.output
    assert "sealed; opens with a passphrase" in status.output

    wrong = invoke(sealed, "keys", "unseal", "--hold", "1", stdin="no\nnot it\nstill not\n")
    assert wrong.exit_code == 1 and "wrong passphrase; 2 more tries" in wrong.output
    assert "sealed;" in invoke(sealed, "keys", "status").output
    lowered = invoke(sealed, "keys", "unseal", "--hold", "1", stdin=f"{PASSPHRASE.lower()}\n" * 3)
    assert lowered.exit_code == 1  # its case matters
    opened = invoke(sealed, "keys", "unseal", "--hold", "1", stdin=f"{PASSPHRASE}\n")
    assert opened.exit_code == 0, opened.output
    assert "Unsealed." in opened.output
    assert "unsealed;" in invoke(sealed, "keys", "status").output


def test_a_development_instance_loses_its_plain_keys_and_bare_shred_keys(
    environ: dict[str, str],
) -> None:
    dev = without_keys(environ)
    settings = Settings.from_env(dev)
    assert settings.custody == "development"
    secrets = settings.instance_path / "secrets.json"
    assert secrets.exists()
    bare = ShredKeys(settings.shred_keys_path).key(incident_key(1))

    unsure = invoke(dev, "keys", "init", "--shares", "1", "--threshold", "1", stdin="n\n")
    assert unsure.exit_code == 1 and "Is every share written down?" in unsure.output
    assert secrets.exists() and not settings.keyring_path.exists()  # nothing changed
    made = invoke(dev, "keys", "init", "--shares", "1", "--threshold", "1", stdin="y\n")
    assert made.exit_code == 0, made.output
    assert "1 shred keys rewrapped" in made.output
    assert not secrets.exists()
    phrase = made.output.split("Share 1 of 1 (any 1 open the keyring):\n  ")[1].splitlines()[0]
    keyring = unwrap_with_shares(read_wrapped(settings.keyring_path), [phrase])
    assert keyring.data_keys == settings.data_keys
    stored = Path(settings.shred_keys_path / "incident-1.key").read_bytes()
    assert bare not in stored
    assert ShredKeys(settings.shred_keys_path, keyring.shred_wrap_key).key(incident_key(1)) == bare
    assert Settings.from_env(dev).custody == "sealed"


def test_bad_choices_are_clear_errors(environ: dict[str, str]) -> None:
    short = invoke(environ, "keys", "init", "--passphrase", stdin="too short\ntoo short\n")
    assert short.exit_code == 1 and "at least 20 characters" in short.output
    many = invoke(environ, "keys", "init", "--shares", "3", "--threshold", "4")
    assert many.exit_code == 1 and "threshold" in many.output
    assert not Settings.from_env(environ).keyring_path.exists()
    for command in ("unseal", "seal", "status"):
        unsealed = invoke(environ, "keys", command)
        assert unsealed.exit_code == 1 and "no sealed keyring" in unsealed.output


def test_data_keys_parse_as_before(environ: dict[str, str]) -> None:
    assert Settings.from_env(environ).data_keys == parse_data_keys(environ["DATA_KEYS"])


def test_new_keys_are_refused_where_data_is_stored(
    environ: dict[str, str], services: Services
) -> None:
    """A production deployment that forgot to pass its keys to `keys init` would lose
    everything to fresh ones: it is refused, unless asked for in so many words."""
    production = {**without_keys(environ), "RR_ENV": "production", "SMS_BACKEND": "twilio"}
    production |= {
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "token",
        "TWILIO_FROM": "+15035550100",
    }
    add_subscriber(services, "+15035550142")
    refused = invoke(production, "keys", "init", "--yes")
    assert refused.exit_code == 1 and "data (subscribers) is stored here" in refused.output
    assert not Settings.from_env(environ).keyring_path.exists()
    forced = invoke(production, "keys", "init", "--yes", "--new-deployment")
    assert forced.exit_code == 0, forced.output
    assert "Now remove" not in forced.output  # there were none to remove

"""Settings: defaults, generated development secrets, production strictness, clear errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rapidresponse.config import ConfigError, Settings, new_key

ACCOUNT_SID = "AC" + "1" * 32
TWILIO = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": "token",
    "TWILIO_FROM": "+15035550100",
}


def load(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"INSTANCE_PATH": str(tmp_path / "instance"), **env})


def production(tmp_path: Path, **env: str) -> dict[str, str]:
    return {
        "RR_ENV": "production",
        "SECRET_KEY": "s" * 40,
        "DATA_KEYS": new_key(),
        "INDEX_KEY": new_key(),
        "PUBLIC_URL": "https://rr.example.org",
        "INSTANCE_PATH": str(tmp_path / "instance"),
        **env,
    }


def test_defaults_run_on_embedded_services(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.env == "development"
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("instance/rapidresponse.sqlite3")
    assert settings.redis_url is None
    assert settings.sms_backend == "simulator"
    assert settings.alert_policy == "approve"
    assert settings.verify_quorum == 1
    assert settings.send_rate == 3.0


def test_development_secrets_are_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = load(tmp_path)
    second = load(tmp_path)
    assert first.secret_key == second.secret_key
    assert first.data_keys == second.data_keys and first.index_key == second.index_key
    secrets_file = tmp_path / "instance" / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "instance").stat().st_mode) == 0o700


def test_secrets_are_not_in_the_settings_repr(tmp_path: Path) -> None:
    settings = load(tmp_path, TWILIO_AUTH_TOKEN="supersecrettoken")
    assert settings.secret_key not in repr(settings)
    assert "supersecrettoken" not in repr(settings)


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATA_KEYS", "INDEX_KEY"])
def test_production_refuses_to_start_without_a_secret(tmp_path: Path, missing: str) -> None:
    env = production(tmp_path)
    del env[missing]
    with pytest.raises(ConfigError, match=f"^{missing} is required when RR_ENV=production"):
        Settings.from_env(env)
    assert not (tmp_path / "instance" / "secrets.json").exists()


def test_production_starts_with_every_secret_given(tmp_path: Path) -> None:
    assert Settings.from_env(production(tmp_path, **TWILIO)).is_production


def test_production_needs_an_https_public_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PUBLIC_URL must use https"):
        Settings.from_env(production(tmp_path, PUBLIC_URL="http://rr.example.org"))


def test_a_secret_can_come_from_a_file(tmp_path: Path) -> None:
    key = new_key()
    (tmp_path / "index.key").write_text(key + "\n")
    settings = load(tmp_path, INDEX_KEY_FILE=str(tmp_path / "index.key"))
    assert (
        settings.index_key
        == Settings.from_env({"INDEX_KEY": key, "INSTANCE_PATH": str(tmp_path / "other")}).index_key
    )


def test_a_secret_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^DATA_KEYS_FILE: cannot read"):
        load(tmp_path, DATA_KEYS_FILE=str(tmp_path / "missing.key"))


def test_a_secret_given_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(new_key())
    with pytest.raises(ConfigError, match="either INDEX_KEY or INDEX_KEY_FILE"):
        load(tmp_path, INDEX_KEY=new_key(), INDEX_KEY_FILE=str(tmp_path / "k"))


def test_data_keys_are_newest_first(tmp_path: Path) -> None:
    newest, older = new_key(), new_key()
    settings = load(tmp_path, DATA_KEYS=f"{newest}, {older}")
    assert len(settings.data_keys) == 2
    assert (
        settings.data_keys[0]
        == Settings.from_env({"DATA_KEYS": newest, "INSTANCE_PATH": str(tmp_path / "x")}).data_keys[
            0
        ]
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RR_ENV", "staging", "RR_ENV must be one of development, production"),
        ("QUIET_HOURS", "9pm-8am", "QUIET_HOURS must be two local times"),
        ("QUIET_HOURS", "21:00-21:00", "QUIET_HOURS must be two local times"),
        ("QUIET_HOURS", "25:00-08:00", "QUIET_HOURS must be two local times"),
        ("ANNOUNCEMENTS_PER_WEEK", "0", "ANNOUNCEMENTS_PER_WEEK must be at least 1"),
        ("SEND_RATE", "fast", "SEND_RATE must be messages per second"),
        ("SEND_RATE", "-3", "SEND_RATE must be messages per second"),
        ("VERIFY_QUORUM", "0", "VERIFY_QUORUM must be at least 1"),
        ("VERIFY_QUORUM", "two", "VERIFY_QUORUM must be a whole number"),
        ("ALERT_POLICY", "yolo", "ALERT_POLICY must be one of approve, auto"),
        ("SMS_BACKEND", "pigeon", "SMS_BACKEND must be one of simulator, twilio"),
        ("DATABASE_URL", "mysql://db/rr", "DATABASE_URL must be a sqlite:/// or postgresql://"),
        ("REDIS_URL", "http://localhost", "REDIS_URL must be a redis://"),
        ("VOLATILE_REDIS_URL", "file:///tmp/x", "VOLATILE_REDIS_URL must be a redis://"),
        ("REPORTER_WINDOW_MINUTES", "0", "REPORTER_WINDOW_MINUTES must be at least 1"),
        ("REPORTER_WINDOW_MINUTES", "20", "REPORTER_WINDOW_MINUTES must be at least REPORT_FOLLOW"),
        ("PUBLIC_URL", "rr.example.org", "PUBLIC_URL must be an http"),
        ("TWILIO_API_URL", "ftp://x", "TWILIO_API_URL must be an http"),
        ("TWILIO_ACCOUNT_SID", "AC123", "TWILIO_ACCOUNT_SID must look like AC"),
        ("TWILIO_FROM", "555-0100", "TWILIO_FROM must be an E.164 number"),
        ("DATA_KEYS", "c2hvcnQ=", "DATA_KEYS must be base64 of 32 random bytes"),
        ("INDEX_KEY", "not base64!!", "INDEX_KEY must be base64 of 32 random bytes"),
        ("PHONE_REGION", "USA", "PHONE_REGION must be a two-letter country code"),
        ("PUBLIC_URL", "https://rr.example.org/?x=1", "PUBLIC_URL must not have a query"),
        ("PUBLIC_URL", "https://rr.example.org/#top", "PUBLIC_URL must not have a query"),
        ("DATABASE_URL", "sqlitex:///x.db", "DATABASE_URL must be a sqlite:///"),
        ("DATABASE_URL", "postgresql+asyncpg://db/rr", "DATABASE_URL must be a sqlite:///"),
        ("SMS_INBOUND_LIMIT", "0/hour", "SMS_INBOUND_LIMIT must look like 30/hour"),
        ("SOCKET_URL", "rr.example.org:5001", "SOCKET_URL must be an http"),
        ("SOCKET_URL", "https://rr.example.org/socket.io/", "SOCKET_URL must be an origin"),
        ("WEB_PROCESSES", "0", "WEB_PROCESSES must be at least 1"),
        ("WEB_PROCESSES", "many", "WEB_PROCESSES must be a whole number"),
    ],
)
def test_a_bad_value_names_its_variable(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        load(tmp_path, **{name: value})


def test_twilio_is_chosen_when_credentials_are_given(tmp_path: Path) -> None:
    settings = load(
        tmp_path, TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN="t", TWILIO_FROM="+15035550100"
    )
    assert settings.sms_backend == "twilio"


def test_twilio_without_an_auth_token_refuses_to_start(tmp_path: Path) -> None:
    # Without the token, webhook signatures could not be checked: fail closed.
    with pytest.raises(ConfigError, match=r"^TWILIO_AUTH_TOKEN is required"):
        load(
            tmp_path,
            SMS_BACKEND="twilio",
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_FROM="+15035550100",
        )


def test_a_messaging_service_can_be_the_sender(tmp_path: Path) -> None:
    assert load(tmp_path, TWILIO_FROM="MG" + "a" * 32).twilio_from == "MG" + "a" * 32


def test_postgres_urls_use_psycopg_3(tmp_path: Path) -> None:
    settings = load(tmp_path, DATABASE_URL="postgres://u@db/rr")
    assert settings.database_url == "postgresql+psycopg://u@db/rr"


def test_the_command_stops_with_one_clear_line(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "INSTANCE_PATH": str(tmp_path), "SEND_RATE": "fast"}
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "init-db"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rapidresponse: configuration error: SEND_RATE must be messages per second "
        "(0-10000) or 'unlimited' (got 'fast')"
    ]


@pytest.mark.parametrize("name", ["SMS_INBOUND_LIMIT", "SMS_CONFIRMATION_LIMIT"])
def test_abuse_limits_are_configurable_and_checked(tmp_path: Path, name: str) -> None:
    attribute = "inbound_limit" if name == "SMS_INBOUND_LIMIT" else "confirmation_limit"
    assert getattr(load(tmp_path, **{name: "10 per hour"}), attribute) == "10 per hour"
    with pytest.raises(ConfigError, match=f"^{name} must look like 30/hour"):
        load(tmp_path, **{name: "lots"})


def test_processes_starting_at_once_share_one_set_of_secrets(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from rapidresponse.config import load_or_create_dev_secrets

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: load_or_create_dev_secrets(tmp_path), range(32)))
    assert all(result == results[0] for result in results)
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.json"]  # no temporary left


def test_production_refuses_the_simulator(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^SMS_BACKEND=simulator is for development"):
        Settings.from_env(production(tmp_path, SMS_BACKEND="simulator"))


@pytest.mark.parametrize(
    ("name", "attribute", "default"),
    [
        ("REPORT_MERGE_MINUTES", "report_merge_minutes", 30),
        ("REPORT_MERGE_METERS", "report_merge_meters", 1500),
        ("REPORT_FOLLOW_UP_MINUTES", "report_follow_up_minutes", 30),
        ("SECOND_WAVE_MINUTES", "second_wave_minutes", 30),
        ("DISPATCH_ACK_SECONDS", "ack_timeout_seconds", 300),
        ("VERIFY_DEADLINE_SECONDS", "verify_deadline_seconds", 2700),
        ("REPORT_RETENTION_DAYS", "report_retention_days", 30),
        ("TRUSTED_PROXIES", "trusted_proxies", 0),
    ],
)
def test_intake_and_dispatch_timings_are_configurable(
    tmp_path: Path, name: str, attribute: str, default: int
) -> None:
    assert getattr(load(tmp_path), attribute) == default
    assert getattr(load(tmp_path, **{name: "7"}), attribute) == 7
    with pytest.raises(ConfigError, match=f"^{name} must be"):
        load(tmp_path, **{name: "soon"})


def test_the_socket_server_is_named_by_its_origin(tmp_path: Path) -> None:
    assert load(tmp_path).socket_url == ""  # the page's own origin: a proxy routes it
    given = load(tmp_path, SOCKET_URL="https://rr.example.org:5001/")
    assert given.socket_url == "https://rr.example.org:5001"


def test_the_signature_is_configurable_per_language_and_kept_short(tmp_path: Path) -> None:
    default = load(tmp_path)
    assert (default.org_name, default.org_name_es) == ("Rapid Response", "Rapid Response")
    named = load(tmp_path, ORG_NAME="PDX Rapid Response")
    assert (named.org_name, named.org_name_es) == ("PDX Rapid Response", "PDX Rapid Response")
    both = load(tmp_path, ORG_NAME="PDX Rapid Response", ORG_NAME_ES="Red PDX")
    assert both.org_name_es == "Red PDX"
    for bad in ("x" * 25, "Respuesta 🚨"):
        with pytest.raises(ConfigError, match=r"^ORG_NAME must be 1 to 24 plain characters"):
            load(tmp_path, ORG_NAME=bad)


def test_quiet_hours_are_read_or_turned_off(tmp_path: Path) -> None:
    from datetime import time

    base = {"INSTANCE_PATH": str(tmp_path / "x")}
    assert Settings.from_env(base).quiet_hours == (time(21), time(8))
    assert Settings.from_env({**base, "QUIET_HOURS": "22:30 - 7:15"}).quiet_hours == (
        time(22, 30),
        time(7, 15),
    )
    assert Settings.from_env({**base, "QUIET_HOURS": "OFF"}).quiet_hours is None

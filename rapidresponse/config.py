"""Settings read from the environment, once, for the web app, the workers and the CLI.

Every variable is parsed by a small typed helper that fails loudly with a ConfigError
naming the variable, so that a typo stops start-up with one clear line instead of
surfacing as a strange failure during a raid. Every secret may also be given as
``NAME_FILE`` (a path whose contents are the value), as Docker and systemd secrets do.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse as parse_limit

from rapidresponse.keyring import Keyring, KeyringError, read_wrapped
from rapidresponse.private_dirs import private_directory
from rapidresponse.sms import is_gsm7

Environment = Literal["development", "production"]
# Where the keys come from: generated into instance/ (development), the environment (as
# before sealed keyrings; on the disk of whoever holds the host), or a sealed keyring
# unlocked by coordinators and held only in memory (rapidresponse.keyring).
Custody = Literal["development", "environment", "sealed"]
SmsBackend = Literal["simulator", "twilio"]
AlertPolicy = Literal["approve", "auto"]

# Secrets that the development mode generates once and keeps under instance/.
GENERATED_SECRETS = ("SECRET_KEY", "DATA_KEYS", "INDEX_KEY")
SECRETS_FILENAME = "secrets.json"
KEYRING_FILENAME = "keyring.json"
# A sealed deployment's settings before its keyring arrives: no key at all.
SEALED_PLACEHOLDERS = {"SECRET_KEY": "", "DATA_KEYS": "", "INDEX_KEY": ""}
KEY_BYTES = 32
MIN_SECRET_KEY_LENGTH = 32
MAX_VALIDITY_MINUTES = 600

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class ConfigError(ValueError):
    """A setting is missing or malformed. The message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, already validated."""

    env: Environment
    instance_path: Path
    database_url: str
    redis_url: str | None
    secret_key: str = field(repr=False)
    data_keys: tuple[bytes, ...] = field(repr=False)
    index_key: bytes = field(repr=False)
    public_url: str
    sms_backend: SmsBackend
    twilio_account_sid: str | None
    twilio_auth_token: str | None = field(repr=False)
    twilio_from: str | None
    twilio_api_url: str
    send_rate: float | None  # messages per second; None means unlimited
    alert_policy: AlertPolicy
    verify_quorum: int
    phone_region: str
    log_level: str
    inbound_limit: str = "30/hour"  # commands per number (SMS_INBOUND_LIMIT)
    confirmation_limit: str = "5/day"  # confirmation texts per number (SMS_CONFIRMATION_LIMIT)
    ack_timeout_seconds: int = 300  # a paged responder's time to answer GO (DISPATCH_ACK_SECONDS)
    verify_deadline_seconds: int = 2700  # then unverified (VERIFY_DEADLINE_SECONDS)
    report_retention_days: int = 30  # report text kept after its incident closes
    trusted_proxies: int = 0  # reverse proxies in front of web, trusted for X-Forwarded-*
    report_merge_minutes: int = 30  # a report joins an incident with a report this recent
    report_merge_meters: int = 1500  # ... and this close, when both have coordinates
    report_follow_up_minutes: int = 30  # texts this soon after add detail to the same report
    incident_auto_close_hours: int = 24  # decided incidents close themselves after this
    # A report this soon after its area's incident was confirmed corroborates it; later,
    # or after its all-clear, it opens a new incident linked to it (SECOND_WAVE_MINUTES).
    second_wave_minutes: int = 30
    alert_validity_minutes: int = 30  # the carrier drops an alert not delivered by then
    send_concurrency: int = 50  # requests in flight per worker: the unknowable-outcome window
    # WhatsApp: the sender (WHATSAPP_FROM, a number or a Messaging Service sid; without it
    # and with Twilio, WhatsApp carries no alerts), its pace (WHATSAPP_SEND_RATE, messages
    # a second: about 10 per sender) and the portfolio's tier of unique people per 24 h
    # (WHATSAPP_DAILY_LIMIT; None: unlimited).
    whatsapp_from: str | None = None
    whatsapp_send_rate: float = 10.0
    whatsapp_daily_limit: int | None = 250
    delivery_lease_seconds: int = 120  # a claimed delivery is taken back after this
    reaper_seconds: int = 30  # how often expired leases and vanished jobs are looked for
    # Recipients a ledger job writes per transaction (see broadcast.write_segment).
    ledger_segment_rows: int = 10_000
    timezone: str = "America/Los_Angeles"  # local time shown in alerts (TIMEZONE)
    # The signature every alert and follow-up ends with, so a subscriber can tell ours from a
    # forged one (ORG_NAME, and ORG_NAME_ES for the Spanish texts): short, plain GSM-7.
    org_name: str = "Rapid Response"
    org_name_es: str = "Rapid Response"
    staff_idle_minutes: int = 30  # a board left alone this long asks for a new login
    staff_session_hours: int = 12  # and every login ends after this, however busy
    login_limit: str = "10 per 15 minutes"  # failed-or-not login attempts per account and client
    alert_approvers: int = 1  # 2: the two-person rule (a second dispatcher must approve)
    alert_hourly_cap: int = 0  # alerts approved per rolling hour; 0 means no cap
    map_tile_url: str | None = None  # XYZ tile template; off by default (no third party)
    # A Redis that keeps nothing on disk, for what links a reporter's texts (VOLATILE_REDIS_URL)
    volatile_redis_url: str | None = None
    # How long anything links two texts of one reporter (REPORTER_WINDOW_MINUTES): the key
    # that does lives one window plus the follow-up minutes, then is gone.
    reporter_window_minutes: int = 60
    # Delete messages at the provider once stored / final (PROVIDER_REDACTION, on in production)
    provider_redaction: bool = False
    # Where the shred keys live (SHRED_KEYS_DIR): never in the database or Redis
    shred_keys_path: Path = Path("instance/shred-keys")
    # Where a web process keeps, sealed, the texts the database could not take (SPOOL_DIR)
    spool_path: Path = Path("instance/spool")
    # Where browsers open the board's socket (SOCKET_URL): "" is the page's own origin (a
    # reverse proxy routes /socket.io/ to the socket server; the default in production).
    socket_url: str = ""
    # Web processes serving pages and webhooks (WEB_PROCESSES); sockets have their own.
    web_processes: int = 1
    # Announcements wait out these local hours (QUIET_HOURS "21:00-08:00", or "off"), and
    # reach one person at most this many times in 7 days (ANNOUNCEMENTS_PER_WEEK).
    quiet_hours: tuple[time, time] | None = (time(21), time(8))
    announcements_per_week: int = 2
    # Keeping the list alive (off by default): a subscriber nothing reached for this many
    # days is asked "still want alerts?" (RECONFIRM_AFTER_DAYS, 0 = never), and paused if
    # no YES comes within RECONFIRM_WAIT_DAYS.
    reconfirm_after_days: int = 0
    reconfirm_wait_days: int = 14
    custody: Custody = "development"
    # Who may seal from the board (PANIC_SEAL): a coordinator, or also any two staff.
    panic_seal: Literal["coordinator", "two-staff"] = "coordinator"
    # The sealed keyring (KEYRING_FILE): its header is read at start; its keys arrive later.
    keyring_path: Path = Path("instance/keyring.json")
    shred_wrap_key: bytes | None = field(default=None, repr=False)
    intake_public: bytes | None = None  # what arrives while sealed is sealed to this key

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def holds_keys(self) -> bool:
        """False for a sealed deployment's process until a keyring reaches it."""
        return bool(self.data_keys)

    def with_keyring(self, keyring: Keyring) -> Settings:
        """These settings with the keys of an unsealed keyring (kept in memory only)."""
        return replace(
            self,
            secret_key=keyring.secret_key,
            data_keys=keyring.data_keys,
            index_key=keyring.index_key,
            shred_wrap_key=keyring.shred_wrap_key,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings.

        Args:
            environ: the variables to read; ``os.environ`` when omitted.

        Raises:
            ConfigError: a variable is malformed, or a secret is missing in production.
        """
        return _load(_Env(os.environ if environ is None else environ))


class _Env:
    """Reads raw values, honouring NAME_FILE, and reports errors by variable name."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def get(self, name: str) -> str | None:
        direct = self.environ.get(name, "").strip()
        path = self.environ.get(f"{name}_FILE", "").strip()
        if direct and path:
            raise ConfigError(f"{name}: set either {name} or {name}_FILE, not both")
        if path:
            return _read_secret_file(name, path)
        return direct or None

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = (self.get(name) or default).lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)} (got {value!r})")
        return value

    def integer(self, name: str, default: int, minimum: int) -> int:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number (got {raw!r})") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum} (got {value})")
        return value


def _read_secret_file(name: str, path: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}_FILE: cannot read {path} ({exc.__class__.__name__})") from None
    if not value:
        raise ConfigError(f"{name}_FILE: {path} is empty")
    return value


def _load(env: _Env) -> Settings:
    mode = env.choice("RR_ENV", ("development", "production"), "development")
    instance_path = Path(env.get("INSTANCE_PATH") or "instance").resolve()
    keyring_path = Path(env.get("KEYRING_FILE") or instance_path / KEYRING_FILENAME).resolve()
    custody = _custody(env, mode, keyring_path)
    secret_values = (
        _secret_values(env, mode, instance_path) if custody != "sealed" else SEALED_PLACEHOLDERS
    )
    sms_backend = _sms_backend(env)
    settings = Settings(
        env="production" if mode == "production" else "development",
        instance_path=instance_path,
        database_url=_database_url(env, instance_path),
        redis_url=_redis_url(env, "REDIS_URL"),
        volatile_redis_url=_redis_url(env, "VOLATILE_REDIS_URL"),
        secret_key=_secret_key(secret_values["SECRET_KEY"], mode),
        data_keys=parse_data_keys(secret_values["DATA_KEYS"]) if custody != "sealed" else (),
        index_key=parse_key("INDEX_KEY", secret_values["INDEX_KEY"])
        if custody != "sealed"
        else b"",
        custody=custody,
        panic_seal="two-staff"
        if env.choice("PANIC_SEAL", ("coordinator", "two-staff"), "coordinator") == "two-staff"
        else "coordinator",
        keyring_path=keyring_path,
        intake_public=_intake_public(keyring_path) if custody == "sealed" else None,
        public_url=_public_url(env, mode),
        sms_backend="twilio" if sms_backend == "twilio" else "simulator",
        twilio_account_sid=_account_sid(env),
        twilio_auth_token=env.get("TWILIO_AUTH_TOKEN"),
        twilio_from=_twilio_from(env),
        twilio_api_url=_http_url("TWILIO_API_URL", env.get("TWILIO_API_URL"))
        or "https://api.twilio.com",
        send_rate=_send_rate(env),
        alert_policy="auto"
        if env.choice("ALERT_POLICY", ("approve", "auto"), "approve") == "auto"
        else "approve",
        verify_quorum=env.integer("VERIFY_QUORUM", default=1, minimum=1),
        phone_region=_phone_region(env),
        log_level=env.choice("LOG_LEVEL", ("debug", "info", "warning", "error"), "info").upper(),
        inbound_limit=_rate_limit(env, "SMS_INBOUND_LIMIT", "30/hour"),
        confirmation_limit=_rate_limit(env, "SMS_CONFIRMATION_LIMIT", "5/day"),
        ack_timeout_seconds=env.integer("DISPATCH_ACK_SECONDS", default=300, minimum=1),
        verify_deadline_seconds=env.integer("VERIFY_DEADLINE_SECONDS", default=2700, minimum=1),
        report_retention_days=env.integer("REPORT_RETENTION_DAYS", default=30, minimum=0),
        trusted_proxies=env.integer("TRUSTED_PROXIES", default=0, minimum=0),
        report_merge_minutes=env.integer("REPORT_MERGE_MINUTES", default=30, minimum=0),
        report_merge_meters=env.integer("REPORT_MERGE_METERS", default=1500, minimum=0),
        report_follow_up_minutes=env.integer("REPORT_FOLLOW_UP_MINUTES", default=30, minimum=0),
        incident_auto_close_hours=env.integer("INCIDENT_AUTO_CLOSE_HOURS", default=24, minimum=1),
        second_wave_minutes=env.integer("SECOND_WAVE_MINUTES", default=30, minimum=0),
        alert_validity_minutes=_alert_validity(env),
        send_concurrency=env.integer("SEND_CONCURRENCY", default=50, minimum=1),
        whatsapp_from=_whatsapp_from(env),
        whatsapp_send_rate=_whatsapp_send_rate(env),
        whatsapp_daily_limit=_whatsapp_daily_limit(env),
        delivery_lease_seconds=env.integer("DELIVERY_LEASE_SECONDS", default=120, minimum=5),
        reaper_seconds=env.integer("REAPER_SECONDS", default=30, minimum=1),
        ledger_segment_rows=env.integer("LEDGER_SEGMENT_ROWS", default=10_000, minimum=10),
        timezone=_timezone(env),
        org_name=_org_name(env, "ORG_NAME", "Rapid Response"),
        org_name_es=_org_name(env, "ORG_NAME_ES", _org_name(env, "ORG_NAME", "Rapid Response")),
        staff_idle_minutes=env.integer("STAFF_IDLE_MINUTES", default=30, minimum=1),
        staff_session_hours=env.integer("STAFF_SESSION_HOURS", default=12, minimum=1),
        login_limit=_rate_limit(env, "LOGIN_LIMIT", "10 per 15 minutes"),
        alert_approvers=_alert_approvers(env),
        alert_hourly_cap=env.integer("ALERT_HOURLY_CAP", default=0, minimum=0),
        map_tile_url=_map_tile_url(env),
        reporter_window_minutes=env.integer("REPORTER_WINDOW_MINUTES", default=60, minimum=1),
        shred_keys_path=Path(env.get("SHRED_KEYS_DIR") or instance_path / "shred-keys").resolve(),
        spool_path=Path(env.get("SPOOL_DIR") or instance_path / "spool").resolve(),
        socket_url=_socket_url(env),
        web_processes=env.integer("WEB_PROCESSES", default=1, minimum=1),
        quiet_hours=_quiet_hours(env),
        announcements_per_week=env.integer("ANNOUNCEMENTS_PER_WEEK", default=2, minimum=1),
        reconfirm_after_days=env.integer("RECONFIRM_AFTER_DAYS", default=0, minimum=0),
        reconfirm_wait_days=env.integer("RECONFIRM_WAIT_DAYS", default=14, minimum=1),
        provider_redaction=env.choice(
            "PROVIDER_REDACTION", ("on", "off"), "on" if mode == "production" else "off"
        )
        == "on",
    )
    _check_twilio_complete(settings)
    _check_reporter_window(settings)
    return settings


def whatsapp_alerts(settings: Settings) -> bool:
    """Whether WhatsApp can carry alerts: a sender is configured (the simulator has one)."""
    return settings.sms_backend != "twilio" or settings.whatsapp_from is not None


def _sms_backend(env: _Env) -> str:
    has_credentials = bool(env.get("TWILIO_ACCOUNT_SID") and env.get("TWILIO_AUTH_TOKEN"))
    return env.choice(
        "SMS_BACKEND", ("simulator", "twilio"), "twilio" if has_credentials else "simulator"
    )


def _check_twilio_complete(settings: Settings) -> None:
    if settings.sms_backend != "twilio":
        if settings.is_production:
            # The simulator's pages let anyone text the hotline as any number: never live.
            raise ConfigError(
                "SMS_BACKEND=simulator is for development; with RR_ENV=production "
                "set SMS_BACKEND=twilio and the TWILIO_* variables"
            )
        return
    for name, value in (
        ("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
        ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
        ("TWILIO_FROM", settings.twilio_from),
    ):
        if not value:
            # Without the auth token we could not check webhook signatures: fail closed.
            raise ConfigError(f"{name} is required when SMS_BACKEND=twilio")


def _custody(env: _Env, mode: str, keyring_path: Path) -> Custody:
    given = [name for name in GENERATED_SECRETS if env.get(name) is not None]
    if keyring_path.exists():
        if given:
            raise ConfigError(
                f"{given[0]} is set, and a sealed keyring is at {keyring_path}: the keyring "
                "holds the keys, so unset SECRET_KEY, DATA_KEYS and INDEX_KEY"
            )
        return "sealed"
    if len(given) == len(GENERATED_SECRETS):
        return "environment"
    return "development" if mode == "development" else "environment"


def _intake_public(keyring_path: Path) -> bytes:
    try:
        return read_wrapped(keyring_path).intake_public
    except KeyringError as error:
        raise ConfigError(f"KEYRING_FILE: {error}") from None


def _secret_values(env: _Env, mode: str, instance_path: Path) -> dict[str, str]:
    given = {name: env.get(name) for name in GENERATED_SECRETS}
    missing = [name for name, value in given.items() if value is None]
    if missing and mode == "production":
        raise ConfigError(
            f"{missing[0]} is required when RR_ENV=production: run 'rapidresponse keys init' "
            f"for a sealed keyring (or set {missing[0]} or {missing[0]}_FILE)"
        )
    stored = load_or_create_dev_secrets(instance_path) if missing else {}
    return {name: value or stored[name] for name, value in given.items()}


def load_or_create_dev_secrets(instance_path: Path) -> dict[str, str]:
    """Return the development secrets under instance/, creating them on first use.

    The keys are written to a private temporary file (mode 0600) and then hard-linked
    into place, which fails if the file exists: two processes starting at once (web and
    worker) agree on one set of keys, and neither can ever read a half-written file.
    """
    path = instance_path / SECRETS_FILENAME
    private_directory(instance_path)
    fresh = {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATA_KEYS": new_key(),
        "INDEX_KEY": new_key(),
    }
    if path.exists():
        return _read_dev_secrets(path)
    fd, temporary = tempfile.mkstemp(dir=instance_path, prefix=".secrets-")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(fresh, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return _read_dev_secrets(path)  # another process won the race: use its keys
    finally:
        os.unlink(temporary)
    return fresh


def _read_dev_secrets(path: Path) -> dict[str, str]:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(
            f"cannot read the generated secrets in {path}; restore or delete it"
        ) from None
    if not isinstance(stored, dict) or not all(
        isinstance(stored.get(n), str) for n in GENERATED_SECRETS
    ):
        raise ConfigError(f"the generated secrets in {path} are incomplete; restore or delete it")
    return {name: stored[name] for name in GENERATED_SECRETS}


def new_key() -> str:
    """A fresh 256-bit key in the text form DATA_KEYS and INDEX_KEY expect."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def parse_key(name: str, text: str) -> bytes:
    """Decode one base64 (standard or URL-safe) 256-bit key."""
    try:
        raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_").encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ConfigError(f"{name} must be base64 of {KEY_BYTES} random bytes") from None
    if len(raw) != KEY_BYTES:
        raise ConfigError(f"{name} must be base64 of {KEY_BYTES} random bytes (got {len(raw)})")
    return raw


def parse_data_keys(text: str) -> tuple[bytes, ...]:
    """DATA_KEYS: comma-separated keys, newest first; the newest encrypts, all decrypt."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ConfigError("DATA_KEYS must hold at least one key")
    keys = tuple(parse_key("DATA_KEYS", part) for part in parts)
    if len(set(keys)) != len(keys):
        raise ConfigError("DATA_KEYS lists the same key twice")
    return keys


def _secret_key(value: str, mode: str) -> str:
    if mode == "production" and value and len(value) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters")
    return value


def _database_url(env: _Env, instance_path: Path) -> str:
    raw = env.get("DATABASE_URL")
    if raw is None:
        return f"sqlite:///{instance_path / 'rapidresponse.sqlite3'}"
    scheme, _, rest = raw.partition(":")
    scheme = scheme.lower()
    # We ship psycopg 3 and the standard library's sqlite3; other drivers are not installed.
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return "postgresql+psycopg:" + rest
    if scheme in ("sqlite", "sqlite+pysqlite") and rest.startswith("//"):
        return raw
    raise ConfigError(f"DATABASE_URL must be a sqlite:/// or postgresql:// URL (got {scheme}:…)")


def _redis_url(env: _Env, name: str) -> str | None:
    raw = env.get(name)
    if raw is None:
        return None
    scheme = urlsplit(raw).scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{name} must be a redis://, rediss:// or unix:// URL (got {scheme!r})")
    return raw


def _check_reporter_window(settings: Settings) -> None:
    """A follow-up must be recognisable for as long as REPORT_FOLLOW_UP_MINUTES promises."""
    if settings.report_follow_up_minutes > settings.reporter_window_minutes:
        raise ConfigError(
            "REPORTER_WINDOW_MINUTES must be at least REPORT_FOLLOW_UP_MINUTES "
            f"(got {settings.reporter_window_minutes} < {settings.report_follow_up_minutes})"
        )


def _http_url(name: str, raw: str | None) -> str | None:
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL such as https://example.org")
    return raw.rstrip("/")


def _public_url(env: _Env, mode: str) -> str:
    url = _http_url("PUBLIC_URL", env.get("PUBLIC_URL"))
    if url is None:
        if mode == "production":
            raise ConfigError("PUBLIC_URL is required when RR_ENV=production")
        return "http://127.0.0.1:5000"
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        # Webhook signatures are computed over PUBLIC_URL + path: extra parts break them all.
        raise ConfigError("PUBLIC_URL must not have a query or fragment (got ?… or #…)")
    if mode == "production" and parts.scheme != "https":
        raise ConfigError("PUBLIC_URL must use https:// when RR_ENV=production")
    return url


def _socket_url(env: _Env) -> str:
    url = _http_url("SOCKET_URL", env.get("SOCKET_URL"))
    if url is None:
        return ""
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("SOCKET_URL must be an origin only, such as https://example.org:5001")
    return f"{parts.scheme}://{parts.netloc}"


def _account_sid(env: _Env) -> str | None:
    sid = env.get("TWILIO_ACCOUNT_SID")
    if sid is not None and not _ACCOUNT_SID.match(sid):
        raise ConfigError("TWILIO_ACCOUNT_SID must look like AC followed by 32 hex digits")
    return sid


def _twilio_from(env: _Env) -> str | None:
    value = env.get("TWILIO_FROM")
    if value is None or _E164.match(value) or _MESSAGING_SERVICE_SID.match(value):
        return value
    raise ConfigError(
        "TWILIO_FROM must be an E.164 number (+15035550100) or a Messaging Service sid (MG…)"
    )


def _whatsapp_from(env: _Env) -> str | None:
    value = env.get("WHATSAPP_FROM")
    if value is None:
        return None
    bare = value.removeprefix("whatsapp:")
    if _E164.match(bare):
        return "whatsapp:" + bare
    if _MESSAGING_SERVICE_SID.match(value):
        return value
    raise ConfigError(
        "WHATSAPP_FROM must be the WhatsApp sender's E.164 number (+15035550100) or a "
        "Messaging Service sid (MG…)"
    )


def _whatsapp_send_rate(env: _Env) -> float:
    raw = env.get("WHATSAPP_SEND_RATE")
    if raw is None:
        return 10.0  # Meta's default throughput per WhatsApp sender
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 1 <= rate <= 1000:
        # Below one a second, a chunk's slots would outlast a delivery's lease.
        raise ConfigError(f"WHATSAPP_SEND_RATE must be messages per second (1-1000), got {raw!r}")
    return rate


def _whatsapp_daily_limit(env: _Env) -> int | None:
    raw = env.get("WHATSAPP_DAILY_LIMIT")
    if raw is not None and raw.lower() in ("unlimited", "none"):
        return None
    # Meta's first tier for a business portfolio: 250 unique people per rolling 24 h.
    return env.integer("WHATSAPP_DAILY_LIMIT", default=250, minimum=1)


DEFAULT_SEND_RATE = 3.0


def _send_rate(env: _Env) -> float | None:
    raw = env.get("SEND_RATE")
    if raw is None:
        # A verified US toll-free number's default (Twilio: 3 segments a second), the
        # sender a small collective is most likely to get first; see README for others.
        return DEFAULT_SEND_RATE
    if raw.lower() in ("unlimited", "0", "none"):
        return None
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0 < rate <= 10_000:
        raise ConfigError(
            f"SEND_RATE must be messages per second (0-10000) or 'unlimited' (got {raw!r})"
        )
    return rate


def _alert_validity(env: _Env) -> int:
    minutes = env.integer("ALERT_VALIDITY_MINUTES", default=30, minimum=1)
    if minutes > MAX_VALIDITY_MINUTES:
        # Twilio's ValidityPeriod tops out at 36,000 seconds.
        raise ConfigError(
            f"ALERT_VALIDITY_MINUTES must be at most {MAX_VALIDITY_MINUTES} (got {minutes})"
        )
    return minutes


def _timezone(env: _Env) -> str:
    name = env.get("TIMEZONE") or "America/Los_Angeles"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"TIMEZONE must be an IANA time zone such as America/Los_Angeles (got {name!r})"
        ) from None
    return name


_QUIET_HOURS = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)")


def _quiet_hours(env: _Env) -> tuple[time, time] | None:
    """Local hours no announcement is sent in: "21:00-08:00" (across midnight) or "off"."""
    value = (env.get("QUIET_HOURS") or "21:00-08:00").strip()
    if value.lower() == "off":
        return None
    found = _QUIET_HOURS.fullmatch(value)
    if found is None or found.group(1, 2) == found.group(3, 4):
        raise ConfigError(
            f'QUIET_HOURS must be two local times such as "21:00-08:00", or "off" (got {value!r})'
        )
    hour, minute, end_hour, end_minute = (int(part) for part in found.groups())
    return time(hour, minute), time(end_hour, end_minute)


MAX_ORG_NAME = 24


def _org_name(env: _Env, name: str, default: str) -> str:
    """A signature that costs little: every alert carries it, inside its one segment."""
    value = " ".join((env.get(name) or default).split())
    if not value or len(value) > MAX_ORG_NAME or not is_gsm7(value):
        raise ConfigError(
            f"{name} must be 1 to {MAX_ORG_NAME} plain characters (letters, digits, "
            f"simple punctuation; no emoji or accents outside GSM-7), got {len(value)}"
        )
    return value


def _alert_approvers(env: _Env) -> int:
    value = env.integer("ALERT_APPROVERS", default=1, minimum=1)
    if value > 2:  # one approver, or the two-person rule
        raise ConfigError(f"ALERT_APPROVERS must be 1 or 2 (got {value})")
    return value


def _map_tile_url(env: _Env) -> str | None:
    raw = env.get("MAP_TILE_URL")
    if raw is None:
        return None
    from rapidresponse.mapping import tile_origin  # shapely only when a map is configured

    try:
        tile_origin(raw)
    except ValueError as error:
        raise ConfigError(f"MAP_TILE_URL: {error}") from None
    return raw


def _rate_limit(env: _Env, name: str, default: str) -> str:
    raw = env.get(name) or default
    try:
        amount = parse_limit(raw).amount
    except ValueError:
        amount = 0
    if amount < 1:
        raise ConfigError(f"{name} must look like 30/hour or 5 per day (got {raw!r})")
    return raw


def _phone_region(env: _Env) -> str:
    region = (env.get("PHONE_REGION") or "US").upper()
    if not re.fullmatch(r"[A-Z]{2}", region):
        raise ConfigError(f"PHONE_REGION must be a two-letter country code (got {region!r})")
    return region

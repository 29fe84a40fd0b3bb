"""The ``rapidresponse`` command: a Flask FlaskGroup, so ``routes`` and ``shell`` come free."""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import click
from flask import Flask
from flask.cli import FlaskGroup
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.redis_conn import RedisUnavailable, connect
from rapidresponse import audit
from rapidresponse.areas import find_area, import_areas
from rapidresponse.config import ConfigError, Settings
from rapidresponse.crypto import BlindIndex, FieldCipher
from rapidresponse.db import Database, upgrade
from rapidresponse.models import (
    Area,
    Incident,
    IncidentState,
    Language,
    Responder,
    StaffRole,
    StaffUser,
    utcnow,
)
from rapidresponse.passwords import WeakPassword, generate_password
from rapidresponse.people import AlreadyExists, add_responder, add_staff_user, normalize_email
from rapidresponse.phones import InvalidPhoneNumber, masked, normalize
from rapidresponse.regions import (
    LARGE_REGION_FILE_BYTES,
    PropertyNames,
    RegionError,
    Simplification,
    Skipped,
    load_region_reading,
    simplify_region,
)
from rapidresponse.staff import AccountAction, AccountRefused, change_account
from rapidresponse.verification import close_incident
from web.alerts_cli import alert_group
from web.keys_cli import keys_group

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
KEYS_WAIT_SECONDS = 15.0  # a command in a sealed deployment asks its processes this long


def _create_app() -> Flask:
    from web import create_app

    return create_app()


cli = FlaskGroup(
    name="rapidresponse",
    create_app=_create_app,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
    help="A rapid-response alert network: reports, verification and SMS alerts.",
)


def settings_from_env(keys_within: float | None = KEYS_WAIT_SECONDS) -> Settings:
    """The settings, with keys. A sealed deployment's keys are asked of its running
    processes (``dispatch.key_custody``) for ``keys_within`` seconds (None: until they come)."""
    settings = settings_without_keys()
    if settings.custody != "sealed":
        return settings
    from dispatch.key_custody import wait_for_keyring

    _ensure_redis_url(settings)
    settings = Settings.from_env()
    with_keys, _ = wait_for_keyring(settings, connect(settings.redis_url or ""), "cli", keys_within)
    if not with_keys.holds_keys:
        raise click.ClickException(
            "sealed: no process holds the keys ('rapidresponse keys unseal')"
        )
    return with_keys


def settings_without_keys() -> Settings:
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    return settings


@contextmanager
def database_session(settings: Settings) -> Iterator[Session]:
    database = Database(settings.database_url)
    try:
        with database.session() as session:
            yield session
    finally:
        database.dispose()


@cli.command("init-db", with_appcontext=False)
def init_db_command() -> None:
    """Create or upgrade the database schema (safe to run again)."""
    settings = settings_without_keys()
    upgrade(settings.database_url)
    click.echo("Database schema is up to date.")


@cli.command("web", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--socket-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the boards' socket server this command starts [default: --port + 1]; "
    "0: start none (run `rapidresponse sockets` apart).",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    default=None,
    help="Web processes [default: WEB_PROCESSES, else 1]; one per core is right.",
)
def web_command(host: str, port: int, socket_port: int | None, processes: int | None) -> None:
    """Serve the web app (webhooks, report form, board), and the boards' sockets apart."""
    from web.demo import port_is_free
    from web.server import serve
    from web.sockets_child import SocketServerChild, socket_origin

    settings = settings_without_keys()
    socket_port = min(port + 1, 65535) if socket_port is None else socket_port
    if socket_port == port:
        raise click.BadParameter("must differ from --port", param_hint="--socket-port")
    if socket_port and not port_is_free(host, socket_port):
        raise click.UsageError(
            f"port {socket_port} (the boards' sockets) is in use — pass another --socket-port"
        )
    _ensure_redis_url(settings)
    if socket_port:
        if not settings.socket_url and not settings.is_production:
            # No proxy in front (a production install has one): boards go to the port.
            os.environ["SOCKET_URL"] = socket_origin(settings.public_url, socket_port)
        SocketServerChild(host, socket_port).start()
    serve(host, port, settings.log_level, processes or settings.web_processes)


@cli.command("sockets", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5001, show_default=True, type=click.IntRange(1, 65535))
def sockets_command(host: str, port: int) -> None:
    """Serve the boards' live sockets, apart from the web processes."""
    from web.server import serve_sockets

    settings = settings_without_keys()
    _ensure_redis_url(settings)
    serve_sockets(host, port, settings.log_level)


def _ensure_redis_url(settings: Settings) -> None:
    """Start the embedded Redis servers the settings leave unnamed (the transport, the
    volatile one) and tell our child processes about them."""
    from dispatch.volatile import redis_for_children

    running = redis_for_children(settings)
    os.environ.update(running.environment)
    atexit.register(running.stop)


@cli.command("worker", with_appcontext=False)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option(
    "--scheduler/--no-scheduler",
    default=True,
    show_default=True,
    help="Also run RQ's scheduler (jobs enqueued for later).",
)
@click.option("--name", default=None, help="Worker name (default: RQ picks one).")
def worker_command(burst: bool, scheduler: bool, name: str | None) -> None:
    """Run an RQ worker over the alerts, replies and bulk queues, in that order."""
    from dispatch.key_custody import wait_for_keyring
    from dispatch.services import Services
    from dispatch.worker import run_worker

    settings = settings_without_keys()
    keyring = None
    if settings.custody == "sealed":
        _ensure_redis_url(settings)
        settings, keyring = wait_for_keyring(
            Settings.from_env(), connect(os.environ["REDIS_URL"]), "worker"
        )
    services = Services.build(settings)
    try:
        run_worker(services, burst=burst, with_scheduler=scheduler, name=name, keyring=keyring)
    finally:
        services.close()


# Boundary detail below this is invisible on the board's map and moves no one's area.
DEFAULT_SIMPLIFY_METERS = 5.0


@cli.group("region")
def region_group() -> None:
    """Neighborhoods: import a region pack."""


@region_group.command("import", with_appcontext=False)
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--region",
    "region_name",
    default=None,
    help="A label for this region (default: the file name).",
)
@click.option("--name-property", default="name", show_default=True)
@click.option("--slug-property", default="slug", show_default=True)
@click.option("--aliases-property", default="aliases", show_default=True)
@click.option("--zips-property", default="zips", show_default=True)
@click.option(
    "--simplify-meters",
    type=click.FloatRange(min=0),
    default=DEFAULT_SIMPLIFY_METERS,
    show_default=True,
    help="Drop boundary detail smaller than this, borders kept shared (0: keep all).",
)
def region_import_command(
    path: Path,
    region_name: str | None,
    name_property: str,
    slug_property: str,
    aliases_property: str,
    zips_property: str,
    simplify_meters: float,
) -> None:
    """Load neighborhoods from a GeoJSON FeatureCollection (e.g. a city's open data).

    A feature that cannot be used (no name, a broken outline, a duplicate) is left out
    and listed with the reason; the rest are imported.
    """
    settings = settings_from_env()
    names = PropertyNames(
        name=name_property, slug=slug_property, aliases=aliases_property, zips=zips_property
    )
    try:
        reading = load_region_reading(path, names)
    except RegionError as error:
        raise click.ClickException(str(error)) from None
    specs, changes = simplify_region(reading.areas, simplify_meters)
    with database_session(settings) as session:
        summary = import_areas(session, specs, region_name or path.stem)
    click.echo(f"{summary.added} areas added, {summary.updated} updated.")
    if summary.kept:
        click.echo(f"Not in the file but kept (still referenced): {', '.join(summary.kept)}")
    _report_skipped(reading.skipped)
    _report_simplification(changes, simplify_meters, path)


def _report_skipped(skipped: list[Skipped]) -> None:
    if skipped:
        click.echo(f"{len(skipped)} feature(s) left out:")
        for skip in skipped:
            click.echo(f"  {skip.reason}")


def _report_simplification(changes: list[Simplification], meters: float, path: Path) -> None:
    size = path.stat().st_size
    if not changes:
        if size > LARGE_REGION_FILE_BYTES:
            click.echo(
                f"Warning: this file is {size / 1e6:.1f} MB; every map and lookup carries "
                "its detail. Import it with --simplify-meters 5 to drop what no one needs."
            )
        return
    before = sum(change.vertices_before for change in changes)
    after = sum(change.vertices_after for change in changes)
    click.echo(
        f"Boundaries simplified to {meters:g} m, shared borders kept together: "
        f"{before:,} -> {after:,} points."
    )
    click.echo(f"  {'area':30} {'points before':>13} {'after':>7} {'area change':>11}")
    for change in changes:
        click.echo(
            f"  {change.slug:30} {change.vertices_before:13,} {change.vertices_after:7,} "
            f"{change.area_change:+11.3%}"
        )


@cli.group("responder")
def responder_group() -> None:
    """Trained responders who verify reports."""


@responder_group.command("add", with_appcontext=False)
@click.option("--name", required=True)
@click.option("--phone", required=True, help="Their mobile number.")
@click.option(
    "--area",
    "area_names",
    required=True,
    multiple=True,
    help="An area they cover (slug or name); repeat for several.",
)
@click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True)
def responder_add_command(name: str, phone: str, area_names: tuple[str, ...], lang: str) -> None:
    """Add a responder covering one or more areas."""
    settings = settings_from_env()
    try:
        e164 = normalize(phone, settings.phone_region)
    except InvalidPhoneNumber as error:
        raise click.BadParameter(str(error), param_hint="--phone") from None
    with database_session(settings) as session:
        areas = [_area_or_fail(session, text) for text in area_names]
        try:
            responder = add_responder(
                session,
                FieldCipher(settings.data_keys),
                BlindIndex(settings.index_key),
                name=name,
                phone_e164=e164,
                areas=areas,
                language=Language(lang),
            )
        except AlreadyExists as error:
            raise click.ClickException(str(error)) from None
        click.echo(
            f"Responder #{responder.id} {responder.name} ({masked(e164)}) covers "
            f"{', '.join(area.name for area in areas)}."
        )


def _area_or_fail(session: Session, text: str) -> Area:
    area = find_area(session, text)
    if area is None:
        raise click.BadParameter(
            f"no area called {text!r}; import a region first", param_hint="--area"
        )
    return area


@cli.group("incident")
def incident_group() -> None:
    """Incidents: close one when it is over (its report text is then purged after retention)."""


@incident_group.command("close", with_appcontext=False)
@click.argument("code")
def incident_close_command(code: str) -> None:
    """Close the incident with this code."""
    settings = settings_from_env()
    with database_session(settings) as session:
        incident = session.scalar(select(Incident).where(Incident.code == code.strip().upper()))
        if incident is None:
            raise click.ClickException(f"no incident with code {code.strip().upper()!r}")
        if incident.state is IncidentState.CLOSED:
            raise click.ClickException(f"incident {incident.code} is already closed")
        close_incident(session, incident, "operator:cli")
        click.echo(
            f"Incident {incident.code} closed; its report text will be purged after "
            f"{settings.report_retention_days} days."
        )


@cli.group("audit")
def audit_group() -> None:
    """The audit trail: its checkpoint to keep elsewhere, and a check of the chain."""


@audit_group.command("checkpoint", with_appcontext=False)
def audit_checkpoint_command() -> None:
    """Print the head of the chain, to keep somewhere this server cannot reach."""
    with database_session(settings_from_env()) as session:
        head = audit.checkpoint(session)
    if head is None:
        raise click.ClickException("the audit trail is empty")
    click.echo(str(head))


@audit_group.command("verify", with_appcontext=False)
@click.option(
    "--against",
    "kept",
    multiple=True,
    help="A checkpoint kept earlier (rr-audit:N:HASH); may be given more than once.",
)
def audit_verify_command(kept: tuple[str, ...]) -> None:
    """Check every event's hash and link; with --against, that the chain was not rewritten
    since each checkpoint. Exits 1 when it was changed."""
    try:
        checkpoints = [audit.Checkpoint.parse(typed) for typed in kept]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--against") from None
    with database_session(settings_from_env()) as session:
        broken = audit.verify(session)
        rewritten = [c.position for c in checkpoints if not audit.matches(session, c)]
    if broken is not None:
        raise click.ClickException(f"the chain is broken at event {broken}: changed or removed")
    if rewritten:
        raise click.ClickException(
            f"the chain does not match the checkpoint of event {rewritten[0]}: rewritten since"
        )
    click.echo("The chain is intact" + (" and matches every checkpoint." if kept else "."))


@cli.group("user")
def user_group() -> None:
    """Staff accounts (coordinators, dispatchers, responders)."""


@user_group.command("add", with_appcontext=False)
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice([role.value for role in StaffRole]))
@click.option(
    "--password-file",
    type=click.File("r"),
    default=None,
    help="Read the password from this file ('-' for stdin) instead of generating one.",
)
@click.option(
    "--responder-id",
    type=int,
    default=None,
    help="For the responder role: the responder (see `responder add`) this account is.",
)
def user_add_command(
    email: str, role: str, password_file: TextIO | None, responder_id: int | None
) -> None:
    """Add a staff account. Without --password-file, a password is generated and shown once.

    The account enrols its authenticator app (TOTP, by QR code) at its first sign-in.
    """
    settings = settings_from_env()
    password = password_file.read().strip() if password_file else generate_password()
    with database_session(settings) as session:
        if responder_id is not None and session.get(Responder, responder_id) is None:
            raise click.BadParameter("no responder has that id", param_hint="--responder-id")
        try:
            user = add_staff_user(session, email=email, role=StaffRole(role), password=password)
        except (AlreadyExists, WeakPassword, ValueError) as error:
            raise click.ClickException(str(error)) from None
        user.responder_id = responder_id
        click.echo(f"User #{user.id} {user.email} ({user.role.value}) added.")
    if password_file is None:
        click.echo(f"Password (shown once): {password}")


@user_group.command("list", with_appcontext=False)
def user_list_command() -> None:
    """List staff accounts: email, role, active, authenticator enrolled, last sign-in."""
    with database_session(settings_from_env()) as session:
        for user in session.scalars(select(StaffUser).order_by(StaffUser.id)):
            last = user.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if user.last_login_at else "-"
            click.echo(
                f"#{user.id} {user.email} {user.role.value}"
                f" {'active' if user.active else 'disabled'}"
                f" {'enrolled' if user.totp_enrolled_at else 'not-enrolled'} {last}"
            )


def _account_command(action: AccountAction, email: str) -> None:
    """Run one account action as the CLI; ends the account's sessions and their sockets."""
    from web.board_live import disconnect_session
    from web.context import services
    from web.people import ACCOUNT_ACTION_DONE

    with services().database.session() as session:
        user = session.scalar(select(StaffUser).where(StaffUser.email == normalize_email(email)))
        if user is None:
            raise click.BadParameter("no staff account has that email", param_hint="--email")
        try:
            ended = change_account(session, user, action, actor="cli", by_id=None, now=utcnow())
        except AccountRefused as refused:
            raise click.ClickException(str(refused)) from None
    for session_id in ended:
        disconnect_session(session_id)
    click.echo(str(ACCOUNT_ACTION_DONE[action]))


@user_group.command("disable")
@click.option("--email", required=True)
def user_disable_command(email: str) -> None:
    """Disable an account: no sign-in, its sessions end and its live boards disconnect."""
    _account_command(AccountAction.DISABLE, email)


@user_group.command("enable")
@click.option("--email", required=True)
def user_enable_command(email: str) -> None:
    """Let a disabled account sign in again."""
    _account_command(AccountAction.ENABLE, email)


@user_group.command("reset-2fa")
@click.option("--email", required=True)
def user_reset_2fa_command(email: str) -> None:
    """Forget an account's authenticator (lost phone): its next sign-in enrols a new one."""
    _account_command(AccountAction.RESET_SECOND_FACTOR, email)


@cli.command("demo", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--socket-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port of the boards' live updates [default: --port + 1].",
)
@click.option(
    "--show-login", is_flag=True, help="Print the running demo's banner (login, people) again."
)
def demo_command(host: str, port: int, socket_port: int | None, show_login: bool) -> None:
    """Run web + worker + scheduler on embedded defaults with a demo region and accounts."""
    from web.demo import run_demo, saved_banner

    # Quiet unless asked (LOG_LEVEL=info): the banner must not scroll away under routine
    # log lines. The web server and the worker inherit it.
    os.environ.setdefault("LOG_LEVEL", "warning")
    settings = settings_without_keys()
    if show_login:
        text = saved_banner(settings.instance_path)
        click.echo(text if text is not None else "No demo has started here yet: run `make demo`.")
        sys.exit(0 if text is not None else 1)
    sys.exit(run_demo(settings, host, port, socket_port))


cli.add_command(alert_group)
cli.add_command(keys_group)


def main() -> None:
    """Console entry point: configuration problems end in one clear line, not a traceback."""
    try:
        cli.main(prog_name="rapidresponse")
    except ConfigError as error:
        click.echo(f"rapidresponse: configuration error: {error}", err=True)
        sys.exit(2)
    except RedisUnavailable as error:
        click.echo(f"rapidresponse: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

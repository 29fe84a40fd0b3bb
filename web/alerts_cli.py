"""``rapidresponse alert ...``: look at, approve and follow up alerts from a terminal.

The board (for dispatchers in a browser) calls the same functions; these commands are
how an operator acts when the board is not at hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

import click
from flask.cli import AppGroup
from sqlalchemy import select

from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.areas import find_area
from rapidresponse.composer import Correcting, NoteRefused, last_clock_time, previews
from rapidresponse.models import Alert, AlertKind, utcnow

FOLLOW_UPS = [kind.value for kind in AlertKind if kind in broadcast.FOLLOW_UP_KINDS]


@contextmanager
def _services() -> Iterator[Services]:
    from web.cli import settings_from_env

    services = Services.build(settings_from_env())
    try:
        yield services
    finally:
        services.close()


@click.group("alert", cls=AppGroup)
def alert_group() -> None:
    """Alerts: list, show (texts, encoding, segments, audience), approve, follow up."""


@alert_group.command("list", with_appcontext=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def alert_list_command(limit: int) -> None:
    """The most recent alerts and how far each has gone."""
    with _services() as services, services.database.session() as session:
        alerts = session.scalars(select(Alert).order_by(Alert.id.desc()).limit(limit)).all()
        if not alerts:
            click.echo("No alerts yet.")
        for alert in alerts:
            counts = broadcast.progress(session, alert.id)
            click.echo(
                f"#{alert.id} {alert.kind.value:<10} {alert.status.value:<9} "
                f"recipients {alert.recipient_count}: sent {counts.sent}, delivered "
                f"{counts.delivered}, failed {counts.failed}, expired {counts.expired}, "
                f"pending {counts.pending}"
            )


@alert_group.command("show", with_appcontext=False)
@click.argument("alert_id", type=int)
def alert_show_command(alert_id: int) -> None:
    """Each language's text with its encoding and segment count, and the audience."""
    with _services() as services, services.database.session() as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise click.ClickException(f"no alert #{alert_id}")
        size = (
            alert.recipient_count
            if alert.recipient_count
            else broadcast.audience_size(session, alert)
        )
        click.echo(
            f"Alert #{alert.id}: {alert.kind.value}, {alert.status.value}, {size} recipients"
        )
        for shown in previews(broadcast.texts_of(services.cipher, alert)):
            click.echo(
                f"[{shown.language.value}] {shown.encoding}, {shown.segments} segment(s), "
                f"{shown.units} units:\n    {shown.text}"
            )


@alert_group.command("approve", with_appcontext=False)
@click.argument("alert_id", type=int)
def alert_approve_command(alert_id: int) -> None:
    """Approve a draft: write its ledger and start sending."""
    from dispatch.alerts import approve_alert

    with _services() as services:
        try:
            approval = approve_alert(services, alert_id)
        except broadcast.AlertNotApprovable as error:
            raise click.ClickException(str(error)) from None
    if approval.ledger_done:
        click.echo(
            f"Alert #{alert_id} approved: {approval.recipients} recipients in "
            f"{approval.batches} batches."
        )
    else:
        click.echo(
            f"Alert #{alert_id} approved: the first {approval.recipients} recipients are on "
            "their way; the workers are writing the rest of the ledger (see `alert show`)."
        )


@alert_group.command("cancel", with_appcontext=False)
@click.argument("alert_id", type=int)
def alert_cancel_command(alert_id: int) -> None:
    """Drop a draft that should not go out."""
    from dispatch.alerts import cancel_draft

    with _services() as services:
        if not cancel_draft(services, alert_id):
            raise click.ClickException(f"alert #{alert_id} is not a draft")
    click.echo(f"Alert #{alert_id} cancelled.")


@alert_group.command("follow-up", with_appcontext=False)
@click.argument("alert_id", type=int)
@click.option("--kind", required=True, type=click.Choice(FOLLOW_UPS))
@click.option("--note", default=None, help="What has changed (required for an update).")
@click.option(
    "--corrects",
    type=click.Choice([c.value for c in Correcting]),
    default=Correcting.FALSE_ALARM.value,
    show_default=True,
    help="A correction: the whole alert, its area (--area) or its time (--at).",
)
@click.option("--area", "right_area", default=None, help="The area it really was in.")
@click.option("--at", "right_time", default=None, help="When agents were really seen (14:05).")
def alert_follow_up_command(
    alert_id: int,
    kind: str,
    note: str | None,
    corrects: str,
    right_area: str | None,
    right_time: str | None,
) -> None:
    """Draft a follow-up to exactly the recipients of alert ALERT_ID (then approve it)."""
    from dispatch.alerts import DraftRefused, NotFollowable, draft_follow_up

    with _services() as services:
        try:
            follow_up = draft_follow_up(
                services,
                alert_id,
                AlertKind(kind),
                note=note,
                correcting=Correcting(corrects),
                right_area_id=_area_id(services, right_area),
                right_time=_clock(services, right_time),
            )
        except (NotFollowable, NoteRefused, DraftRefused, ValueError) as error:
            raise click.ClickException(str(error)) from None
    click.echo(
        f"Follow-up #{follow_up} drafted. Check it with 'alert show {follow_up}', "
        f"send it with 'alert approve {follow_up}'."
    )


def _area_id(services: Services, typed: str | None) -> int | None:
    if typed is None:
        return None
    with services.database.session() as session:
        area = find_area(session, typed)
        if area is None:
            raise click.BadParameter(f"no area named {typed!r}", param_hint="--area")
        return area.id


def _clock(services: Services, typed: str | None) -> datetime | None:
    if typed is None:
        return None
    moment = last_clock_time(typed, ZoneInfo(services.settings.timezone), utcnow())
    if moment is None:
        raise click.BadParameter("a clock time such as 14:05", param_hint="--at")
    return moment

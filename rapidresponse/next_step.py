"""What an incident waits for, and when the next automatic step happens.

A dispatcher under pressure reads "1 paged, 0 going" and cannot tell whether anyone is on
the way. Each incident card says it in one line instead ("waiting for Ana's GO, next
responder paged at 10:52"). This module decides which line and its times, from the record
and the deployment's timers; the board's template puts it in words, in the staff member's
language and the deployment's time zone.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rapidresponse.config import Settings
from rapidresponse.models import AlertKind, AlertStatus, DispatchState, IncidentState


class Step(str, enum.Enum):
    PLACE = "place"  # no place yet: nobody can be paged until a dispatcher places it
    NOBODY = "nobody"  # nobody could be paged
    FINDING = "finding"  # about to page (the job runs, or the sweep within a minute)
    WAITING_GO = "waiting_go"  # paged; the next responder is paged at ``at`` without a GO
    ON_THE_WAY = "on_the_way"  # GO given; unverified at ``at`` without a verdict
    COMPOSE = "compose"  # confirmed, no alert yet
    APPROVAL = "approval"  # confirmed, the alert waits for approval
    SENDING = "sending"  # the alert is going out
    SENT = "sent"  # the alert went out at ``at``; an all-clear is next, when agents leave
    ALL_CLEAR = "all_clear"  # the all-clear went out at ``at``; closes itself at ``closes``
    CLOSES = "closes"  # decided without an alert: closes itself at ``closes``
    CLOSED = "closed"  # report text is erased at ``closes``


@dataclass(frozen=True)
class Timing:
    """The deployment's timers that decide when the next automatic step happens."""

    ack: timedelta = timedelta(seconds=300)
    verify_deadline: timedelta = timedelta(seconds=2700)
    auto_close: timedelta = timedelta(hours=24)
    retention: timedelta = timedelta(days=30)


def timing(settings: Settings) -> Timing:
    return Timing(
        ack=timedelta(seconds=settings.ack_timeout_seconds),
        verify_deadline=timedelta(seconds=settings.verify_deadline_seconds),
        auto_close=timedelta(hours=settings.incident_auto_close_hours),
        retention=timedelta(days=settings.report_retention_days),
    )


@dataclass(frozen=True)
class PageFact:
    """One dispatch, as the next step needs it."""

    responder_name: str
    state: DispatchState
    paged_at: datetime


@dataclass(frozen=True)
class AlertFact:
    kind: AlertKind
    status: AlertStatus
    approved_at: datetime | None


@dataclass(frozen=True)
class NextStep:
    step: Step
    who: str | None = None  # the responder waited for
    at: datetime | None = None  # when the next automatic step happens (or happened)
    closes: datetime | None = None  # when the incident closes itself / its text is erased


@dataclass(frozen=True)
class IncidentFacts:
    state: IncidentState
    placed: bool
    escalated: bool
    opened_at: datetime
    state_changed_at: datetime
    closed_at: datetime | None


def next_step(
    facts: IncidentFacts,
    pages: Sequence[PageFact],
    alerts: Sequence[AlertFact],
    timers: Timing,
) -> NextStep:
    if facts.state is IncidentState.CLOSED:
        closed = facts.closed_at or facts.state_changed_at
        return NextStep(Step.CLOSED, closes=closed + timers.retention)
    if facts.state in (IncidentState.REPORTED, IncidentState.DISPATCHED):
        return _while_verifying(facts, pages, timers)
    closes = facts.state_changed_at + timers.auto_close
    if facts.state is not IncidentState.CONFIRMED:
        return NextStep(Step.CLOSES, closes=closes)
    return _after_confirmation(alerts, closes)


def _while_verifying(facts: IncidentFacts, pages: Sequence[PageFact], timers: Timing) -> NextStep:
    going = [p for p in pages if p.state is DispatchState.GOING]
    if going:
        first = min(going, key=lambda p: p.paged_at)
        return NextStep(
            Step.ON_THE_WAY, first.responder_name, facts.opened_at + timers.verify_deadline
        )
    paged = [p for p in pages if p.state is DispatchState.PAGED]
    if paged:
        first = min(paged, key=lambda p: p.paged_at)
        return NextStep(Step.WAITING_GO, first.responder_name, first.paged_at + timers.ack)
    if not facts.placed:
        return NextStep(Step.PLACE)
    return NextStep(Step.NOBODY if facts.escalated else Step.FINDING)


def _after_confirmation(alerts: Sequence[AlertFact], closes: datetime) -> NextStep:
    live = [a for a in alerts if a.status is not AlertStatus.CANCELLED]
    all_clear = [a for a in live if a.kind is AlertKind.ALL_CLEAR]
    if all_clear:
        sent = all_clear[-1]
        if sent.status is AlertStatus.DRAFT:
            return NextStep(Step.APPROVAL, closes=closes)
        return NextStep(Step.ALL_CLEAR, at=sent.approved_at, closes=closes)
    first = [a for a in live if a.kind is AlertKind.ALERT]
    if not first:
        return NextStep(Step.COMPOSE, closes=closes)
    alert = first[-1]
    if alert.status is AlertStatus.DRAFT:
        return NextStep(Step.APPROVAL, closes=closes)
    if alert.status is AlertStatus.APPROVED:
        return NextStep(Step.SENDING, at=alert.approved_at, closes=closes)
    return NextStep(Step.SENT, at=alert.approved_at, closes=closes)

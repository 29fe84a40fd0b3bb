"""What an incident waits for: every line the board can say, and its times.

The times are the deployment's timers read off the record, so each case checks the
instant the line names, not only which line it is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rapidresponse.models import AlertKind, AlertStatus, DispatchState, IncidentState
from rapidresponse.next_step import (
    AlertFact,
    IncidentFacts,
    NextStep,
    PageFact,
    Step,
    Timing,
    next_step,
)

OPENED = datetime(2026, 12, 2, 18, 40, tzinfo=UTC)
DECIDED = OPENED + timedelta(minutes=12)
APPROVED = OPENED + timedelta(minutes=15)
TIMERS = Timing(
    ack=timedelta(minutes=5),
    verify_deadline=timedelta(minutes=45),
    auto_close=timedelta(hours=24),
    retention=timedelta(days=30),
)


def facts(
    state: IncidentState,
    *,
    placed: bool = True,
    escalated: bool = False,
    closed_at: datetime | None = None,
) -> IncidentFacts:
    return IncidentFacts(
        state=state,
        placed=placed,
        escalated=escalated,
        opened_at=OPENED,
        state_changed_at=DECIDED,
        closed_at=closed_at,
    )


def page(name: str, state: DispatchState, minutes: int) -> PageFact:
    return PageFact(name, state, OPENED + timedelta(minutes=minutes))


def alert(kind: AlertKind, status: AlertStatus, approved: bool = True) -> AlertFact:
    return AlertFact(kind, status, APPROVED if approved else None)


def verifying(*pages: PageFact, placed: bool = True, escalated: bool = False) -> NextStep:
    state = IncidentState.DISPATCHED if pages else IncidentState.REPORTED
    return next_step(facts(state, placed=placed, escalated=escalated), pages, [], TIMERS)


def after_confirmation(*alerts: AlertFact) -> NextStep:
    return next_step(facts(IncidentState.CONFIRMED), [], alerts, TIMERS)


def test_an_unplaced_report_waits_for_a_place() -> None:
    assert verifying(placed=False) == NextStep(Step.PLACE)


def test_a_placed_report_is_about_to_be_paged() -> None:
    assert verifying() == NextStep(Step.FINDING)


def test_once_escalated_with_nobody_paged_it_says_nobody_could_be() -> None:
    assert verifying(escalated=True) == NextStep(Step.NOBODY)
    # Pages that timed out leave nobody to wait for: still "nobody".
    timed_out = page("Ana", DispatchState.TIMED_OUT, 1)
    assert verifying(timed_out, escalated=True).step is Step.NOBODY


def test_it_waits_for_the_first_paged_responder_until_the_ack_timeout() -> None:
    waiting = verifying(page("Ben", DispatchState.PAGED, 4), page("Ana", DispatchState.PAGED, 2))
    assert waiting == NextStep(Step.WAITING_GO, "Ana", OPENED + timedelta(minutes=2 + 5))


def test_someone_on_the_way_outranks_someone_paged() -> None:
    going = verifying(page("Ana", DispatchState.PAGED, 1), page("Ben", DispatchState.GOING, 3))
    # Unverified at the verification deadline, counted from the first report.
    assert going == NextStep(Step.ON_THE_WAY, "Ben", OPENED + timedelta(minutes=45))


def test_confirmed_without_an_alert_asks_for_one() -> None:
    closes = DECIDED + timedelta(hours=24)
    assert after_confirmation() == NextStep(Step.COMPOSE, closes=closes)
    cancelled = alert(AlertKind.ALERT, AlertStatus.CANCELLED, approved=False)
    assert after_confirmation(cancelled).step is Step.COMPOSE


def test_a_drafted_alert_waits_for_approval() -> None:
    draft = alert(AlertKind.ALERT, AlertStatus.DRAFT, approved=False)
    assert after_confirmation(draft).step is Step.APPROVAL


def test_an_approved_alert_is_going_out_then_sent() -> None:
    sending = after_confirmation(alert(AlertKind.ALERT, AlertStatus.APPROVED))
    assert (sending.step, sending.at) == (Step.SENDING, APPROVED)
    sent = after_confirmation(alert(AlertKind.ALERT, AlertStatus.COMPLETE))
    assert (sent.step, sent.at, sent.closes) == (Step.SENT, APPROVED, DECIDED + timedelta(hours=24))


def test_the_all_clear_is_what_counts_once_drafted_or_sent() -> None:
    first = alert(AlertKind.ALERT, AlertStatus.COMPLETE)
    drafted = alert(AlertKind.ALL_CLEAR, AlertStatus.DRAFT, approved=False)
    assert after_confirmation(first, drafted).step is Step.APPROVAL
    sent = alert(AlertKind.ALL_CLEAR, AlertStatus.COMPLETE)
    assert after_confirmation(first, sent) == NextStep(
        Step.ALL_CLEAR, at=APPROVED, closes=DECIDED + timedelta(hours=24)
    )


@pytest.mark.parametrize("state", [IncidentState.FALSE_ALARM, IncidentState.UNVERIFIED])
def test_decided_without_an_alert_closes_itself_a_day_after(state: IncidentState) -> None:
    assert next_step(facts(state), [], [], TIMERS) == NextStep(
        Step.CLOSES, closes=DECIDED + timedelta(hours=24)
    )


def test_closed_says_when_its_text_is_erased() -> None:
    closed_at = DECIDED + timedelta(hours=3)
    closed = next_step(facts(IncidentState.CLOSED, closed_at=closed_at), [], [], TIMERS)
    assert closed == NextStep(Step.CLOSED, closes=closed_at + timedelta(days=30))


def test_every_step_has_a_case_here() -> None:
    """A new step without a line on the board (and a test here) is caught."""
    source = Path(__file__).read_text(encoding="utf-8")
    assert [s for s in Step if f"Step.{s.name}" not in source] == []

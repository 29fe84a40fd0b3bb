"""Who may set a broadcast off: the two-person rule and the hourly cap.

An alert reaches thousands of phones and cannot be called back, and a false one spreads
panic. A network may therefore ask for a second dispatcher's approval (ALERT_APPROVERS=2;
the same person twice does not count) and cap how many alerts go out in an hour
(ALERT_HOURLY_CAP), so that one compromised or panicked account cannot flood a city.
Follow-ups are never capped: an all-clear or a correction must always be able to go.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rapidresponse import audit
from rapidresponse.models import Alert, AlertApproval, AlertKind, AlertStatus
from rapidresponse.refusals import N_, Refused

CAP_WINDOW = timedelta(hours=1)


class ApprovalRefused(Refused):
    """This approval cannot count; the message says why, for the dispatcher to read."""


@dataclass(frozen=True)
class ApprovalRules:
    approvers: int  # ALERT_APPROVERS
    hourly_cap: int  # ALERT_HOURLY_CAP; 0: no cap


@dataclass(frozen=True)
class ApprovalState:
    approvals: int
    needed: int
    # This person's approval was counted before (a double click, a resubmitted form):
    # nothing new happened, and the answer is the same as the first time.
    repeated: bool = False

    @property
    def complete(self) -> bool:
        return self.approvals >= self.needed


def alerts_sent_within(session: Session, now: datetime, window: timedelta = CAP_WINDOW) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Alert)
            .where(
                Alert.kind == AlertKind.ALERT,
                Alert.approved_at > now - window,
                Alert.drill_id.is_(None),  # a morning's drill never blocks a real alert
            )
        )
        or 0
    )


def cap_reached(session: Session, alert: Alert, rules: ApprovalRules, now: datetime) -> bool:
    if rules.hourly_cap == 0 or alert.kind is not AlertKind.ALERT:
        return False
    return alerts_sent_within(session, now) >= rules.hourly_cap


def record_approval(
    session: Session, alert_id: int, staff_id: int, rules: ApprovalRules, now: datetime
) -> ApprovalState:
    """Count one dispatcher's approval of a draft, in the caller's transaction.

    When the returned state is complete, the caller commits and then approves the alert
    (which writes the ledger and enqueues the batches).

    A second approval by the same person (a double click) returns the state with
    ``repeated`` set, whatever happened since: the dispatcher sees what the first click did.

    Raises:
        ApprovalRefused: not a draft (and not approved by this person), or over the cap.
    """
    alert = session.get(Alert, alert_id, with_for_update=True)  # approvals one at a time
    if alert is None:
        raise ApprovalRefused(N_("This alert is no longer waiting for approval."))
    approvers = set(
        session.scalars(
            select(AlertApproval.staff_user_id).where(AlertApproval.alert_id == alert_id)
        )
    )
    if staff_id in approvers and alert.status is not AlertStatus.CANCELLED:
        return ApprovalState(len(approvers), rules.approvers, repeated=True)
    if alert.status is not AlertStatus.DRAFT:
        raise ApprovalRefused(N_("This alert is no longer waiting for approval."))
    state = ApprovalState(len(approvers) + 1, rules.approvers)
    if state.complete and cap_reached(session, alert, rules, now):
        raise ApprovalRefused(
            N_(
                "The limit of %(cap)d alerts an hour is reached; "
                "wait, or ask a coordinator to raise ALERT_HOURLY_CAP."
            ),
            cap=rules.hourly_cap,
        )
    session.add(AlertApproval(alert_id=alert_id, staff_user_id=staff_id, approved_at=now))
    audit.record(
        session,
        actor=f"staff:{staff_id}",
        action="alert.approval",
        subject=f"alert:{alert_id}",
        details={"approvals": state.approvals, "needed": state.needed},
    )
    return state

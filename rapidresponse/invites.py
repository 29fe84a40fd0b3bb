"""Staff onboarding on the web: a coordinator invites by e-mail address and role; the new
staff member opens a one-time link, sets a password, then enrols an authenticator at the
usual second step of signing in.

The link is the only secret: 32 random bytes, shown once to the coordinator (who passes it
on through a channel of their choice; the server sends no e-mail), valid 24 hours, good
for one account. Only its hash is stored, so a copy of the database cannot be used to sign
up. Using it and creating the account happen in one transaction: a refused password leaves
the link usable, a second use finds it spent.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from rapidresponse import audit
from rapidresponse.models import StaffInvite, StaffRole, StaffUser
from rapidresponse.passwords import MIN_PASSWORD_LENGTH, WeakPassword
from rapidresponse.people import AlreadyExists, add_staff_user, normalize_email
from rapidresponse.refusals import N_, Refused
from rapidresponse.staff import token_hash

INVITE_LIFETIME = timedelta(hours=24)
# Responder accounts are linked to a responder record: the command line makes those.
INVITABLE_ROLES = (StaffRole.DISPATCHER, StaffRole.COORDINATOR)
TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 64


class InviteRefused(Refused):
    """The invitation could not be made or used; the message says why."""


@dataclass(frozen=True)
class PendingInvite:
    id: int
    email: str
    role: StaffRole
    expires_at: datetime


def invite(
    session: Session, email: str, role: StaffRole, by_id: int, now: datetime
) -> tuple[StaffInvite, str]:
    """A new invitation and its link's token (shown once, never stored).

    Raises:
        InviteRefused: not an e-mail address, a role that cannot be invited, or an
            account with that address exists.
    """
    try:
        address = normalize_email(email)
    except ValueError:
        raise InviteRefused(N_("That is not an e-mail address.")) from None
    if role not in INVITABLE_ROLES:
        raise InviteRefused(N_("Only dispatchers and coordinators are invited this way."))
    if session.scalar(select(StaffUser.id).where(StaffUser.email == address)) is not None:
        raise InviteRefused(N_("An account with that e-mail address exists already."))
    _withdraw_earlier(session, address, now)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = StaffInvite(
        token_hash=token_hash(token),
        email=address,
        role=role,
        invited_by_id=by_id,
        created_at=now,
        expires_at=now + INVITE_LIFETIME,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=f"staff:{by_id}",
        action="staff.invited",
        subject=f"invite:{row.id}",
        details={"role": role.value},
    )
    return row, token


def _withdraw_earlier(session: Session, email: str, now: datetime) -> None:
    """A new link replaces any earlier one for the same address."""
    session.execute(
        update(StaffInvite)
        .where(
            StaffInvite.email == email,
            StaffInvite.used_at.is_(None),
            StaffInvite.withdrawn_at.is_(None),
        )
        .values(withdrawn_at=now)
    )


def _usable(token: str, now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        StaffInvite.token_hash == token_hash(token[:MAX_TOKEN_CHARS]),
        StaffInvite.used_at.is_(None),
        StaffInvite.withdrawn_at.is_(None),
        StaffInvite.expires_at > now,
    )


def open_invite(session: Session, token: str, now: datetime) -> PendingInvite | None:
    """The invitation this link is for, if it can still be used."""
    row = session.scalar(select(StaffInvite).where(*_usable(token, now)))
    return None if row is None else PendingInvite(row.id, row.email, row.role, row.expires_at)


def accept(session: Session, token: str, password: str, now: datetime) -> StaffUser:
    """Spend the link and create the account (in the caller's transaction).

    Raises:
        InviteRefused: the link is unknown, spent, withdrawn or expired; the password is
            too short (the link stays usable: the transaction is rolled back).
    """
    found = session.scalar(select(StaffInvite).where(*_usable(token, now)).with_for_update())
    # The guard: of two uses at once, one updates the row and the other finds it spent.
    spent = session.execute(update(StaffInvite).where(*_usable(token, now)).values(used_at=now))
    if found is None or not spent.rowcount:  # type: ignore[attr-defined]
        raise InviteRefused(N_("This link has expired or was used already. Ask for a new one."))
    try:
        user = add_staff_user(session, email=found.email, role=found.role, password=password)
    except WeakPassword:
        raise InviteRefused(
            N_("A password needs at least %(length)d characters."), length=MIN_PASSWORD_LENGTH
        ) from None
    except AlreadyExists:
        raise InviteRefused(N_("An account with that e-mail address exists already.")) from None
    audit.record(
        session,
        actor=f"staff:{user.id}",
        action="staff.joined",
        subject=f"staff:{user.id}",
        details={"invite": found.id, "role": found.role.value},
    )
    return user


def withdraw(session: Session, invite_id: int, by_id: int, now: datetime) -> bool:
    withdrawn = session.execute(
        update(StaffInvite)
        .where(
            StaffInvite.id == invite_id,
            StaffInvite.used_at.is_(None),
            StaffInvite.withdrawn_at.is_(None),
        )
        .values(withdrawn_at=now)
    )
    if not withdrawn.rowcount:  # type: ignore[attr-defined]
        return False
    audit.record(
        session,
        actor=f"staff:{by_id}",
        action="staff.invite_withdrawn",
        subject=f"invite:{invite_id}",
    )
    return True


def pending(session: Session, now: datetime) -> list[PendingInvite]:
    rows = session.scalars(
        select(StaffInvite)
        .where(
            StaffInvite.used_at.is_(None),
            StaffInvite.withdrawn_at.is_(None),
            StaffInvite.expires_at > now,
        )
        .order_by(StaffInvite.created_at.desc())
    )
    return [PendingInvite(r.id, r.email, r.role, r.expires_at) for r in rows]

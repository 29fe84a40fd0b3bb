"""Staff sign-in: roles and what each may do, TOTP second factors, server-side sessions.

A staff account is the most valuable thing an adversary could take over, so sign-in is
two factors, every code works once, and every session lives in the database where a
coordinator can end it. The browser's cookie holds only a random token; the database
holds its hash, so a stolen copy of the database signs nobody in.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.orm import Session, joinedload

from rapidresponse import audit
from rapidresponse.crypto import FieldCipher, Purpose
from rapidresponse.models import (
    StaffDevice,
    StaffLoginStep,
    StaffRole,
    StaffSession,
    StaffUser,
)
from rapidresponse.refusals import N_, Refused

TOTP_ISSUER = "rapidresponse"
TOTP_STEP_SECONDS = 30
# One step either side: phones drift, and a code typed at the end of its step is late.
TOTP_DRIFT_STEPS = 1
TOTP_DIGITS = 6
CODE_SHAPE = re.compile(rf"[0-9]{{{TOTP_DIGITS}}}")
# Writing last_seen on every request would make each page view a write; a minute is
# precise enough for a 30-minute idle timeout.
TOUCH_EVERY = timedelta(seconds=60)


class Permission(str, enum.Enum):
    """What a page or an action needs. Roles are sets of these (see ``ROLE_PERMISSIONS``)."""

    VIEW_BOARD = "view_board"
    ACT_ON_INCIDENTS = "act_on_incidents"
    SEND_ALERTS = "send_alerts"
    VIEW_PEOPLE = "view_people"
    MANAGE_PEOPLE = "manage_people"
    MANAGE_AREAS = "manage_areas"  # the names, aliases and ZIPs people text
    VIEW_AUDIT = "view_audit"
    MANAGE_SESSIONS = "manage_sessions"
    MANAGE_STAFF = "manage_staff"
    OWN_DISPATCHES = "own_dispatches"
    READ_GUIDES = "read_guides"  # the printable responder card
    SEND_ANNOUNCEMENTS = "send_announcements"  # trainings, meetings: coordinators only
    RUN_DRILLS = "run_drills"  # start, feed and end a drill: coordinators only
    SEAL_KEYS = "seal_keys"  # the panic seal: coordinators, or two dispatchers (PANIC_SEAL)


ROLE_PERMISSIONS: dict[StaffRole, frozenset[Permission]] = {
    StaffRole.COORDINATOR: frozenset(Permission),
    StaffRole.DISPATCHER: frozenset(
        {
            Permission.VIEW_BOARD,
            Permission.ACT_ON_INCIDENTS,
            Permission.SEND_ALERTS,
            Permission.VIEW_PEOPLE,
            Permission.READ_GUIDES,
            Permission.SEAL_KEYS,
        }
    ),
    StaffRole.RESPONDER: frozenset({Permission.OWN_DISPATCHES, Permission.READ_GUIDES}),
}


def may(role: StaffRole, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


# --- TOTP -------------------------------------------------------------------------------


def begin_enrolment(user: StaffUser, cipher: FieldCipher) -> str:
    """A fresh secret for ``user``, stored sealed but not trusted until a code matches it.

    Returns the secret so it can be shown (as a QR code) this once.
    """
    secret = pyotp.random_base32()
    user.totp_secret_sealed = cipher.encrypt(secret, Purpose.STAFF_TOTP)
    user.totp_enrolled_at = None
    user.totp_last_step = None
    return secret


def totp_secret(user: StaffUser, cipher: FieldCipher) -> str | None:
    if user.totp_secret_sealed is None:
        return None
    return cipher.decrypt(user.totp_secret_sealed, Purpose.STAFF_TOTP)


def provisioning_uri(secret: str, email: str, issuer: str = TOTP_ISSUER) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code ``code`` is, within the allowed drift; None if none."""
    code = "".join(code.split())
    if not CODE_SHAPE.fullmatch(code):  # ASCII only: isdigit() also says yes to "١٢٣٤٥٦"
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // TOTP_STEP_SECONDS
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.at(step * TOTP_STEP_SECONDS), code):
            return step
    return None


def accept_code(
    session: Session, user: StaffUser, cipher: FieldCipher, code: str, now: datetime
) -> bool:
    """Check a code and use it up: the same code (or an older one) never works twice.

    The conditional UPDATE makes two simultaneous logins with one code end with one winner.
    """
    secret = totp_secret(user, cipher)
    step = None if secret is None else matching_step(secret, code, now)
    if step is None:
        return False
    result = session.execute(
        update(StaffUser)
        .where(
            StaffUser.id == user.id,
            or_(StaffUser.totp_last_step.is_(None), StaffUser.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    if not isinstance(result, CursorResult) or result.rowcount != 1:
        return False
    user.totp_last_step = step
    if user.totp_enrolled_at is None:
        user.totp_enrolled_at = now
    return True


# --- sessions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRules:
    idle: timedelta  # STAFF_IDLE_MINUTES
    absolute: timedelta  # STAFF_SESSION_HOURS


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, user: StaffUser, rules: SessionRules, now: datetime) -> str:
    """Open a session for ``user`` and return the token for its cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    session.add(
        StaffSession(
            token_hash=token_hash(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + rules.absolute,
        )
    )
    user.last_login_at = now
    session.flush()
    return token


def is_live(staff_session: StaffSession, rules: SessionRules, now: datetime) -> bool:
    return (
        staff_session.revoked_at is None
        and now < staff_session.expires_at
        and now - staff_session.last_seen_at < rules.idle
        and staff_session.user.active
    )


def find_session(
    session: Session, token: str, rules: SessionRules, now: datetime, *, activity: bool = True
) -> StaffSession | None:
    """The live session for a cookie's token; None if it has ended.

    ``activity`` resets the idle clock. A board's own re-reads and socket reconnections
    are not activity: otherwise a board left open would never time out."""
    found = session.scalar(
        select(StaffSession)
        .options(joinedload(StaffSession.user))  # is_live and the caller read it: one query
        .where(StaffSession.token_hash == token_hash(token))
    )
    if found is None or not is_live(found, rules, now):
        return None
    if activity and now - found.last_seen_at >= TOUCH_EVERY:
        found.last_seen_at = now
    return found


def end_session(session: Session, session_id: int, now: datetime, by_id: int | None) -> bool:
    """Revoke one session. Returns False if it had already ended."""
    result = session.execute(
        update(StaffSession)
        .where(StaffSession.id == session_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by_id=by_id)
        .execution_options(synchronize_session=False)
    )
    return isinstance(result, CursorResult) and result.rowcount == 1


def live_sessions(session: Session, rules: SessionRules, now: datetime) -> list[StaffSession]:
    """Sessions that could still be used, newest first, for the coordinator's page."""
    candidates = session.scalars(
        select(StaffSession)
        .where(
            StaffSession.revoked_at.is_(None),
            StaffSession.expires_at > now,
            StaffSession.last_seen_at > now - rules.idle,
        )
        .order_by(StaffSession.last_seen_at.desc())
    ).all()
    return [found for found in candidates if is_live(found, rules, now)]


# --- between the password and the code; remembered browsers ----------------------------

# Long enough to open an authenticator app after the password.
LOGIN_STEP_SECONDS = 300
# Browsers remembered per account (the oldest is forgotten first), and for how long
# after their last sign-in.
MAX_DEVICES = 10
DEVICE_DAYS = 90


def begin_login_step(session: Session, user_id: int, now: datetime) -> str:
    """The password was right: a one-time token for the code step (its hash is stored).

    Steps that have run out are removed here, so the table holds only the last minutes'."""
    session.execute(
        delete(StaffLoginStep).where(
            StaffLoginStep.created_at < now - timedelta(seconds=LOGIN_STEP_SECONDS)
        )
    )
    token = secrets.token_urlsafe(32)
    session.add(StaffLoginStep(token_hash=token_hash(token), user_id=user_id, created_at=now))
    session.flush()
    return token


def login_step_user(session: Session, token: object, now: datetime) -> int | None:
    """Whose password step ``token`` completed, if it has not run out or been used."""
    if not isinstance(token, str) or not token:
        return None
    step = session.scalar(
        select(StaffLoginStep).where(StaffLoginStep.token_hash == token_hash(token))
    )
    if step is None or now - step.created_at > timedelta(seconds=LOGIN_STEP_SECONDS):
        return None
    return step.user_id


def end_login_step(session: Session, token: str) -> None:
    session.execute(delete(StaffLoginStep).where(StaffLoginStep.token_hash == token_hash(token)))


def remember_device(session: Session, user_id: int, now: datetime) -> str:
    """A browser finished signing in: a token for its long-lived cookie (hash stored)."""
    token = secrets.token_urlsafe(32)
    session.add(
        StaffDevice(token_hash=token_hash(token), user_id=user_id, created_at=now, last_used_at=now)
    )
    session.flush()
    kept = select(StaffDevice.id).where(StaffDevice.user_id == user_id)
    kept = kept.order_by(StaffDevice.last_used_at.desc(), StaffDevice.id.desc()).limit(MAX_DEVICES)
    session.execute(
        delete(StaffDevice).where(StaffDevice.user_id == user_id, StaffDevice.id.not_in(kept))
    )
    return token


def is_remembered_device(session: Session, token: object, email: str, now: datetime) -> bool:
    """Whether ``token`` is a browser that has signed in to the account of ``email``."""
    if not isinstance(token, str) or not token:
        return False
    device = session.scalar(
        select(StaffDevice)
        .join(StaffUser, StaffUser.id == StaffDevice.user_id)
        .where(StaffDevice.token_hash == token_hash(token), func.lower(StaffUser.email) == email)
    )
    if device is None or now - device.last_used_at > timedelta(days=DEVICE_DAYS):
        return False
    if now - device.last_used_at >= TOUCH_EVERY:
        device.last_used_at = now
    return True


# --- accounts ------------------------------------------------------------------------------


class AccountRefused(Refused):
    """A change to a staff account that would lock the network out of its own board."""


def end_sessions_of(session: Session, user_id: int, now: datetime, by_id: int | None) -> list[int]:
    """End every session of one account; returns their ids (whose sockets must go too)."""
    ended = list(
        session.scalars(
            select(StaffSession.id).where(
                StaffSession.user_id == user_id,
                StaffSession.revoked_at.is_(None),
                StaffSession.expires_at > now,
            )
        )
    )
    for session_id in ended:
        end_session(session, session_id, now, by_id)
    return ended


def _check_not_self(user: StaffUser, by_id: int | None) -> None:
    if by_id == user.id:
        raise AccountRefused(N_("Not on your own account: ask another coordinator."))


def disable_account(
    session: Session, user: StaffUser, now: datetime, by_id: int | None
) -> list[int]:
    """Take away an account's access at once: it cannot sign in and its sessions end.

    The last active coordinator cannot be disabled: nobody could then manage the others
    (the CLI can still add one). Returns the ended sessions' ids."""
    _check_not_self(user, by_id)
    if user.role is StaffRole.COORDINATOR and user.active:
        others = session.scalar(
            select(func.count()).where(
                StaffUser.role == StaffRole.COORDINATOR,
                StaffUser.active.is_(True),
                StaffUser.id != user.id,
            )
        )
        if not others:
            raise AccountRefused(N_("This is the last active coordinator; add another first."))
    user.active = False
    return end_sessions_of(session, user.id, now, by_id)


def enable_account(user: StaffUser) -> None:
    user.active = True


class AccountAction(enum.StrEnum):
    DISABLE = "disable"
    ENABLE = "enable"
    RESET_SECOND_FACTOR = "reset-second-factor"


# What the audit trail calls each action once it is done.
ACCOUNT_AUDIT_ACTIONS = {
    AccountAction.DISABLE: "staff.disabled",
    AccountAction.ENABLE: "staff.enabled",
    AccountAction.RESET_SECOND_FACTOR: "staff.second_factor_reset",
}


def change_account(
    session: Session,
    user: StaffUser,
    action: AccountAction,
    *,
    actor: str,
    by_id: int | None,
    now: datetime,
) -> list[int]:
    """One account action, audited, in the caller's transaction; the ended sessions' ids
    (the caller disconnects their sockets after committing).

    Raises:
        AccountRefused: on one's own account, or the last active coordinator.
    """
    if action is AccountAction.DISABLE:
        ended = disable_account(session, user, now, by_id)
    elif action is AccountAction.RESET_SECOND_FACTOR:
        ended = reset_second_factor(session, user, now, by_id)
    else:
        enable_account(user)
        ended = []
    audit.record(
        session,
        actor=actor,
        action=ACCOUNT_AUDIT_ACTIONS[action],
        subject=f"staff:{user.id}",
        details={"sessions_ended": len(ended)},
    )
    return ended


def reset_second_factor(
    session: Session, user: StaffUser, now: datetime, by_id: int | None
) -> list[int]:
    """Forget an account's authenticator (a lost phone): at its next sign-in, after the
    password, it enrols a new one by QR code. Its sessions end now; returns their ids."""
    _check_not_self(user, by_id)
    user.totp_secret_sealed = None
    user.totp_enrolled_at = None
    user.totp_last_step = None
    return end_sessions_of(session, user.id, now, by_id)

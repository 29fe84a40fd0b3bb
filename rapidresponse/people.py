"""Responders, subscribers and staff accounts: created with numbers sealed, passwords hashed."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from rapidresponse.crypto import BlindIndex, FieldCipher, Purpose
from rapidresponse.models import (
    Area,
    Language,
    Responder,
    StaffRole,
    StaffUser,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from rapidresponse.passwords import hash_password
from rapidresponse.phones import last_four


class AlreadyExists(ValueError):
    """A responder with that number, or a user with that email, is already there."""


def add_responder(
    session: Session,
    cipher: FieldCipher,
    index: BlindIndex,
    *,
    name: str,
    phone_e164: str,
    areas: Sequence[Area],
    language: Language,
) -> Responder:
    """Create a responder covering ``areas``. The number is stored sealed and indexed.

    Raises:
        AlreadyExists: that number already belongs to a responder.
    """
    digest = index.digest(phone_e164, Purpose.PHONE_INDEX)
    if session.scalar(select(Responder.id).where(Responder.phone_index == digest)) is not None:
        raise AlreadyExists("a responder with that number already exists")
    responder = Responder(
        name=name.strip(),
        phone_index=digest,
        phone_last4=last_four(phone_e164),
        phone_sealed=cipher.encrypt(phone_e164, Purpose.RESPONDER_PHONE),
        language=language,
        areas=list(areas),
    )
    session.add(responder)
    session.flush()
    return responder


def find_responder(session: Session, index: BlindIndex, phone_e164: str) -> Responder | None:
    digest = index.digest(phone_e164, Purpose.PHONE_INDEX)
    return session.scalar(select(Responder).where(Responder.phone_index == digest))


def add_confirmed_subscriber(
    session: Session,
    cipher: FieldCipher,
    index: BlindIndex,
    *,
    phone_e164: str,
    areas: Sequence[Area],
    language: Language,
) -> Subscriber:
    """A subscriber already confirmed (YES) to ``areas``: for the demo's fictional cast.

    Real people only ever subscribe themselves, by texting JOIN and then YES.

    Raises:
        AlreadyExists: that number is already a subscriber.
    """
    digest = index.digest(phone_e164, Purpose.PHONE_INDEX)
    if session.scalar(select(Subscriber.id).where(Subscriber.phone_index == digest)) is not None:
        raise AlreadyExists("a subscriber with that number already exists")
    now = utcnow()
    subscriber = Subscriber(
        phone_index=digest,
        phone_sealed=cipher.encrypt(phone_e164, Purpose.SUBSCRIBER_PHONE),
        language=language,
        status=SubscriberStatus.ACTIVE,
    )
    session.add(subscriber)
    session.flush()
    for area in areas:
        session.add(
            Subscription(
                subscriber_id=subscriber.id,
                area_id=area.id,
                status=SubscriptionStatus.CONFIRMED,
                confirmed_at=now,
            )
        )
    session.flush()
    return subscriber


def add_staff_user(session: Session, *, email: str, role: StaffRole, password: str) -> StaffUser:
    """Create a staff account with an argon2id password hash.

    Raises:
        AlreadyExists: the email is taken.
        WeakPassword: the password is too short.
    """
    email = normalize_email(email)
    if session.scalar(select(StaffUser.id).where(StaffUser.email == email)) is not None:
        raise AlreadyExists("a user with that email already exists")
    user = StaffUser(email=email, role=role, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def set_password(user: StaffUser, password: str) -> None:
    user.password_hash = hash_password(password)


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or len(email) > 254 or " " in email:
        raise ValueError("not an email address")
    return email

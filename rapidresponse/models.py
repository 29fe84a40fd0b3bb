"""The system of record: SQLAlchemy 2 models of the core entities.

Redis is only transport; everything that must survive a crash lives here. Phone numbers
and report text are stored sealed (see ``crypto``), with a blind index for lookups; no
column holds a phone number in the clear.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so Alembic migrations behave the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_the_minute(moment: datetime) -> datetime:
    """A time as kept once exact times are no longer needed: an exact one could be
    matched against the provider's record of a message, and so of its sender."""
    return moment.replace(second=0, microsecond=0)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


def _enum(cls: type[enum.Enum], name: str | None = None) -> Enum:
    # Stored as plain strings with a CHECK, readable in psql and portable to SQLite. A
    # second column of one enum in a table needs its own ``name`` (its CHECK's name).
    return Enum(
        cls,
        name=name,
        native_enum=False,
        length=20,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
        create_constraint=True,
    )


class Language(str, enum.Enum):
    EN = "en"
    ES = "es"


class SubscriberStatus(str, enum.Enum):
    """Where a person stands on one channel (SMS, or WhatsApp: each has its own)."""

    ACTIVE = "active"
    OPTED_OUT = "opted_out"  # a STOP keyword: nothing is sent on that channel until START
    UNDELIVERABLE = "undeliverable"  # the provider said the number cannot take it
    PAUSED = "paused"  # did not answer "still want alerts?" (RECONFIRM_AFTER_DAYS); YES resumes
    NO_CONSENT = "no_consent"  # never asked for anything on this channel: nothing goes there


class Channel(str, enum.Enum):
    """How we can text someone: each channel has its own consent and its own STOP."""

    SMS = "sms"
    WHATSAPP = "whatsapp"


class TemplateStatus(str, enum.Enum):
    """Meta's review of a WhatsApp template; only an approved one is used."""

    APPROVED = "approved"
    PENDING = "pending"
    REJECTED = "rejected"


class SubscriptionStatus(str, enum.Enum):
    PENDING = "pending"  # asked to JOIN, has not answered YES yet
    CONFIRMED = "confirmed"


class IncidentState(str, enum.Enum):
    REPORTED = "reported"
    DISPATCHED = "dispatched"
    CONFIRMED = "confirmed"
    FALSE_ALARM = "false_alarm"
    UNVERIFIED = "unverified"
    CLOSED = "closed"


class DispatchState(str, enum.Enum):
    PAGED = "paged"
    GOING = "going"
    TIMED_OUT = "timed_out"
    DONE = "done"


class Verdict(str, enum.Enum):
    CONFIRM = "confirm"
    FALSE = "false"
    UNCLEAR = "unclear"


class AlertKind(str, enum.Enum):
    ALERT = "alert"
    UPDATE = "update"
    ALL_CLEAR = "all_clear"
    CORRECTION = "correction"
    ANNOUNCEMENT = "announcement"


class AlertStatus(str, enum.Enum):
    DRAFT = "draft"
    APPROVED = "approved"  # the ledger is written; deliveries are pending or in flight
    COMPLETE = "complete"
    CANCELLED = "cancelled"


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"
    CLAIMED = "claimed"  # a worker holds the lease and may be talking to the provider
    SENT = "sent"  # the provider accepted it
    DELIVERED = "delivered"
    FAILED = "failed"
    UNDELIVERABLE = "undeliverable"
    OPTED_OUT = "opted_out"
    EXPIRED = "expired"


class StaffRole(str, enum.Enum):
    COORDINATOR = "coordinator"
    DISPATCHER = "dispatcher"
    RESPONDER = "responder"


class ReportChannel(str, enum.Enum):
    """Where a text came from: also the channel an inbound message is answered on."""

    SMS = "sms"
    WEB = "web"
    WHATSAPP = "whatsapp"


class Area(Base):
    """A neighborhood people subscribe to and reports are placed in."""

    __tablename__ = "areas"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    region: Mapped[str] = mapped_column(String(120), default="")
    aliases: Mapped[list[str]] = mapped_column(default=list)
    zips: Mapped[list[str]] = mapped_column(default=list)
    geometry: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # GeoJSON
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# One row: a random value rewritten whenever any area is added, changed or removed, so a
# process can tell with one small read that its area directory is out of date.
area_revision = Table(
    "area_revision",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", String(32), nullable=False),
)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    phone_index: Mapped[str] = mapped_column(String(64), unique=True)
    language: Mapped[Language] = mapped_column(_enum(Language), default=Language.EN)
    # SMS: how alerts reach this person by text message (NO_CONSENT: they only ever
    # wrote on WhatsApp).
    status: Mapped[SubscriberStatus] = mapped_column(
        _enum(SubscriberStatus), default=SubscriberStatus.ACTIVE
    )
    # WhatsApp, the same number's other channel, with a consent and a STOP of its own.
    # WhatsApp has no carrier opt-out: honouring its STOP is ours alone.
    whatsapp_status: Mapped[SubscriberStatus] = mapped_column(
        _enum(SubscriberStatus, name="whatsappstatus"),
        default=SubscriberStatus.NO_CONSENT,
        server_default=SubscriberStatus.NO_CONSENT.value,
    )
    whatsapp_opted_out_at: Mapped[datetime | None] = mapped_column(default=None)
    opted_out_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the one STOP confirmation was let through; the guard allows no second one.
    opt_out_confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Announcements (trainings, meetings) need their own yes: JOIN NEWS, never implied
    # by alert consent. None: no announcements.
    news_consent_at: Mapped[datetime | None] = mapped_column(default=None)
    # Keeping the list alive: when "still want alerts?" was asked (cleared by the answer),
    # and when they last said yes to it.
    reconfirm_asked_at: Mapped[datetime | None] = mapped_column(default=None)
    reconfirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan"
    )


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "area_id"),
        # With the subscriber last, a ledger segment (a range of subscriber ids in some
        # areas) reads its range from this index, whatever the planner knows of the table.
        Index("ix_subscriptions_area_status_subscriber", "area_id", "status", "subscriber_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id", ondelete="CASCADE"))
    status: Mapped[SubscriptionStatus] = mapped_column(
        _enum(SubscriptionStatus), default=SubscriptionStatus.PENDING
    )
    # The channel the JOIN came on (the consent it records); alerts go by the channels
    # the person is active on, whichever they joined by.
    channel: Mapped[Channel] = mapped_column(
        _enum(Channel), default=Channel.SMS, server_default=Channel.SMS.value
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    area: Mapped[Area] = relationship()


responder_areas = Table(
    "responder_areas",
    Base.metadata,
    Column("responder_id", ForeignKey("responders.id", ondelete="CASCADE"), primary_key=True),
    Column("area_id", ForeignKey("areas.id", ondelete="CASCADE"), primary_key=True),
)


class Responder(Base):
    """A trained volunteer who goes to look and gives a verdict."""

    __tablename__ = "responders"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    phone_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    phone_index: Mapped[str] = mapped_column(String(64), unique=True)
    phone_last4: Mapped[str] = mapped_column(String(4))  # for masked display only
    language: Mapped[Language] = mapped_column(_enum(Language), default=Language.EN)
    on_shift: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the welcome text went out: it is sent once, however often the job runs.
    welcomed_at: Mapped[datetime | None] = mapped_column(default=None)

    areas: Mapped[list[Area]] = relationship(secondary=responder_areas)


class Incident(Base):
    """One real-world event that one or more reports describe."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_area_state", "area_id", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    state: Mapped[IncidentState] = mapped_column(
        _enum(IncidentState), default=IncidentState.REPORTED
    )
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), default=None)
    # "latitude,longitude" to about 100 m, sealed under the incident's shred key.
    location_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    possible_flood: Mapped[bool] = mapped_column(Boolean, default=False)
    # Independent reporters, counted as reports arrive: the hashes that tell them apart
    # are forgotten when the reporter window ends, the count stays.
    reporter_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set when no responder could be paged: the dispatchers must act (shown on the board).
    escalated_at: Mapped[datetime | None] = mapped_column(default=None)
    # A second wave: the decided incident of the same area this one came after (a report
    # past its all-clear or its corroboration window starts a new incident, linked here).
    follows_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), default=None, index=True
    )
    # Set when a dispatcher merged this incident into another: its reports, pages and
    # verdicts moved there, and its code leads there.
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), default=None
    )
    # A drill's incident: only the drill's participants are paged and alerted about it,
    # and every text and screen about it says so. None: a real incident.
    drill_id: Mapped[int | None] = mapped_column(
        # No ON DELETE SET NULL: a drill's row lost must never make its alerts real ones.
        ForeignKey("drills.id"),
        default=None,
        index=True,
    )
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    state_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)

    area: Mapped[Area | None] = relationship()
    reports: Mapped[list[Report]] = relationship(
        back_populates="incident", foreign_keys="Report.incident_id"
    )


class Report(Base):
    """What one person said they saw. The reporter's number is never stored."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id"), default=None, index=True
    )
    channel: Mapped[ReportChannel] = mapped_column(_enum(ReportChannel))
    # HMAC under a key that rotates every reporter window and is destroyed: it links
    # follow-ups for that long, then housekeeping clears it (``links_forgotten``).
    reporter_hash: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    links_forgotten: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    text_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)  # S.A.L.U.T.E. fields
    eyewitness: Mapped[bool] = mapped_column(Boolean, default=False)
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), default=None)
    location_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    text_purged_at: Mapped[datetime | None] = mapped_column(default=None)

    incident: Mapped[Incident | None] = relationship(back_populates="reports")
    area: Mapped[Area | None] = relationship()


class Dispatch(Base):
    """One responder paged to one incident, and what they answered."""

    __tablename__ = "dispatches"
    __table_args__ = (UniqueConstraint("incident_id", "responder_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    responder_id: Mapped[int] = mapped_column(ForeignKey("responders.id"))
    state: Mapped[DispatchState] = mapped_column(_enum(DispatchState), default=DispatchState.PAGED)
    verdict: Mapped[Verdict | None] = mapped_column(_enum(Verdict), default=None)
    note_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    paged_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    verdict_at: Mapped[datetime | None] = mapped_column(default=None)

    incident: Mapped[Incident] = relationship()
    responder: Mapped[Responder] = relationship()


class IncidentComment(Base):
    """A dispatcher's note on an incident: sealed under the incident's shred key like the
    reports' text, and erased with it."""

    __tablename__ = "incident_comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    staff_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )
    text_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


alert_areas = Table(
    "alert_areas",
    Base.metadata,
    Column("alert_id", ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
    Column("area_id", ForeignKey("areas.id", ondelete="CASCADE"), primary_key=True),
)


class Alert(Base):
    """A broadcast: the alert itself or a follow-up to exactly its recipients."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[AlertKind] = mapped_column(_enum(AlertKind), default=AlertKind.ALERT)
    status: Mapped[AlertStatus] = mapped_column(_enum(AlertStatus), default=AlertStatus.DRAFT)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), default=None)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), default=None)
    texts: Mapped[dict[str, Any]] = mapped_column(default=dict)  # language -> message text
    # An incident's alerts keep their texts (a follow-up's note among them) sealed under
    # the incident's shred key instead, as JSON: erased with the incident's record.
    texts_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set at approval: after this a delivery not yet sent is dropped, not sent late.
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    recipient_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    # An announcement waits for this (the end of quiet hours); alerts never wait.
    send_after: Mapped[datetime | None] = mapped_column(default=None)
    asks_rsvp: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Batches from this number on are the adjacent areas': they wait until every earlier
    # batch (the incident's own area) is handed over, then it is cleared and they go.
    held_from_batch: Mapped[int | None] = mapped_column(Integer, default=None)
    # A draft's optional line of the dispatcher's own, per language (JSON, sealed like the
    # texts), so that revising the draft again starts from what was written.
    lines_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    # Copied from its incident (or the alert it follows) when drafted: a drill's alert
    # goes to the drill's participants only, whatever its areas say.
    drill_id: Mapped[int | None] = mapped_column(
        # No ON DELETE SET NULL: a drill's row lost must never make its alerts real ones.
        ForeignKey("drills.id"),
        default=None,
        index=True,
    )

    areas: Mapped[list[Area]] = relationship(secondary=alert_areas)


def _only_where_set(name: str, column: str, *, unique: bool = False) -> Index:
    """An index of the rows whose ``column`` is not NULL, on both databases."""
    where = text(f"{column} IS NOT NULL")
    return Index(name, column, unique=unique, sqlite_where=where, postgresql_where=where)


class Delivery(Base):
    """One recipient of one alert: the ledger row that makes 'exactly once' checkable.

    Its id goes into the StatusCallback URL, so a send whose HTTP answer was lost is
    still recognised when the provider calls back. An integer the database counts up
    (migration 0029): a million-recipient alert is a million of these rows, and a random
    32-hex key cost 33 bytes in the row and 80 in its scattered primary-key index.
    Never reused (AUTOINCREMENT on SQLite, a sequence on PostgreSQL), so a late callback
    for a delivery erased with its alert cannot land on a newer one.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "subscriber_id"),
        Index("ix_deliveries_alert_status", "alert_id", "status"),
        Index("ix_deliveries_alert_batch", "alert_id", "batch"),
        # Partial (migration 0029): entries only for the rows that hold a value, so a
        # ledger's million pending rows cost these indexes nothing.
        _only_where_set("ix_deliveries_legacy_id", "legacy_id", unique=True),
        _only_where_set("uq_deliveries_provider_sid", "provider_sid", unique=True),
        # Rows claimed before migration 0026 carry their own lease; none since.
        _only_where_set("ix_deliveries_own_lease", "lease_expires_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    # The 32-hex id of a row written before migration 0029, whose StatusCallback URL
    # carries it: kept so those callbacks still find their row. None for every newer row
    # (no bytes in the row, no entry in its partial index).
    legacy_id: Mapped[str | None] = mapped_column(String(32), default=None)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    language: Mapped[Language] = mapped_column(_enum(Language), default=Language.EN)
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    # How it goes: chosen when the ledger is written (WhatsApp for those active there when
    # an approved template exists, or when SMS is not theirs), and switched to SMS when
    # WhatsApp refuses it and they consented to SMS too. One row per person either way.
    channel: Mapped[Channel] = mapped_column(
        _enum(Channel), default=Channel.SMS, server_default=Channel.SMS.value
    )
    # The provider ids of earlier tries that were refused and sent again (a WhatsApp
    # message before its SMS fallback, or before a retry after WhatsApp's rate limit):
    # their late callbacks are not the new send's and are ignored. Forgotten (and
    # redacted) with the provider id. None: no such try.
    superseded_sids: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), default=None)
    # Which batch job sends it: rows are grouped when the ledger is written.
    batch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set just before the request leaves: a claimed row with this set may have been sent.
    sending_at: Mapped[datetime | None] = mapped_column(default=None)
    # Times a send's outcome was unknowable (worker killed mid-request, timeout) and it
    # was sent again: the only way a recipient can get an alert twice, so it is counted.
    unknown_outcomes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Random per claim: only the worker holding this lease may finish or release the row.
    lease_token: Mapped[str | None] = mapped_column(String(32), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_sid: Mapped[str | None] = mapped_column(String(64), default=None)
    # When the provider's id was cleared (its callbacks done): later callbacks are ignored.
    provider_forgotten_at: Mapped[datetime | None] = mapped_column(default=None)
    error_code: Mapped[str | None] = mapped_column(String(16), default=None)
    rsvp: Mapped[str | None] = mapped_column(String(3), default=None)  # "yes"/"no"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def _alert_batch_key() -> tuple[Column[int], Column[int]]:
    """(alert_id, batch): the key of a table with one row per batch of an alert's ledger."""
    return (
        Column(
            "alert_id",
            ForeignKey("alerts.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        Column("batch", Integer, primary_key=True, autoincrement=False),
    )


# An alert's progress, kept as it happens: one row per batch of its ledger, a count per
# delivery status, moved by database triggers in the transaction that changes a delivery
# (migration 0025), so every path that writes a delivery keeps it right and reading an
# alert's progress sums a row per batch instead of counting a million deliveries. One
# row per batch, not per alert: the workers sending different batches never wait for
# each other on a counter.
alert_progress = Table(
    "alert_progress",
    Base.metadata,
    *_alert_batch_key(),
    *(
        Column(status.value, Integer, nullable=False, server_default="0")
        for status in DeliveryStatus
    ),
    Column("unknown_outcomes", Integer, nullable=False, server_default="0"),
)


# Who is sending a batch of an alert, and until when: one row per (alert, batch), so a
# worker claims and renews a whole batch by writing one row, not every delivery in it.
# A delivery is claimed with its chunk, as it is marked in flight (one write); the reaper
# takes back a batch whose lease ran out (its worker died) and what it had in flight.
batch_leases = Table(
    "batch_leases",
    Base.metadata,
    *_alert_batch_key(),
    Column("lease_token", String(32), nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
)


# An alert's ledger still being written: where the next segment starts. Approval writes
# the first segment (the incident's own area first) with the alert and enqueues it, so
# the first message leaves at once whatever the audience; ledger jobs write the rest a
# segment per transaction, each moving this row in the same transaction as its rows, so
# a crash resumes from the last committed segment. The row is deleted with the last one.
# The audience is everyone up to ``upto_id`` (the newest subscriber at approval), walked
# in subscriber id order, one rank at a time (0: the own area; 1: the adjacent ones).
ledger_cursors = Table(
    "ledger_cursors",
    Base.metadata,
    Column(
        "alert_id",
        Integer,
        ForeignKey("alerts.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("rank", Integer, nullable=False),
    Column("last_rank", Integer, nullable=False),
    Column("after_id", Integer, nullable=False),
    Column("span", Integer, nullable=False),  # subscriber ids the next segment looks through
    Column("upto_id", Integer, nullable=False),
    Column("next_batch", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)


class WhatsAppTemplate(Base):
    """A pre-approved WhatsApp message (Twilio Content API) for one kind of alert in one
    language: outside the 24 hours after a person's last message, WhatsApp takes only
    these. ``variables`` names what fills {{1}}, {{2}}…, in order (see ``whatsapp``)."""

    __tablename__ = "whatsapp_templates"
    __table_args__ = (UniqueConstraint("kind", "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[AlertKind] = mapped_column(_enum(AlertKind))
    language: Mapped[Language] = mapped_column(_enum(Language))
    content_sid: Mapped[str] = mapped_column(String(34))
    variables: Mapped[list[str]] = mapped_column(default=list)
    status: Mapped[TemplateStatus] = mapped_column(
        _enum(TemplateStatus), default=TemplateStatus.PENDING
    )
    updated_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[StaffRole] = mapped_column(_enum(StaffRole))
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    responder_id: Mapped[int | None] = mapped_column(ForeignKey("responders.id"), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    # The secret is written at enrolment and trusted only once a code from it was accepted.
    totp_enrolled_at: Mapped[datetime | None] = mapped_column(default=None)
    # The last accepted 30-second step: a code is good once, even within its window.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)


class MessageWording(Base):
    """A coordinator's wording of one alert message in one language (the catalog's is
    the default)."""

    __tablename__ = "message_wordings"
    __table_args__ = (UniqueConstraint("language", "message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    language: Mapped[Language] = mapped_column(_enum(Language))
    message_id: Mapped[str] = mapped_column(String(60))
    text: Mapped[str] = mapped_column(String(400))
    updated_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class StaffInvite(Base):
    """A one-time link a coordinator hands to a new staff member (24 h, single use).

    Only the token's hash is stored: a copy of the database cannot be used to sign up.
    """

    __tablename__ = "staff_invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[StaffRole] = mapped_column(_enum(StaffRole))
    invited_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    withdrawn_at: Mapped[datetime | None] = mapped_column(default=None)


class StaffSession(Base):
    """A signed-in browser. The cookie holds a random token; only its hash is stored here,
    so a copy of the database cannot be used to sign in as anyone."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )

    user: Mapped[StaffUser] = relationship(foreign_keys=[user_id])


class StaffLoginStep(Base):
    """A browser between the password and the code. Its cookie holds a random token and
    only its hash is here: a cookie minted with SECRET_KEY names no row, so knowing the
    keys (or a copy of the disk) does not skip the password."""

    __tablename__ = "staff_login_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class StaffDevice(Base):
    """A browser that has completed a sign-in to this account (password and code). Its
    long-lived cookie holds a random token, hashed here. It proves nothing by itself: it
    only keeps its owner out of the budget that strangers guessing the account share, so
    they cannot lock the real person out."""

    __tablename__ = "staff_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(default=utcnow)


class Practice(Base):
    """A responder's one-person drill (PRACTICE): a page that is not real, timed from the
    page to GO and to a verdict. It is no incident: nothing in it reaches anyone else."""

    __tablename__ = "practices"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    responder_id: Mapped[int] = mapped_column(
        ForeignKey("responders.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    go_at: Mapped[datetime | None] = mapped_column(default=None)
    verdict_at: Mapped[datetime | None] = mapped_column(default=None)
    verdict: Mapped[Verdict | None] = mapped_column(_enum(Verdict), default=None)


class Drill(Base):
    """A rehearsal on the real system: reports, pages and alerts like any other, marked
    DRILL/SIMULACRO everywhere, reaching only its participants."""

    __tablename__ = "drills"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"))
    scenario: Mapped[str] = mapped_column(String(500))  # written by the coordinator
    started_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    # The report card, frozen when the drill ends: timings and who answered, never what
    # anyone wrote, so it outlives the reports it was made from.
    card: Mapped[dict[str, Any] | None] = mapped_column(default=None)

    area: Mapped[Area] = relationship()


class DrillParticipant(Base):
    """One person in a drill: a responder the coordinator chose, or a subscriber who
    texted JOIN DRILL while it ran. Exactly one of the two."""

    __tablename__ = "drill_participants"
    __table_args__ = (
        UniqueConstraint("drill_id", "subscriber_id"),
        UniqueConstraint("drill_id", "responder_id"),
        CheckConstraint("(subscriber_id IS NULL) <> (responder_id IS NULL)", name="one_person"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    drill_id: Mapped[int] = mapped_column(ForeignKey("drills.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), default=None
    )
    responder_id: Mapped[int | None] = mapped_column(
        ForeignKey("responders.id", ondelete="CASCADE"), default=None
    )
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertApproval(Base):
    """One dispatcher's approval of one alert: the two-person rule counts distinct rows."""

    __tablename__ = "alert_approvals"
    __table_args__ = (UniqueConstraint("alert_id", "staff_user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"))
    approved_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Append-only, hash-chained record of staff actions and incident transitions."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(120))  # "staff:3", "responder:7", "system"
    action: Mapped[str] = mapped_column(String(60))
    subject: Mapped[str] = mapped_column(String(60), default="")  # "incident:12"
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Set when the event is sealed into the chain, shortly after it is recorded (see
    # ``audit.seal``): its place in the chain, the hash before it, and its own.
    position: Mapped[int | None] = mapped_column(BigInteger, unique=True, default=None)
    prev_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)


class OutboxMessage(Base):
    """The simulator's phones: what the demo 'sent' to a number, and (``inbound``) what
    that number texted the hotline from the simulator phone, so it reads as a conversation."""

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str] = mapped_column(String(40), unique=True)
    to_index: Mapped[str] = mapped_column(String(64), index=True)
    to_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    body_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    segments: Mapped[int] = mapped_column(Integer, default=1)
    inbound: Mapped[bool] = mapped_column(default=False, server_default=false())
    # "sms" or "whatsapp": a simulated phone has one conversation per channel.
    channel: Mapped[str] = mapped_column(String(10), default="sms", server_default="sms")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProviderRedaction(Base):
    """A message the provider is to delete from its records (PROVIDER_REDACTION).

    The row holds the provider's id only until the deletion succeeded: then it goes too.
    The id is sealed under the shred key of the hour it was scheduled in (``key_name``),
    destroyed once that hour's rows are gone: a copy of the database's history (WAL,
    free pages, pg_wal) then holds no id anyone can read and take to the provider.
    """

    __tablename__ = "provider_redactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)  # before 0019
    sid_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    # An HMAC of the id under the hour's key: asked twice in an hour, scheduled once.
    sid_digest: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    key_name: Mapped[str | None] = mapped_column(String(48), index=True, default=None)
    due_at: Mapped[datetime] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(16), default=None)

"""What a text from the public does to subscriptions, and what we answer.

Opt-out is carrier law, not a feature: STOP and its synonyms always work (even past rate
limits), get exactly one confirmation, and from then on nothing at all goes to that number
except the answer to START/UNSTOP. ``permit_text`` is the single rule that every outbound
path (webhook answers and every sender) asks before texting anyone.

Everything here is safe when two texts from one number arrive at once: the opt-out is a
conditional UPDATE whose row count decides who confirms, and a new subscriber is inserted
in a savepoint so that the loser of a race reads the winner's row instead of failing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete, inspect, select, update
from sqlalchemy.orm import Session, defer, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from rapidresponse import announcements, drills, reconfirm, whatsapp
from rapidresponse.commands import Command, Keyword
from rapidresponse.crypto import BlindIndex, FieldCipher, Purpose
from rapidresponse.db import insert_ignoring_duplicates
from rapidresponse.directory import AreaDirectory, Place, Resolution
from rapidresponse.languages import guess as guess_language
from rapidresponse.messages import join_names, text
from rapidresponse.models import (
    Area,
    Channel,
    Language,
    ReportChannel,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from rapidresponse.reports import Intake
from rapidresponse.wording import wording_of

# The STOP confirmation must follow the STOP; a late one is not sent at all.
CONFIRMATION_WINDOW = timedelta(minutes=10)
# What a new subscriber row is inserted with (all but its id).
SUBSCRIBER_FIELDS = tuple(field for field in inspect(Subscriber).column_attrs if field.key != "id")


class ReplyKind(str, enum.Enum):
    NORMAL = "normal"
    OPT_OUT_CONFIRMATION = "opt_out_confirmation"  # the one text allowed after STOP


@dataclass(frozen=True)
class Reply:
    text: str
    kind: ReplyKind = ReplyKind.NORMAL


class LimitVerdict(str, enum.Enum):
    ALLOWED = "allowed"
    NOTIFY = "notify"  # over the limit: say so, once
    SILENT = "silent"  # over the limit and already told: answer nothing (no SMS pumping)


class AbuseLimits(Protocol):
    """Per-number limits, keyed by the number's blind index (never the number itself)."""

    def inbound(self, key: str) -> LimitVerdict: ...

    def confirmation(self, key: str) -> LimitVerdict: ...


def permit_text(session: Session, index: BlindIndex, phone: str, kind: ReplyKind) -> bool:
    """Whether a text of ``kind`` may go to ``phone`` now. Asked by every outbound path.

    An opted-out number gets nothing, except one STOP confirmation shortly after its
    STOP: letting it through is recorded by a conditional UPDATE, so no caller can get a
    second one through, whatever it claims the text to be.
    """
    key = index.digest(phone, Purpose.PHONE_INDEX)
    if kind is ReplyKind.OPT_OUT_CONFIRMATION:
        now = utcnow()
        claimed = session.execute(
            update(Subscriber)
            .where(
                Subscriber.phone_index == key,
                Subscriber.status == SubscriberStatus.OPTED_OUT,
                Subscriber.opt_out_confirmed_at.is_(None),
                Subscriber.opted_out_at >= now - CONFIRMATION_WINDOW,
            )
            .values(opt_out_confirmed_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]
    status = session.scalar(select(Subscriber.status).where(Subscriber.phone_index == key))
    return status is not SubscriberStatus.OPTED_OUT


def limited_reply(verdict: LimitVerdict, language: Language, message_id: str) -> Reply | None:
    return Reply(text(language, message_id)) if verdict is LimitVerdict.NOTIFY else None


class LanguageMemory(Protocol):
    """Where a non-subscriber's language choice lives for the reporter window only."""

    def language(self, keys: Sequence[str]) -> Language | None:
        """The language remembered under the first of ``keys`` that has one."""
        ...

    def remember(self, key: str, language: Language) -> None: ...


class SubscriberDesk:
    """Handles the subscriber commands of one inbound text, inside the caller's transaction.

    Args:
        reporter_hashes: the rotating reporter hashes of a number (current first), the
            only key under which anything about a non-subscriber is remembered.
        languages: where a non-subscriber's language is remembered; without it, it is
            not (no durable row is ever made for someone who did not JOIN).
        directory: the process's area directory (``AreaCatalog``); without it, one is
            built from the session for this text.
        rights_url: the public know-your-rights page, for RIGHTS MORE.
    """

    def __init__(
        self,
        session: Session,
        cipher: FieldCipher,
        index: BlindIndex,
        limits: AbuseLimits,
        reporter_hashes: Callable[[str], tuple[str, ...]] = lambda _phone: (),
        languages: LanguageMemory | None = None,
        directory: AreaDirectory | None = None,
        rights_url: str = "",
    ) -> None:
        self.session = session
        self.rights_url = rights_url
        # The channel of the message being handled: an SMS opt-out silences SMS only.
        self.channel = ReportChannel.SMS
        self.cipher = cipher
        self.index = index
        self.limits = limits
        self.reporter_hashes = reporter_hashes
        self.languages = languages
        self._directory = directory
        self._remembered: dict[str, Language | None] = {}
        self._rows: dict[str, Subscriber | None] = {}  # by blind index, as read or made here

    def by_sms_only(self, phone: str, command: Command) -> Reply:
        """A subscription word sent over WhatsApp: how to do it by SMS; nothing changes."""
        ctx = self._context(phone, command)
        if command.keyword is Keyword.STOP:
            return ctx.say("sms.whatsapp_stop")
        return ctx.say("sms.whatsapp_alerts_by_sms")

    def handle(self, phone: str, command: Command) -> Reply | None:
        """Apply ``command`` from ``phone`` (E.164); return the answer, or None for silence."""
        ctx = self._context(phone, command)
        opted_out = self._silenced(ctx)
        if opted_out and command.keyword not in (Keyword.STOP, Keyword.START):
            return None  # after STOP, only START gets an answer
        # Opting out always works; opting back in works when it is needed. Everything
        # else is counted, before it can change anything.
        exempt = command.keyword is Keyword.STOP or (command.keyword is Keyword.START and opted_out)
        if not exempt:
            verdict = self.limits.inbound(ctx.key)
            if verdict is not LimitVerdict.ALLOWED:
                return limited_reply(verdict, ctx.language, "sms.rate_limited")
        if command.language is Language.ES:
            ctx.set_language(Language.ES)  # a Spanish keyword sets Spanish
        return HANDLERS.get(command.keyword, _not_understood)(ctx)

    def answer(self, phone: str, command: Command) -> Reply | None:
        """1 / 2 / NO to an announcement that asked; None when nothing asked this number
        (the text is then what it always was: a report)."""
        ctx = self._context(phone, command)
        if ctx.subscriber is None or self._silenced(ctx):
            return None
        verdict = self.limits.inbound(ctx.key)
        if verdict is not LimitVerdict.ALLOWED:
            return limited_reply(verdict, ctx.language, "sms.rate_limited")
        return _answer(ctx, command.argument)

    def too_long(self, phone: str) -> Reply | None:
        """The answer to a message too long to read: counted, polite, changing nothing."""
        ctx = self._context(phone, Command(Keyword.REPORT))
        if self._silenced(ctx):
            return None
        verdict = self.limits.inbound(ctx.key)
        if verdict is not LimitVerdict.ALLOWED:
            return limited_reply(verdict, ctx.language, "sms.rate_limited")
        return ctx.say("sms.too_long")

    def report_reply(
        self, phone: str, intake: Intake, report_text: str, limit_key: str | None
    ) -> Reply | None:
        """What a reporter hears back: the report code, and where-is-it when unplaced.

        The report is already stored whatever this says: an opted-out or rate-limited
        number's sighting still counts, it just gets no answer (or one polite notice).
        ``limit_key`` is the reporter's daily hash, never the lasting blind index: a
        reporter's activity must not be linkable to their number after the day is over.
        """
        ctx = self._context(phone, Command(Keyword.REPORT))
        if ctx.subscriber is None:
            remembered = self.remembered_language(phone)
            ctx.language = remembered or guess_language(report_text)
            if remembered is None and not intake.follow_up and ctx.language is not Language.EN:
                # Kept for the reporter window, like a chosen language: the follow-up
                # ("3 vans", a pin with no words) is answered in the language of the
                # report, not guessed again from a few words (which default to English).
                self.remember_language(phone, ctx.language)
        elif self._silenced(ctx):
            return None
        verdict = self.limits.inbound(limit_key) if limit_key else LimitVerdict.ALLOWED
        if verdict is not LimitVerdict.ALLOWED:
            return limited_reply(verdict, ctx.language, "sms.rate_limited")
        message_id = (
            "sms.drill_report_received"
            if intake.drill
            else "sms.report_more"
            if intake.follow_up
            else "sms.report_received"
            if intake.placed
            else "sms.report_where"
        )
        return ctx.say(message_id, code=intake.report_code)

    def drill_answer(
        self, phone: str, message_id: str, *, counted: bool = False, **params: str
    ) -> Reply | None:
        """What a bare DRILL hears (whether a drill runs, how to take part), or a late
        drill report (``counted``: its limit was counted when it was stored)."""
        ctx = self._context(phone, Command(Keyword.DRILL))
        if self._silenced(ctx):
            return None
        verdict = LimitVerdict.ALLOWED if counted else self.limits.inbound(ctx.key)
        if verdict is not LimitVerdict.ALLOWED:
            return limited_reply(verdict, ctx.language, "sms.rate_limited")
        return ctx.say(message_id, ReplyKind.NORMAL, **params)

    def _silenced(self, ctx: _Context) -> bool:
        """Whether this number said STOP on the channel the message came by."""
        return (
            ctx.subscriber is not None
            and whatsapp.status_on(ctx.subscriber, ctx.channel) is SubscriberStatus.OPTED_OUT
        )

    def _context(self, phone: str, command: Command) -> _Context:
        key = self.index.digest(phone, Purpose.PHONE_INDEX)
        subscriber = self.find(key)
        # A Spanish keyword answers in Spanish; an English one does not reset a Spanish
        # speaker (STOP, YES and START are what carriers teach everyone).
        language = (
            Language.ES
            if command.language is Language.ES
            else subscriber.language
            if subscriber is not None
            else self.remembered_language(phone) or Language.EN
        )
        return _Context(self, phone, key, subscriber, language, command)

    def remembered_language(self, phone: str) -> Language | None:
        """A non-subscriber's choice, while the reporter window remembers it."""
        if self.languages is None:
            return None
        if phone not in self._remembered:  # one text may ask twice: read the store once
            self._remembered[phone] = self.languages.language(self.reporter_hashes(phone))
        return self._remembered[phone]

    def remember_language(self, phone: str, language: Language) -> None:
        hashes = self.reporter_hashes(phone)
        if self.languages is not None and hashes:
            self.languages.remember(hashes[0], language)
            self._remembered[phone] = language

    def find(self, key: str) -> Subscriber | None:
        found = self.session.scalar(select(Subscriber).where(Subscriber.phone_index == key))
        self._rows[key] = found
        return found

    def forget(self, key: str) -> None:
        """The row of ``key`` was changed by a statement the ORM did not see."""
        self._rows.pop(key, None)

    def opted_out(self, phone: str) -> bool | None:
        """Whether ``phone`` is opted out, as this text's transaction already read it (and
        changed it through the ORM); None when it was not read here. Saves ``permit_text``
        a statement for the answer to the text that read it."""
        key = self.index.digest(phone, Purpose.PHONE_INDEX)
        if key not in self._rows:
            return None
        row = self._rows[key]
        return row is not None and row.status is SubscriberStatus.OPTED_OUT

    def insert_subscriber(
        self,
        phone: str,
        key: str,
        language: Language,
        status: SubscriberStatus,
        channel: Channel = Channel.SMS,
    ) -> Subscriber | None:
        """Insert a subscriber with ``status`` on ``channel`` (and no consent on the
        other); None if another request inserted that number first."""
        subscriber = Subscriber(
            phone_index=key,
            language=language,
            status=SubscriberStatus.NO_CONSENT,
            whatsapp_status=SubscriberStatus.NO_CONSENT,
            phone_sealed=self.cipher.encrypt(phone, Purpose.SUBSCRIBER_PHONE),
        )
        now = utcnow()
        whatsapp.set_status_on(subscriber, channel, status, now)
        subscriber.created_at = subscriber.updated_at = now
        values = {column.key: getattr(subscriber, column.key) for column in SUBSCRIBER_FIELDS}
        # One statement, where a savepoint around the ORM's insert took three: the
        # webhook's JOIN is the hotline's commonest text.
        new_id = self.session.scalar(
            insert_ignoring_duplicates(
                self.session, Subscriber, values, Subscriber.phone_index
            ).returning(Subscriber.id)
        )
        if new_id is None:
            self._rows.pop(key, None)  # someone else's row: read it again before trusting
            return None
        subscriber.id = new_id
        set_committed_value(subscriber, "subscriptions", [])
        make_transient_to_detached(subscriber)  # as if read: every field is what was stored
        self.session.add(subscriber)
        self._rows[key] = subscriber
        return subscriber

    def directory(self) -> AreaDirectory:
        if self._directory is None:
            # Names, aliases and ZIPs only: polygons can be large and are not needed here.
            areas = self.session.scalars(select(Area).options(defer(Area.geometry)))
            self._directory = AreaDirectory(areas, outlines=False)
        return self._directory

    def subscriptions(self, subscriber: Subscriber | None) -> list[Subscription]:
        if subscriber is None:
            return []
        return list(
            self.session.scalars(
                select(Subscription)
                .where(Subscription.subscriber_id == subscriber.id)
                .order_by(Subscription.id)
            )
        )


@dataclass
class _Context:
    desk: SubscriberDesk
    phone: str
    key: str
    subscriber: Subscriber | None
    language: Language
    command: Command

    @property
    def channel(self) -> Channel:
        """The channel this message came by, which its consent and STOP are about."""
        return Channel.WHATSAPP if self.desk.channel is ReportChannel.WHATSAPP else Channel.SMS

    def say(self, message_id: str, kind: ReplyKind = ReplyKind.NORMAL, **params: str) -> Reply:
        return Reply(text(self.language, message_id, **params), kind)

    def set_language(self, language: Language) -> None:
        """A subscriber's language is kept with them; anyone else's only for the window."""
        self.language = language
        if self.subscriber is not None:
            self.subscriber.language = language
        else:
            self.desk.remember_language(self.phone, language)

    def subscriber_now(self, consent: bool = True) -> Subscriber:
        """This number's subscriber row, created on first need. With ``consent`` (JOIN,
        NEWS: asking for messages) it is active on the channel this message came by: it
        can receive there, it just wrote from it."""
        if self.subscriber is None:
            self.subscriber = self.desk.insert_subscriber(
                self.phone, self.key, self.language, SubscriberStatus.ACTIVE, self.channel
            ) or self.desk.find(self.key)
            assert self.subscriber is not None
        if consent:
            now = utcnow()
            whatsapp.set_status_on(self.subscriber, self.channel, SubscriberStatus.ACTIVE, now)
        return self.subscriber


def _stop(ctx: _Context) -> Reply | None:
    """STOP ends the channel it came by, and only that one: the answer says how to end
    the other, when the person is still active there."""
    desk = ctx.desk
    channel = ctx.channel
    if (
        ctx.subscriber is None
        and desk.insert_subscriber(
            ctx.phone, ctx.key, ctx.language, SubscriberStatus.OPTED_OUT, channel
        )
        is not None
    ):
        return _stopped(ctx, still_on_other=False)
    now = utcnow()
    if channel is Channel.WHATSAPP:
        stop = (
            update(Subscriber)
            .where(Subscriber.whatsapp_status != SubscriberStatus.OPTED_OUT)
            .values(whatsapp_status=SubscriberStatus.OPTED_OUT, whatsapp_opted_out_at=now)
        )
    else:
        stop = (
            update(Subscriber)
            .where(Subscriber.status != SubscriberStatus.OPTED_OUT)
            .values(status=SubscriberStatus.OPTED_OUT, opted_out_at=now, opt_out_confirmed_at=None)
        )
    changed = desk.session.execute(
        stop.where(Subscriber.phone_index == ctx.key)
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    desk.forget(ctx.key)  # changed behind the ORM's back: its loaded row is stale
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return None  # already opted out (or a simultaneous STOP won): one confirmation only
    subscriber = desk.find(ctx.key)
    assert subscriber is not None
    still_on_other = (
        whatsapp.status_on(subscriber, whatsapp.other(channel)) is SubscriberStatus.ACTIVE
    )
    if not still_on_other:
        # Opting out of everything: the areas are forgotten too (collect less).
        desk.session.execute(
            delete(Subscription).where(Subscription.subscriber_id == subscriber.id)
        )
    return _stopped(ctx, still_on_other)


def _stopped(ctx: _Context, still_on_other: bool) -> Reply:
    if ctx.channel is Channel.WHATSAPP:
        # No carrier stands between us and WhatsApp: this answer is ours to send.
        return ctx.say("sms.stopped_whatsapp" if still_on_other else "sms.stopped_whatsapp_only")
    message_id = "sms.stopped_sms_whatsapp_on" if still_on_other else "sms.stopped"
    return ctx.say(message_id, ReplyKind.OPT_OUT_CONFIRMATION)


def _start(ctx: _Context) -> Reply:
    """START resumes the channel it came by (a number we never stored stays unstored)."""
    if ctx.subscriber is not None:
        whatsapp.set_status_on(ctx.subscriber, ctx.channel, SubscriberStatus.ACTIVE, utcnow())
    return ctx.say("sms.started")


def _help(ctx: _Context) -> Reply:
    return ctx.say("sms.help")


def _rights(ctx: _Context) -> Reply:
    """RIGHTS, or one topic (RIGHTS HOME): in the words a coordinator set, if any."""
    topic = ctx.command.argument
    message_id = f"sms.rights_{topic}" if topic else "sms.rights"
    url = f"{ctx.desk.rights_url}?lang={ctx.language.value}"
    template = wording_of(ctx.desk.session, ctx.language, message_id)
    if template is None:
        return ctx.say(message_id, url=url)
    return Reply(template.format(url=url))  # checked: {url} or no placeholder


def _not_understood(ctx: _Context) -> Reply:
    return ctx.say("sms.not_understood")


def _join(ctx: _Context) -> Reply | None:
    """JOIN one area, several ("Cully, Lents", "Cully and Lents"), or a ZIP: a ZIP several
    areas share joins them all, and the answer names each (LEAVE drops one). Asking
    "which one?" would cost a second round trip when people sign up in a hurry.

    A close misspelling is offered as a pending subscription: "Did you mean Cully?
    Reply YES to get alerts for Cully", so that YES or SI is all it takes.
    """
    directory = ctx.desk.directory()
    if not ctx.command.argument:
        return ctx.say("sms.join_which", example=directory.example())
    resolved = directory.resolve_list(ctx.command.argument)
    places: list[Place] = []
    for _words, found in resolved:
        if not found.places:
            if len(resolved) == 1 and len(found.choices) == 1:
                return _offer(ctx, directory, found.choices[0])
            return _not_found(ctx, found, directory)
        places.extend(place for place in found.places if place not in places)
    return _subscribe(ctx, places)


def _offer(ctx: _Context, directory: AreaDirectory, name: str) -> Reply | None:
    offered = directory.resolve(name).area
    if offered is None:  # a suggestion is always a name of the directory; be safe
        return ctx.say("sms.unknown_area", example=directory.example())
    return _subscribe(ctx, [offered], "sms.did_you_mean_one")


def _not_found(ctx: _Context, found: Resolution, directory: AreaDirectory) -> Reply:
    if found.choices:
        return ctx.say("sms.did_you_mean", choices=join_names(list(found.choices)))
    return ctx.say("sms.unknown_area", example=directory.example())


def _subscribe(
    ctx: _Context, places: list[Place], pending_message: str = "sms.join_pending"
) -> Reply | None:
    """Pending subscriptions to ``places`` (YES confirms them); the answer names them."""
    if ctx.subscriber is not None:  # a JOIN is as good a sign of life as a YES
        reconfirm.answered(ctx.subscriber, utcnow())
    mine = {s.area_id: s for s in ctx.desk.subscriptions(ctx.subscriber)}
    confirmed = [
        p for p in places if p.id in mine and mine[p.id].status is SubscriptionStatus.CONFIRMED
    ]
    waiting = [p for p in places if p not in confirmed]
    if not waiting:
        return _join_here(ctx, join_names([p.name for p in confirmed]))
    verdict = ctx.desk.limits.confirmation(ctx.key)
    if verdict is not LimitVerdict.ALLOWED:
        return limited_reply(verdict, ctx.language, "sms.confirm_limited")
    subscriber = ctx.subscriber_now()
    for place in waiting:
        if place.id not in mine:
            ctx.desk.session.add(
                Subscription(subscriber_id=subscriber.id, area_id=place.id, channel=ctx.channel)
            )
    return ctx.say(pending_message, area=join_names([p.name for p in waiting]))


def _join_here(ctx: _Context, areas: str) -> Reply:
    """A JOIN for areas already confirmed: on a channel the person was not active on, it
    is their consent to that channel (written from it, so it reaches them)."""
    assert ctx.subscriber is not None
    if whatsapp.status_on(ctx.subscriber, ctx.channel) is SubscriberStatus.ACTIVE:
        return ctx.say("sms.join_already", area=areas)
    ctx.subscriber_now()
    return ctx.say(f"sms.join_here_{ctx.channel.value}", area=areas)


def _yes(ctx: _Context) -> Reply:
    """YES/SI confirms pending subscriptions; with none, it answers an open question
    (an announcement's "1 for yes"); with neither, there is nothing to confirm."""
    pending = [
        s for s in ctx.desk.subscriptions(ctx.subscriber) if s.status is SubscriptionStatus.PENDING
    ]
    kept = ctx.subscriber is not None and reconfirm.answered(ctx.subscriber, utcnow())
    if not pending and kept:
        return ctx.say("sms.reconfirmed", areas=_confirmed_names(ctx))
    if not pending:
        return _answer(ctx, "yes") or ctx.say("sms.nothing_pending")
    now = utcnow()
    for subscription in pending:
        subscription.status, subscription.confirmed_at = SubscriptionStatus.CONFIRMED, now
    return ctx.say("sms.confirmed", areas=join_names([s.area.name for s in pending]))


def _confirmed_names(ctx: _Context) -> str:
    return join_names(
        [
            s.area.name
            for s in ctx.desk.subscriptions(ctx.subscriber)
            if s.status is SubscriptionStatus.CONFIRMED
        ]
    )


def _leave(ctx: _Context) -> Reply:
    if not ctx.command.argument:
        return _areas(ctx)  # show what they can leave
    directory = ctx.desk.directory()
    found = directory.resolve(ctx.command.argument)
    if not found.places:
        return _not_found(ctx, found, directory)
    mine = {s.area_id: s for s in ctx.desk.subscriptions(ctx.subscriber)}
    leaving = [place for place in found.places if place.id in mine]
    if not leaving:
        names = join_names([place.name for place in found.places])
        return ctx.say("sms.not_subscribed", area=names)
    for place in leaving:
        ctx.desk.session.delete(mine[place.id])
    return ctx.say("sms.left", area=join_names([place.name for place in leaving]))


def _areas(ctx: _Context) -> Reply:
    names = [
        s.area.name
        if s.status is SubscriptionStatus.CONFIRMED
        else text(ctx.language, "sms.pending_marker", area=s.area.name)
        for s in ctx.desk.subscriptions(ctx.subscriber)
    ]
    if not names:
        return ctx.say("sms.no_areas")
    return ctx.say("sms.areas", areas=join_names(names))


def _lang(ctx: _Context) -> Reply:
    if ctx.command.argument not in (Language.EN.value, Language.ES.value):
        return ctx.say("sms.lang_which")
    ctx.set_language(Language(ctx.command.argument))
    return ctx.say("sms.lang_set")


def _news(ctx: _Context) -> Reply:
    """JOIN NEWS / NEWS STOP: announcements' own consent, apart from alerts'."""
    if ctx.command.argument == "on":
        announcements.set_consent(ctx.subscriber_now(), True)
        return ctx.say("sms.news_on")
    if ctx.subscriber is not None:
        announcements.set_consent(ctx.subscriber, False)
    return ctx.say("sms.news_off")


def _join_drill(ctx: _Context) -> Reply:
    """JOIN DRILL: take part in the running drill — its alerts, marked, come to this
    number (a subscriber row is made if needed; it joins no area, so no real alert)."""
    drill = drills.current(ctx.desk.session, utcnow())
    if drill is None:
        return ctx.say("sms.drill_none")
    # Taking part in a practice is no consent to real alerts on this channel, nor a
    # "still want alerts?" answered: a row is made if needed, nothing else changes.
    drills.join(ctx.desk.session, drill, ctx.subscriber_now(consent=False).id)
    return ctx.say("sms.drill_joined", code=drill.code, area=drill.area.name)


def _answer(ctx: _Context, said: str) -> Reply | None:
    """Count the answer to the announcement that asked this person; None when none did."""
    if ctx.subscriber is None:
        return None
    asked = announcements.open_rsvp(ctx.desk.session, ctx.subscriber.id, utcnow())
    if asked is None:
        return None
    announcements.answer(ctx.desk.session, asked, said)
    return ctx.say(f"sms.answer_{said}")


HANDLERS: dict[Keyword, Callable[[_Context], Reply | None]] = {
    Keyword.STOP: _stop,
    Keyword.START: _start,
    Keyword.HELP: _help,
    Keyword.RIGHTS: _rights,
    Keyword.JOIN: _join,
    Keyword.YES: _yes,
    Keyword.LEAVE: _leave,
    Keyword.AREAS: _areas,
    Keyword.LANG: _lang,
    Keyword.NEWS: _news,
    Keyword.JOIN_DRILL: _join_drill,
}

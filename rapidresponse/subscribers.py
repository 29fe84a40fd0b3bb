"""What a text from the public does to subscriptions, and what we answer.

Opt-out is carrier law, not a feature: STOP and its synonyms always work (even past rate
limits), get exactly one confirmation, and from then on nothing at all goes to that number
except the answer to START/UNSTOP. ``may_text`` is the single rule every outbound path
(webhook answers and every sender) asks before texting anyone.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from rapidresponse.commands import Command, Keyword
from rapidresponse.crypto import BlindIndex, FieldCipher, Purpose
from rapidresponse.directory import AreaDirectory
from rapidresponse.messages import join_names, text
from rapidresponse.models import (
    Area,
    Language,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)


class ReplyKind(str, enum.Enum):
    NORMAL = "normal"
    OPT_OUT_CONFIRMATION = "opt_out_confirmation"  # the one text allowed after STOP
    OPT_IN_ANSWER = "opt_in_answer"  # the answer to START/UNSTOP


@dataclass(frozen=True)
class Reply:
    text: str
    kind: ReplyKind = ReplyKind.NORMAL


class Verdict(str, enum.Enum):
    ALLOWED = "allowed"
    NOTIFY = "notify"  # over the limit: say so, once
    SILENT = "silent"  # over the limit and already told: answer nothing (no SMS pumping)


class AbuseLimits(Protocol):
    """Per-number limits, keyed by the number's blind index (never the number itself)."""

    def inbound(self, key: str) -> Verdict: ...

    def confirmation(self, key: str) -> Verdict: ...


EXEMPT_FROM_LIMITS = frozenset({Keyword.STOP, Keyword.START})


def may_text(session: Session, index: BlindIndex, phone: str, kind: ReplyKind) -> bool:
    """Whether anything of ``kind`` may be sent to ``phone`` now. Asked by every sender."""
    status = session.scalar(
        select(Subscriber.status).where(
            Subscriber.phone_index == index.digest(phone, Purpose.PHONE_INDEX)
        )
    )
    if status is not SubscriberStatus.OPTED_OUT:
        return True
    return kind in (ReplyKind.OPT_OUT_CONFIRMATION, ReplyKind.OPT_IN_ANSWER)


class SubscriberDesk:
    """Handles the subscriber commands of one inbound text, inside the caller's transaction."""

    def __init__(
        self, session: Session, cipher: FieldCipher, index: BlindIndex, limits: AbuseLimits
    ) -> None:
        self.session = session
        self.cipher = cipher
        self.index = index
        self.limits = limits

    def handle(self, phone: str, command: Command) -> Reply | None:
        """Apply ``command`` from ``phone`` (E.164); return the answer, or None for silence."""
        key = self.index.digest(phone, Purpose.PHONE_INDEX)
        subscriber = self._find(key)
        if (
            subscriber is not None
            and subscriber.status is SubscriberStatus.OPTED_OUT
            and command.keyword not in EXEMPT_FROM_LIMITS
        ):
            return None  # nothing but START gets an answer after STOP
        language = self._language(subscriber, command)
        if command.keyword not in EXEMPT_FROM_LIMITS:
            verdict = self.limits.inbound(key)
            if verdict is not Verdict.ALLOWED:
                return self._limited(verdict, language, "sms.rate_limited")
        handler = self._handlers().get(command.keyword, _Handler.not_understood)
        return handler(_Context(self, phone, key, subscriber, language, command))

    def _handlers(self) -> dict[Keyword, Callable[[_Context], Reply | None]]:
        return {
            Keyword.STOP: _Handler.stop,
            Keyword.START: _Handler.start,
            Keyword.HELP: _Handler.help,
            Keyword.RIGHTS: _Handler.rights,
            Keyword.JOIN: _Handler.join,
            Keyword.YES: _Handler.yes,
            Keyword.LEAVE: _Handler.leave,
            Keyword.AREAS: _Handler.areas,
            Keyword.LANG: _Handler.lang,
        }

    def _find(self, key: str) -> Subscriber | None:
        return self.session.scalar(select(Subscriber).where(Subscriber.phone_index == key))

    def _language(self, subscriber: Subscriber | None, command: Command) -> Language:
        # A Spanish keyword sets Spanish; an English one does not reset it (STOP, YES and
        # START are what carriers teach everyone, whatever language they speak).
        if command.language is Language.ES:
            if subscriber is not None:
                subscriber.language = Language.ES
            return Language.ES
        return subscriber.language if subscriber is not None else Language.EN

    def _limited(self, verdict: Verdict, language: Language, message_id: str) -> Reply | None:
        return Reply(text(language, message_id)) if verdict is Verdict.NOTIFY else None

    def subscriber_for(self, phone: str, key: str, language: Language) -> Subscriber:
        subscriber = self._find(key)
        if subscriber is None:
            subscriber = Subscriber(
                phone_index=key,
                language=language,
                phone_sealed=self.cipher.encrypt(phone, Purpose.SUBSCRIBER_PHONE),
            )
            self.session.add(subscriber)
            self.session.flush()
        return subscriber

    def directory(self) -> AreaDirectory:
        return AreaDirectory(self.session.scalars(select(Area)))

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

    def say(self, message_id: str, kind: ReplyKind = ReplyKind.NORMAL, **params: str) -> Reply:
        return Reply(text(self.language, message_id, **params), kind)

    def subscriber_now(self) -> Subscriber:
        if self.subscriber is None:
            self.subscriber = self.desk.subscriber_for(self.phone, self.key, self.language)
        return self.subscriber


class _Handler:
    """One function per keyword; each changes state and says what to answer."""

    @staticmethod
    def stop(ctx: _Context) -> Reply | None:
        if ctx.subscriber is not None and ctx.subscriber.status is SubscriberStatus.OPTED_OUT:
            return None  # exactly one confirmation
        subscriber = ctx.subscriber_now()
        subscriber.status, subscriber.opted_out_at = SubscriberStatus.OPTED_OUT, utcnow()
        # Opting out of everything: the areas are forgotten too (collect less).
        ctx.desk.session.execute(
            delete(Subscription).where(Subscription.subscriber_id == subscriber.id)
        )
        return ctx.say("sms.stopped", ReplyKind.OPT_OUT_CONFIRMATION)

    @staticmethod
    def start(ctx: _Context) -> Reply:
        subscriber = ctx.subscriber_now()
        was_opted_out = subscriber.status is SubscriberStatus.OPTED_OUT
        subscriber.status, subscriber.opted_out_at = SubscriberStatus.ACTIVE, None
        kind = ReplyKind.OPT_IN_ANSWER if was_opted_out else ReplyKind.NORMAL
        return ctx.say("sms.started", kind)

    @staticmethod
    def help(ctx: _Context) -> Reply:
        return ctx.say("sms.help")

    @staticmethod
    def rights(ctx: _Context) -> Reply:
        return ctx.say("sms.rights")

    @staticmethod
    def not_understood(ctx: _Context) -> Reply:
        return ctx.say("sms.not_understood")

    @staticmethod
    def join(ctx: _Context) -> Reply | None:
        directory = ctx.desk.directory()
        if not ctx.command.argument:
            return ctx.say("sms.join_which", example=directory.example())
        found = directory.resolve(ctx.command.argument)
        if found.area is None:
            if found.choices:
                return ctx.say("sms.did_you_mean", choices=join_names(list(found.choices)))
            return ctx.say("sms.unknown_area", example=directory.example())
        return _Handler._subscribe(ctx, found.area)

    @staticmethod
    def _subscribe(ctx: _Context, area: Area) -> Reply | None:
        existing = next(
            (s for s in ctx.desk.subscriptions(ctx.subscriber) if s.area_id == area.id), None
        )
        if existing is not None and existing.status is SubscriptionStatus.CONFIRMED:
            return ctx.say("sms.join_already", area=area.name)
        verdict = ctx.desk.limits.confirmation(ctx.key)
        if verdict is not Verdict.ALLOWED:
            return ctx.desk._limited(verdict, ctx.language, "sms.confirm_limited")
        if existing is None:
            subscriber = ctx.subscriber_now()
            subscriber.status = SubscriberStatus.ACTIVE  # it can receive: it just texted us
            ctx.desk.session.add(Subscription(subscriber_id=subscriber.id, area_id=area.id))
        return ctx.say("sms.join_pending", area=area.name)

    @staticmethod
    def yes(ctx: _Context) -> Reply:
        pending = [
            s
            for s in ctx.desk.subscriptions(ctx.subscriber)
            if s.status is SubscriptionStatus.PENDING
        ]
        if not pending:
            return ctx.say("sms.nothing_pending")
        now = utcnow()
        for subscription in pending:
            subscription.status, subscription.confirmed_at = SubscriptionStatus.CONFIRMED, now
        return ctx.say("sms.confirmed", areas=join_names([s.area.name for s in pending]))

    @staticmethod
    def leave(ctx: _Context) -> Reply:
        found = ctx.desk.directory().resolve(ctx.command.argument)
        if found.area is None:
            return _Handler.areas(ctx)  # show what they can leave
        mine = next(
            (s for s in ctx.desk.subscriptions(ctx.subscriber) if s.area_id == found.area.id), None
        )
        if mine is None:
            return ctx.say("sms.not_subscribed", area=found.area.name)
        ctx.desk.session.delete(mine)
        return ctx.say("sms.left", area=found.area.name)

    @staticmethod
    def areas(ctx: _Context) -> Reply:
        names = [
            s.area.name
            if s.status is SubscriptionStatus.CONFIRMED
            else text(ctx.language, "sms.pending_marker", area=s.area.name)
            for s in ctx.desk.subscriptions(ctx.subscriber)
        ]
        if not names:
            return ctx.say("sms.no_areas")
        return ctx.say("sms.areas", areas=join_names(names))

    @staticmethod
    def lang(ctx: _Context) -> Reply:
        if ctx.command.argument not in (Language.EN.value, Language.ES.value):
            return ctx.say("sms.lang_which")
        ctx.language = Language(ctx.command.argument)
        ctx.subscriber_now().language = ctx.language
        return ctx.say("sms.lang_set")

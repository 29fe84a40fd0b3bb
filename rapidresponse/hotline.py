"""Every text to the hotline number, routed: subscriber command, responder command, or report.

Anything that is not a command is a sighting report, and is never lost: even from an
opted-out or rate-limited number it is stored (that number just hears nothing back).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from rapidresponse import drills
from rapidresponse.commands import Keyword, normalize, parse
from rapidresponse.crypto import BlindIndex
from rapidresponse.directory import AreaDirectory
from rapidresponse.models import Drill, ReportChannel, utcnow
from rapidresponse.people import find_responder
from rapidresponse.reports import Intake, IntakeRules, ReportDesk, Sighting
from rapidresponse.responders import RESPONDER_WORDS, ResponderDesk
from rapidresponse.shredding import ShreddingCipher
from rapidresponse.subscribers import (
    AbuseLimits,
    LanguageMemory,
    Reply,
    ReplyKind,
    SubscriberDesk,
    permit_text,
)
from rapidresponse.verification import Transition

MAX_BODY_CHARS = 1600  # Twilio's own limit for one inbound message

# What only an SMS conversation may change where WhatsApp carries no alerts (Twilio with
# no WHATSAPP_FROM): over WhatsApp these are then answered with how to do it by SMS.
# Where it does, each channel has its own consent and its own STOP.
SMS_ONLY_WORDS = frozenset(
    {
        Keyword.STOP,
        Keyword.START,
        Keyword.JOIN,
        Keyword.YES,
        Keyword.LEAVE,
        Keyword.AREAS,
        Keyword.LANG,
        Keyword.NEWS,
        Keyword.JOIN_DRILL,
    }
)
SUBSCRIBER_WORDS = frozenset(
    {
        Keyword.STOP,
        Keyword.START,
        Keyword.HELP,
        Keyword.JOIN,
        Keyword.YES,
        Keyword.LEAVE,
        Keyword.AREAS,
        Keyword.LANG,
        Keyword.RIGHTS,
        Keyword.NEWS,
        Keyword.JOIN_DRILL,
    }
)


# Replies people send to any text ("ok", "thanks"): not sightings. Anything longer is.
TRIVIAL = frozenset(
    {
        "",
        "ok",
        "okay",
        "k",
        "thanks",
        "thank you",
        "thx",
        "ty",
        "gracias",
        "muchas gracias",
        "ok gracias",
        "ok thanks",
        "de nada",
        "bien",
        "vale",
    }
)


def is_trivial(body: str) -> bool:
    return normalize(body) in TRIVIAL


@dataclass(frozen=True)
class Outcome:
    """What to answer, and what the caller must do after committing."""

    reply: Reply | None
    intake: Intake | None = None  # a report was stored: dispatch, flags, live hints
    transition: Transition | None = None  # an incident a verdict just decided
    touched: int | None = None  # an incident a responder's GO or verdict changed


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float


class Hotline:
    def __init__(
        self,
        session: Session,
        cipher: ShreddingCipher,
        index: BlindIndex,
        limits: AbuseLimits,
        reporter_hashes: Callable[[str], tuple[str, ...]],
        rules: IntakeRules,
        quorum: int,
        languages: LanguageMemory | None = None,
        directory: AreaDirectory | None = None,
        rights_url: str = "",
        whatsapp_alerts: bool = True,
    ) -> None:
        self.session = session
        self.whatsapp_alerts = whatsapp_alerts
        self.cipher = cipher
        self.index = index
        self.quorum = quorum
        # Asked several times per text (linking, limits, language): worked out once.
        self.reporter_hashes = functools.cache(reporter_hashes)
        self.rules = rules
        self.directory = directory
        self.channel = ReportChannel.SMS  # of the message being handled
        self.subscribers = SubscriberDesk(
            session, cipher, index, limits, self.reporter_hashes, languages, directory, rights_url
        )

    def handle(
        self,
        phone: str,
        body: str,
        location: Location | None = None,
        channel: ReportChannel = ReportChannel.SMS,
    ) -> Outcome:
        """One inbound message from ``phone`` on ``channel`` (SMS or WhatsApp)."""
        self.channel = self.subscribers.channel = channel
        if len(body) > MAX_BODY_CHARS:
            return Outcome(self.subscribers.too_long(phone))
        command = parse(body)
        if command.keyword is Keyword.REPORT and is_trivial(body):
            return Outcome(None)  # "ok", "thanks", "👍": not a sighting, and no answer owed
        by_sms_only = channel is ReportChannel.WHATSAPP and not self.whatsapp_alerts
        if by_sms_only and command.keyword in SMS_ONLY_WORDS:
            return Outcome(self.subscribers.by_sms_only(phone, command))
        if command.keyword in SUBSCRIBER_WORDS:
            return Outcome(self.subscribers.handle(phone, command))
        if command.keyword is Keyword.ANSWER and not by_sms_only:
            # 1 / 2 to an announcement that asked, by whichever channel it went.
            answered = self.subscribers.answer(phone, command)
            if answered is not None:
                return Outcome(answered)  # counted; never a report
        if command.keyword is Keyword.DRILL:
            return self._drill(phone, body.strip(), command.argument, location)
        if command.keyword in RESPONDER_WORDS:
            responder = find_responder(self.session, self.index, phone)
            if responder is not None and responder.active:
                desk = ResponderDesk(self.session, self.cipher, self.quorum)
                answer = desk.handle(responder, command)
                return Outcome(answer.reply, transition=answer.transition, touched=answer.touched)
        # Not a command, or responder words from someone who is not one: a report.
        return self._report(phone, body.strip(), location)

    def may_answer(self, phone: str, reply: Reply) -> bool:
        """``permit_text`` for the answer to the text just handled, in its transaction:
        a plain answer is decided by the subscriber row the text already read, when it
        did; a STOP confirmation always by ``permit_text``'s conditional UPDATE."""
        if self.channel is ReportChannel.WHATSAPP:
            return True  # an SMS opt-out stops SMS; this answer goes back on WhatsApp
        if reply.kind is ReplyKind.NORMAL:
            opted_out = self.subscribers.opted_out(phone)
            if opted_out is not None:
                return not opted_out
        return permit_text(self.session, self.index, phone, reply.kind)

    def _drill(self, phone: str, text: str, said: str, location: Location | None) -> Outcome:
        """DRILL + a report: the running drill's. With no drill running it is a real
        report like any other text (a sighting is never dropped for a word)."""
        now = utcnow()
        drill = drills.current(self.session, now)
        if drill is None:
            ended = drills.just_ended(self.session, now) if said else None
            if ended is not None:
                return self._late_drill_report(phone, text, location, ended)
            if not said:
                return Outcome(self.subscribers.drill_answer(phone, "sms.drill_none"))
            return self._report(phone, text, location)
        if not said:
            return Outcome(
                self.subscribers.drill_answer(
                    phone, "sms.drill_how", code=drill.code, area=drill.area.name
                )
            )
        return self._report(phone, text, location, drill)

    def _late_drill_report(
        self, phone: str, text: str, location: Location | None, drill: Drill
    ) -> Outcome:
        """Kept with the drill that just ended, closed at once; the sender is told how to
        report something real."""
        outcome = self._report(phone, text, location, drill)
        assert outcome.intake is not None
        drills.keep_late(self.session, outcome.intake.incident_id)
        if outcome.reply is None:
            return outcome  # silenced or over the limit: still nothing to say
        reply = self.subscribers.drill_answer(
            phone, "sms.drill_ended", counted=True, code=drill.code
        )
        return Outcome(reply, outcome.intake)

    def _report(
        self, phone: str, text: str, location: Location | None, drill: Drill | None = None
    ) -> Outcome:
        sighting = Sighting(
            text=text,
            channel=self.channel,
            reporter_hashes=self.reporter_hashes(phone),
            latitude=location.latitude if location else None,
            longitude=location.longitude if location else None,
            drill_id=drill.id if drill else None,
            drill_area_id=drill.area_id if drill else None,
        )
        desk = ReportDesk(self.session, self.cipher, self.rules, self.directory)
        intake = desk.receive(sighting)
        hashes = sighting.reporter_hashes
        reply = self.subscribers.report_reply(phone, intake, text, hashes[0] if hashes else None)
        return Outcome(reply, intake)

"""Texts from responders: ON/OFF shifts, GO, and verdicts on the incidents they were sent to."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from rapidresponse import drills, practice
from rapidresponse.commands import Command, Keyword
from rapidresponse.messages import text
from rapidresponse.models import Dispatch, Language, Practice, Responder, Verdict, utcnow
from rapidresponse.shredding import ShreddingCipher
from rapidresponse.subscribers import Reply
from rapidresponse.verification import (
    StaleDispatch,
    Transition,
    acknowledge,
    find_dispatch,
    record_verdict,
    set_shift,
)

RESPONDER_WORDS = frozenset(
    {
        Keyword.ON,
        Keyword.OFF,
        Keyword.GO,
        Keyword.CONFIRM,
        Keyword.FALSE,
        Keyword.UNCLEAR,
        Keyword.PRACTICE,
    }
)
VERDICTS = {
    Keyword.CONFIRM: Verdict.CONFIRM,
    Keyword.FALSE: Verdict.FALSE,
    Keyword.UNCLEAR: Verdict.UNCLEAR,
}


@dataclass(frozen=True)
class ResponderAnswer:
    reply: Reply
    transition: Transition | None = None
    touched: int | None = None  # an incident whose dispatches changed: the board re-reads it


class ResponderDesk:
    def __init__(self, session: Session, cipher: ShreddingCipher, quorum: int) -> None:
        self.session = session
        self.cipher = cipher
        self.quorum = quorum

    def handle(self, responder: Responder, command: Command) -> ResponderAnswer:
        if command.language is Language.ES:
            responder.language = Language.ES
        responder.last_seen_at = utcnow()
        language = responder.language
        if command.keyword in (Keyword.ON, Keyword.OFF):
            set_shift(self.session, responder, command.keyword is Keyword.ON)
            return _say(
                language, "sms.on_shift" if command.keyword is Keyword.ON else "sms.off_shift"
            )
        if command.keyword is Keyword.PRACTICE:
            return self._start_practice(responder)
        now = utcnow()
        drill = practice.open_practice(self.session, responder, command.code, now)
        if drill is not None and command.code is not None:
            return _practise(drill, command.keyword, language, now)  # never an incident's code
        dispatches = find_dispatch(self.session, responder, command.code)
        if not dispatches:
            # A real dispatch first: a GO without a code goes to a practice only when no
            # real one is waiting.
            if drill is not None:
                return _practise(drill, command.keyword, language, now)
            return _say(language, "sms.no_dispatch")
        if len(dispatches) > 1:
            codes = [d.incident.code for d in dispatches]
            return _say(language, "sms.which_dispatch", codes=", ".join(codes), example=codes[0])
        dispatch = dispatches[0]
        answer = self._answer_dispatch(dispatch, command, language)
        if dispatch.incident.drill_id is None:
            return answer
        # A drill's page is answered like a real one, and every answer says DRILL.
        return replace(
            answer, reply=replace(answer.reply, text=drills.mark(answer.reply.text, language))
        )

    def _answer_dispatch(
        self, dispatch: Dispatch, command: Command, language: Language
    ) -> ResponderAnswer:
        """GO or a verdict on one dispatch."""
        code = dispatch.incident.code
        if command.keyword is Keyword.GO:
            if not acknowledge(self.session, dispatch.id):
                return _say(language, "sms.dispatch_closed", code=code)
            going = _say(language, "sms.go_ack", code=code)
            return ResponderAnswer(going.reply, touched=dispatch.incident_id)
        verdict = VERDICTS[command.keyword]
        try:
            transition = record_verdict(
                self.session,
                self.cipher,
                dispatch.incident_id,
                dispatch.id,
                verdict,
                command.argument,
                self.quorum,
            )
        except StaleDispatch:
            return _say(language, "sms.dispatch_closed", code=code)
        word = text(language, f"sms.verdict.{verdict.value}")
        reply = Reply(text(language, "sms.verdict_ack", code=code, verdict=word))
        return ResponderAnswer(reply, transition, touched=dispatch.incident_id)

    def _start_practice(self, responder: Responder) -> ResponderAnswer:
        started = practice.start(self.session, responder, utcnow())
        area = (
            responder.areas[0].name
            if responder.areas
            else text(responder.language, "sms.practice_somewhere")
        )
        return _say(responder.language, "sms.practice_page", code=started.code, area=area)


def _practise(
    drill: Practice, keyword: Keyword, language: Language, now: datetime
) -> ResponderAnswer:
    """GO or a verdict on a practice: timed, and said how long it took."""
    if keyword is Keyword.GO:
        after = practice.go(drill, now)
        return _say(language, "sms.practice_go", code=drill.code, after=practice.spoken(after))
    if drill.go_at is None:
        return _say(language, "sms.practice_go_first", code=drill.code)
    to_go, to_verdict = practice.decide(drill, VERDICTS[keyword], now)
    return _say(
        language,
        "sms.practice_done",
        code=drill.code,
        go_after=practice.spoken(to_go),
        verdict_after=practice.spoken(to_verdict),
    )


def _say(language: Language, message_id: str, **params: str) -> ResponderAnswer:
    return ResponderAnswer(Reply(text(language, message_id, **params)))

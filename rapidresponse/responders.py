"""Texts from responders: ON/OFF shifts, GO, and verdicts on the incidents they were sent to."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from rapidresponse.commands import Command, Keyword
from rapidresponse.messages import text
from rapidresponse.models import Language, Responder, Verdict, utcnow
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
    {Keyword.ON, Keyword.OFF, Keyword.GO, Keyword.CONFIRM, Keyword.FALSE, Keyword.UNCLEAR}
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
        dispatches = find_dispatch(self.session, responder, command.code)
        if not dispatches:
            return _say(language, "sms.no_dispatch")
        if len(dispatches) > 1:
            codes = [d.incident.code for d in dispatches]
            return _say(language, "sms.which_dispatch", codes=", ".join(codes), example=codes[0])
        dispatch, code = dispatches[0], dispatches[0].incident.code
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


def _say(language: Language, message_id: str, **params: str) -> ResponderAnswer:
    return ResponderAnswer(Reply(text(language, message_id, **params)))

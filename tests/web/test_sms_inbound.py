"""POST /sms/inbound end to end: signed like Twilio signs, answered in TwiML, in two languages.

Requests are signed with twilio's own RequestValidator. The app sends through a local
Twilio-compatible server, so a test can also check that nothing reached it.
"""

from __future__ import annotations

import itertools
import logging
import threading
from datetime import timedelta
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from dispatch.senders import SendError
from dispatch.services import Services
from rapidresponse.crypto import Purpose
from rapidresponse.models import (
    Base,
    Language,
    Subscriber,
    SubscriberStatus,
    Subscription,
    utcnow,
)
from rapidresponse.subscribers import ReplyKind
from tests.dispatch.conftest import ACCOUNT_SID, FROM_NUMBER
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import (
    ALICE,
    BETO,
    PUBLIC_URL,
    Phone,
    new_sid,
    send,
    sign,
    twiml_message,
)
from tests.web.test_access import assert_security_headers
from web import sms


def subscriber(services: Services, number: str) -> Subscriber | None:
    with services.database.session() as session:
        return session.scalar(
            select(Subscriber).where(
                Subscriber.phone_index == services.index.digest(number, Purpose.PHONE_INDEX)
            )
        )


def areas_of(services: Services, number: str) -> dict[str, str]:
    found = subscriber(services, number)
    if found is None:
        return {}
    with services.database.session() as session:
        rows = session.scalars(
            select(Subscription).where(Subscription.subscriber_id == found.id)
        ).all()
        return {row.area.slug: row.status.value for row in rows}


def untouched(services: Services) -> bool:
    """Nothing stored at all: no subscriber, no subscription, no message id, no counter."""
    with services.database.session() as session:
        rows = [
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Subscriber, Subscription)
        ]
    stored = [
        *services.volatile.scan_iter(match="*rr-limits*"),
        *services.volatile.scan_iter(match="rr:seen:*"),
    ]
    return rows == [0, 0] and not stored


def state(services: Services) -> tuple[int, int]:
    with services.database.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Subscriber)) or 0,
            session.scalar(select(func.count()).select_from(Subscription)) or 0,
        )


@pytest.fixture(autouse=True)
def _check_the_api(fake: FakeTwilio) -> None:
    """Every test in this module gets the API check above."""


# --- subscribing, in English and Spanish --------------------------------------------


def test_join_then_yes_subscribes_in_english(
    alice: Phone, twilio_services: Services, fake: FakeTwilio
) -> None:
    assert alice.text("JOIN Cully") == (
        "Reply YES to get alerts for Cully. Msg&data rates may apply. Text STOP to end."
    )
    assert areas_of(twilio_services, ALICE) == {"cully": "pending"}
    assert alice.text("yes") == (
        "Confirmed: you will get alerts for Cully. Save this number: real alerts come from it "
        "and end with our name. Text LEAVE + area to drop one, STOP to end all."
    )
    assert areas_of(twilio_services, ALICE) == {"cully": "confirmed"}
    assert fake.requests == []  # answers travel as TwiML, not as extra API calls


def test_unirse_then_si_subscribes_in_spanish(beto: Phone, twilio_services: Services) -> None:
    assert beto.text("unirse cully") == (
        "Responda SI para recibir alertas de Cully. Pueden "
        "aplicar tarifas. Mande BAJA para terminar."
    )
    found = subscriber(twilio_services, BETO)
    assert found is not None and found.language is Language.ES
    assert beto.text("Sí") == (
        "Confirmado: le enviaremos alertas de Cully. Guarde este numero: las alertas reales "
        "llegan de el y terminan con nuestro nombre. Mande SALIR + barrio para quitar uno, "
        "BAJA para terminar."
    )
    assert areas_of(twilio_services, BETO) == {"cully": "confirmed"}


def test_several_areas_by_name_alias_and_zip(alice: Phone, twilio_services: Services) -> None:
    alice.text("JOIN St Johns")
    alice.text("JOIN the pearl")
    alice.text("JOIN 97266")
    assert alice.text("YES") is not None
    subscribed = areas_of(twilio_services, ALICE)
    assert {"st-johns", "pearl-district"} <= set(subscribed)
    assert set(subscribed.values()) == {"confirmed"}
    answer = alice.text("AREAS")
    assert answer is not None and answer.startswith("Your areas: ") and "St. Johns" in answer


def test_areas_shows_what_still_waits_for_yes(alice: Phone) -> None:
    alice.text("JOIN Cully")
    assert alice.text("areas") == "Your areas: Cully (reply YES). Text LEAVE + area to drop one."


def test_join_twice_says_already(alice: Phone) -> None:
    alice.text("JOIN Cully")
    alice.text("YES")
    assert alice.text("JOIN cully!") == "You already get alerts for Cully."


def test_leave_drops_one_area(alice: Phone, twilio_services: Services) -> None:
    alice.text("JOIN Cully")
    alice.text("JOIN Lents")
    alice.text("YES")
    assert alice.text("LEAVE Cully") == "You will no longer get alerts for Cully."
    assert areas_of(twilio_services, ALICE) == {"lents": "confirmed"}
    assert alice.text("LEAVE Cully") == "You do not get alerts for Cully."


def test_salir_and_zonas_answer_in_spanish(beto: Phone) -> None:
    beto.text("UNIRSE Lents")
    beto.text("SI")
    assert beto.text("ZONAS") == "Sus zonas: Lents. Mande SALIR + barrio para quitar uno."
    assert beto.text("salir lents") == "Ya no le enviaremos alertas de Lents."
    assert beto.text("zonas") == "No tiene zonas. Mande UNIRSE + barrio o ZIP."


def test_yes_with_nothing_pending(alice: Phone) -> None:
    assert alice.text("YES") == (
        "Nothing to confirm. Text JOIN + neighborhood or ZIP to subscribe."
    )


# --- misspelled and unknown areas ---------------------------------------------------


def test_a_close_misspelling_gets_did_you_mean(alice: Phone, twilio_services: Services) -> None:
    answer = alice.text("JOIN Kenten")
    assert answer == (
        "We could not find that neighborhood. Did you mean Kenton? Reply YES to get alerts "
        "for Kenton. Msg&data rates may apply. Text STOP to end."
    )
    assert areas_of(twilio_services, ALICE) == {"kenton": "pending"}  # nothing until YES
    assert alice.text("YES") is not None
    assert areas_of(twilio_services, ALICE) == {"kenton": "confirmed"}


def test_si_accepts_the_offer_in_spanish(beto: Phone, twilio_services: Services) -> None:
    answer = beto.text("UNIRSE Montavila")
    assert answer is not None and "Responda SI para recibir alertas de Montavilla" in answer
    assert beto.text("SI") == (
        "Confirmado: le enviaremos alertas de Montavilla. Guarde este numero: las alertas "
        "reales llegan de el y terminan con nuestro nombre. Mande SALIR + barrio para quitar "
        "uno, BAJA para terminar."
    )
    assert areas_of(twilio_services, BETO) == {"montavilla": "confirmed"}


@pytest.mark.parametrize(
    "body", ["JOIN Cully, Lents", "JOIN Cully and Lents", "UNIRSE Cully y Lents"]
)
def test_several_areas_in_one_join(alice: Phone, twilio_services: Services, body: str) -> None:
    answer = alice.text(body)
    assert answer is not None and "Cully, Lents" in answer
    assert areas_of(twilio_services, ALICE) == {"cully": "pending", "lents": "pending"}


def test_a_zip_several_areas_share_joins_them_all(alice: Phone, twilio_services: Services) -> None:
    answer = alice.text("JOIN 97203")
    assert answer is not None and answer.startswith("Reply YES to get alerts for ")
    assert "St. Johns" in answer and "Portsmouth" in answer  # it says which
    assert areas_of(twilio_services, ALICE) == {"st-johns": "pending", "portsmouth": "pending"}
    alice.text("YES")
    assert alice.text("LEAVE Portsmouth") is not None
    assert areas_of(twilio_services, ALICE) == {"st-johns": "confirmed"}


def test_one_misspelled_area_of_several_joins_none(alice: Phone, twilio_services: Services) -> None:
    answer = alice.text("JOIN Cully, Atlantis")
    assert answer is not None and answer.startswith("We could not find that neighborhood.")
    assert areas_of(twilio_services, ALICE) == {}


def test_suggestions_are_at_most_three(alice: Phone) -> None:
    answer = alice.text("JOIN Portsmith")
    assert answer is not None and "Did you mean" in answer
    choices = answer.split("Did you mean ")[1].split("?")[0].split(", ")
    assert 1 <= len(choices) <= 3


def test_an_unknown_area_suggests_a_zip(alice: Phone, twilio_services: Services) -> None:
    answer = alice.text("JOIN Atlantis")
    assert answer is not None and answer.startswith(
        "We could not find that neighborhood. Try your ZIP code"
    )
    assert state(twilio_services) == (0, 0)


def test_a_spanish_misspelling_answers_in_spanish(beto: Phone) -> None:
    answer = beto.text("UNIRSE Kenten")
    assert answer is not None and answer.startswith("No encontramos ese barrio. ¿Quiso decir")


def test_join_without_an_area_asks_which(alice: Phone) -> None:
    answer = alice.text("JOIN")
    assert answer is not None and answer.startswith("Which neighborhood?")


# --- language, help and rights ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("LANG ES", "Listo, le escribiremos en español."),
        ("idioma español", "Listo, le escribiremos en español."),
        ("LANG EN", "OK, we will text you in English."),
        ("LANG", "Text LANG EN for English or LANG ES for Spanish."),
    ],
)
def test_lang_sets_the_language_of_everything_after(alice: Phone, body: str, expected: str) -> None:
    assert alice.text(body) == expected


def test_the_language_is_remembered(alice: Phone) -> None:
    alice.text("LANG ES")
    assert alice.text(
        "HELP",
    ).startswith("Alertas de Respuesta Rapida")  # type: ignore[union-attr]
    alice.text("LANG EN")
    assert alice.text("AYUDA").startswith("Alertas")  # type: ignore[union-attr]
    assert alice.text("HELP").startswith("Alertas")  # AYUDA set Spanish again  # type: ignore[union-attr]


@pytest.mark.parametrize("body", ["LANG ES", "ESPAÑOL", "idioma español", "AYUDA"])
def test_a_non_subscribers_language_leaves_no_row_and_lasts_one_window(
    alice: Phone, twilio_services: Services, body: str
) -> None:
    alice.text(body)
    assert subscriber(twilio_services, ALICE) is None  # nothing durable for a non-subscriber
    assert alice.text("HELP").startswith("Alertas")  # type: ignore[union-attr]
    report_answer = alice.text("hay agentes en la esquina")
    assert report_answer is not None and report_answer.startswith("Reporte")
    remembered = list(twilio_services.volatile.scan_iter(match="rr:language:*"))
    assert len(remembered) == 1
    assert (
        twilio_services.volatile.ttl(remembered[0])
        <= twilio_services.reporter_keys.lifetime.total_seconds()
    )
    twilio_services.volatile.delete(*remembered)  # what the end of the window does
    assert alice.text("HELP").startswith("Rapid Response alerts.")  # type: ignore[union-attr]


def test_a_subscribers_language_is_kept_with_them(alice: Phone, twilio_services: Services) -> None:
    alice.text("JOIN Cully")
    alice.text("LANG ES")
    found = subscriber(twilio_services, ALICE)
    assert found is not None and found.language is Language.ES
    assert list(twilio_services.volatile.scan_iter(match="rr:language:*")) == []


def test_no_message_id_is_kept_anywhere_durable(alice: Phone, twilio_services: Services) -> None:
    sid = new_sid()
    assert alice.text("there are agents at the corner of Cully", sid=sid) is not None
    assert alice.text("there are agents at the corner of Cully", sid=sid) is None  # replay
    durable_redis = b" ".join(
        key + b"=" + (twilio_services.redis.dump(key) or b"")
        for key in twilio_services.redis.scan_iter(count=10_000)
    )
    assert sid.encode() not in durable_redis
    with twilio_services.database.engine.connect() as connection:
        tables = [
            row
            for table in Base.metadata.sorted_tables
            for row in connection.execute(table.select()).all()
        ]
    assert sid not in repr(tables)
    # The volatile store holds a digest of it, for one window.
    [seen] = list(twilio_services.volatile.scan_iter(match="rr:seen:*"))
    assert sid.encode() not in seen
    assert (
        0
        < twilio_services.volatile.ttl(seen)
        <= twilio_services.reporter_keys.lifetime.total_seconds()
    )


@pytest.mark.parametrize(
    ("body", "start"),
    [
        ("HELP", "Rapid Response alerts."),
        ("info", "Rapid Response alerts."),
        ("Ayuda", "Alertas de Respuesta Rapida."),
        ("RIGHTS", "Know your rights:"),
        ("derechos", "Conozca sus derechos:"),
        ("Rights home", "At home:"),
        ("RIGHTS CAR", "In a car:"),
        ("rights work", "At work:"),
        ("rights street", "On the street:"),
        ("DERECHOS CASA", "En casa:"),
        ("derechos carro", "En el carro:"),
        ("Derechos trabajo", "En el trabajo:"),
        ("derechos calle", "En la calle:"),
        ("RIGHTS MORE", "All of it, with our next trainings: http"),
        ("derechos más", "Todo, con nuestros proximos talleres: http"),
    ],
)
def test_help_and_rights_answer_in_the_keyword_language(
    alice: Phone, body: str, start: str
) -> None:
    answer = alice.text(body)
    assert answer is not None and answer.startswith(start)


def test_help_and_rights_store_nothing(alice: Phone, twilio_services: Services) -> None:
    alice.text("HELP")
    alice.text("RIGHTS")
    assert state(twilio_services) == (0, 0)


# --- opting out -----------------------------------------------------------------------

CARRIER_KEYWORDS = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]
SPANISH_KEYWORDS = ["ALTO", "PARAR", "BAJA"]


@pytest.mark.parametrize("keyword", CARRIER_KEYWORDS + [k.lower() for k in CARRIER_KEYWORDS])
def test_every_carrier_keyword_opts_out_with_one_confirmation(
    alice: Phone, twilio_services: Services, keyword: str
) -> None:
    alice.text("JOIN Cully")
    alice.text("YES")
    assert alice.text(keyword) == (
        "You are unsubscribed from Rapid Response alerts and will "
        "get no more messages. Text START to come back."
    )
    found = subscriber(twilio_services, ALICE)
    assert found is not None and found.status is SubscriberStatus.OPTED_OUT
    assert areas_of(twilio_services, ALICE) == {}
    assert alice.text(keyword) is None  # exactly one confirmation


@pytest.mark.parametrize("keyword", [*SPANISH_KEYWORDS, "¡Alto!", "baja."])
def test_spanish_opt_out_words_confirm_in_spanish(
    beto: Phone, twilio_services: Services, keyword: str
) -> None:
    assert beto.text(keyword) == (
        "Se dio de baja de las alertas y no le enviaremos otros mensajes. Para volver, mande START."
    )
    found = subscriber(twilio_services, BETO)
    assert found is not None and found.status is SubscriberStatus.OPTED_OUT


def test_an_unknown_number_that_says_stop_is_never_texted(
    alice: Phone, twilio_services: Services
) -> None:
    assert alice.text("STOP") is not None
    with pytest.raises(SendError) as refused:
        twilio_services.sender.send(ALICE, "ALERT")
    assert refused.value.permanent


@pytest.mark.parametrize(
    "body",
    [
        "JOIN Cully",
        "HELP",
        "YES",
        "RIGHTS",
        "LANG ES",
        "AREAS",
        "there are agents at the corner",
        "INFO",
        "AYUDA",
    ],
)
def test_after_stop_only_start_gets_an_answer(
    alice: Phone, twilio_services: Services, fake: FakeTwilio, body: str
) -> None:
    alice.text("STOP")
    before = state(twilio_services)
    assert alice.text(body) is None
    assert state(twilio_services) == before
    assert fake.requests == []


def test_start_and_unstop_opt_back_in(alice: Phone, twilio_services: Services) -> None:
    alice.text("STOP")
    assert alice.text("START") == (
        "Welcome back. Text JOIN + neighborhood or ZIP to choose your areas. Text STOP to end."
    )
    found = subscriber(twilio_services, ALICE)
    assert found is not None and found.status is SubscriberStatus.ACTIVE
    alice.text("STOP")
    assert alice.text("unstop") is not None
    assert alice.text("JOIN Cully") is not None


@pytest.mark.sends_through_api
def test_the_sender_refuses_an_opted_out_number_on_every_path(
    alice: Phone, twilio_services: Services, fake: FakeTwilio
) -> None:
    alice.text("STOP")
    with pytest.raises(SendError) as refused:
        twilio_services.sender.send(ALICE, "any later feature's text")
    assert refused.value.permanent and refused.value.code == 21610
    assert "5550142" not in str(refused.value)
    assert fake.requests == []
    alice.text("START")
    twilio_services.sender.send(ALICE, "back in")
    assert [m.to for m in fake.messages] == [ALICE]


# --- replays, signatures and bad input -------------------------------------------------


def test_a_replayed_message_sid_changes_nothing(alice: Phone, twilio_services: Services) -> None:
    sid = new_sid()
    assert alice.text("JOIN Cully", sid=sid) is not None
    alice.text("LEAVE Cully")
    assert alice.text("JOIN Cully", sid=sid) is None
    assert areas_of(twilio_services, ALICE) == {}


def valid_params(body: str = "JOIN Cully") -> dict[str, str]:
    return {
        "From": ALICE,
        "To": FROM_NUMBER,
        "Body": body,
        "MessageSid": new_sid(),
        "AccountSid": ACCOUNT_SID,
        "NumMedia": "0",
    }


@pytest.mark.parametrize(
    "signature", ["", "bm90IGEgc2lnbmF0dXJl", sign(valid_params(), url=PUBLIC_URL + "/other")]
)
def test_a_bad_or_missing_signature_is_refused(
    sms_app: Flask, twilio_services: Services, signature: str
) -> None:
    response = send(sms_app.test_client(), valid_params(), signature=signature)
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert untouched(twilio_services)


def test_the_signature_covers_every_parameter(sms_app: Flask, twilio_services: Services) -> None:
    params = valid_params()
    signature = sign(params)
    params["Body"] = "JOIN Lents"  # tampered after signing
    assert send(sms_app.test_client(), params, signature).status_code == 403  # type: ignore[attr-defined]
    params = valid_params()
    signature = sign(params)
    params["FromCity"] = "PORTLAND"  # a parameter Twilio did not sign
    assert send(sms_app.test_client(), params, signature).status_code == 403  # type: ignore[attr-defined]
    assert untouched(twilio_services)


def test_unknown_extra_parameters_signed_by_twilio_are_fine(alice: Phone, sms_app: Flask) -> None:
    params = {
        **valid_params(),
        "FromCity": "PORTLAND",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
        "MessagingServiceSid": "",
    }
    assert send(sms_app.test_client(), params).status_code == 200  # type: ignore[attr-defined]


@pytest.mark.parametrize("missing", ["From", "Body", "MessageSid"])
def test_a_missing_parameter_is_a_400(
    sms_app: Flask, twilio_services: Services, missing: str
) -> None:
    params = valid_params()
    del params[missing]
    assert send(sms_app.test_client(), params).status_code == 400  # type: ignore[attr-defined]
    assert untouched(twilio_services)


@pytest.mark.parametrize("sender", ["abc", "12", "", "+1" + "9" * 20, "TWILIO"])
def test_an_invalid_from_is_a_400(sms_app: Flask, twilio_services: Services, sender: str) -> None:
    params = {**valid_params(), "From": sender}
    assert send(sms_app.test_client(), params).status_code == 400  # type: ignore[attr-defined]
    assert untouched(twilio_services)


def test_a_5000_character_message_gets_a_polite_answer_and_changes_nothing(
    alice: Phone, twilio_services: Services
) -> None:
    alice.text("JOIN Cully")
    before = (state(twilio_services), areas_of(twilio_services, ALICE))
    assert alice.text("JOIN Lents " + "x" * 5000) == (
        "Your message was too long for us to read. Please send a shorter one."
    )
    assert (state(twilio_services), areas_of(twilio_services, ALICE)) == before


def test_a_non_utf8_byte_is_refused(sms_app: Flask, twilio_services: Services) -> None:
    # Signed over exactly what the app decodes, so the request passes the signature check
    # and reaches the decoding and parsing: the invalid byte must not cause a 500.
    params = valid_params()
    raw = "&".join(f"{k}={quote(v)}" for k, v in params.items()).replace(
        "JOIN%20Cully", "JOIN%FFCully"
    )
    decoded = {**params, "Body": "JOIN%FFCully"}  # werkzeug keeps an invalid escape as is
    response = sms_app.test_client().post(
        "/sms/inbound",
        data=raw,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": sign(decoded)},
    )
    assert response.status_code == 200
    answer = twiml_message(response.get_data(as_text=True))
    assert answer is not None and "could not find that neighborhood" in answer
    assert areas_of(twilio_services, ALICE) in ({}, {"cully": "pending"})  # at most offered


@pytest.mark.parametrize("path", ["/sms/inbound", "/sms/status"])
def test_a_get_is_not_allowed(sms_app: Flask, path: str) -> None:
    response = sms_app.test_client().get(path)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert_security_headers(response)


def test_without_an_auth_token_every_webhook_is_refused(
    client: FlaskClient, services: Services
) -> None:
    # The simulator backend has no token: the Twilio route fails closed.
    response = client.post(
        "/sms/inbound", data=valid_params(), headers={"X-Twilio-Signature": sign(valid_params())}
    )
    assert response.status_code == 403


# --- privacy and abuse ---------------------------------------------------------------


def test_the_number_never_appears_in_the_database_file(
    alice: Phone, twilio_services: Services
) -> None:
    alice.text("JOIN Cully")
    alice.text("YES")
    database = twilio_services.database
    path = make_url(database.url).database
    if database.dialect != "sqlite" or not path:
        pytest.skip("only on SQLite: reads its file; PostgreSQL stores the same sealed columns")
    database.dispose()  # checkpoint the WAL into the main file
    with open(path, "rb") as handle:
        raw = handle.read()
    for needle in (b"15035550142", b"5035550142", b"555-0142", "5035550142".encode("utf-16-le")):
        assert needle not in raw


@pytest.fixture
def strict_limits(twilio_services: Services) -> Services:
    from dispatch.limits import RedisAbuseLimits

    twilio_services.limits = RedisAbuseLimits(twilio_services.redis, "4/hour", "2/day")
    return twilio_services


def test_too_many_commands_get_one_polite_answer_then_silence(
    alice: Phone, strict_limits: Services
) -> None:
    answers = [alice.text("HELP") for _ in range(6)]
    assert all(answers[:4])
    assert answers[4] == "Too many messages from this phone. Please wait an hour and try again."
    assert answers[5] is None
    assert alice.text("STOP") is not None  # opting out always works


def test_confirmation_texts_are_limited(alice: Phone, strict_limits: Services) -> None:
    assert alice.text(
        "JOIN Cully",
    ).startswith("Reply YES")  # type: ignore[union-attr]
    assert alice.text("JOIN Lents").startswith("Reply YES")  # type: ignore[union-attr]
    assert alice.text("JOIN Kenton") == (
        "We have sent several confirmations to this phone today. Please try again tomorrow."
    )
    assert "kenton" not in areas_of(strict_limits, ALICE)


def test_rate_limit_keys_hold_no_phone_number(alice: Phone, strict_limits: Services) -> None:
    for _ in range(3):
        alice.text("HELP")
    keys = b" ".join(strict_limits.redis.scan_iter(count=1000))
    assert b"5550142" not in keys and b"rr-limits" in keys


def test_two_people_do_not_share_limits(alice: Phone, beto: Phone, strict_limits: Services) -> None:
    for phone, _ in itertools.product((alice, beto), range(4)):
        assert phone.text("HELP") is not None


def test_numbers_sealed_under_an_old_key_still_work_after_rotation(
    alice: Phone, twilio_services: Services, fake: FakeTwilio
) -> None:
    from rapidresponse.config import new_key, parse_data_keys
    from rapidresponse.crypto import FieldCipher

    alice.text("JOIN Cully")
    alice.text("YES")
    old_keys = twilio_services.settings.data_keys
    rotated = FieldCipher(parse_data_keys(new_key()) + old_keys)  # new key first
    found = subscriber(twilio_services, ALICE)
    assert found is not None
    assert rotated.decrypt(found.phone_sealed, Purpose.SUBSCRIBER_PHONE) == ALICE
    assert rotated.needs_rotation(found.phone_sealed)


# --- review fixes: races, the once-only confirmation, limits before state -----------------


def concurrently(sms_app: Flask, bodies: list[tuple[str, str]]) -> list[tuple[int, str | None]]:
    """Send the texts at the same moment from separate threads, as Twilio may."""
    barrier = threading.Barrier(len(bodies))
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def one(number: str, body: str) -> None:
        client = sms_app.test_client()
        params = {"From": number, "Body": body, "MessageSid": new_sid()}
        barrier.wait()
        response = send(client, params)
        outcome = (
            response.status_code,
            twiml_message(response.get_data(as_text=True))  # type: ignore[attr-defined]
            if response.status_code == 200
            else None,
        )  # type: ignore[attr-defined]
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one, args=pair) for pair in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.mark.parametrize("subscribed_first", [False, True])
def test_two_simultaneous_stops_get_exactly_one_confirmation(
    sms_app: Flask, alice: Phone, twilio_services: Services, subscribed_first: bool
) -> None:
    for n in range(5):
        number = f"+1503555{n + 160:04d}"
        if subscribed_first:
            Phone(sms_app.test_client(), number).text("JOIN Cully")
        results = concurrently(sms_app, [(number, "STOP"), (number, "QUIT")])
        assert [status for status, _ in results] == [200, 200]
        assert sum(answer is not None for _, answer in results) == 1
        found = subscriber(twilio_services, number)
        assert found is not None and found.status is SubscriberStatus.OPTED_OUT


def test_the_stop_confirmation_goes_out_once_whatever_a_caller_claims(
    alice: Phone, twilio_services: Services
) -> None:
    assert alice.text("STOP") is not None  # the one confirmation, as TwiML
    with pytest.raises(SendError):
        twilio_services.sender.send_reply(ALICE, "sneaky", ReplyKind.OPT_OUT_CONFIRMATION)


def test_a_late_stop_confirmation_is_not_sent(alice: Phone, twilio_services: Services) -> None:
    from rapidresponse.subscribers import CONFIRMATION_WINDOW, permit_text

    with twilio_services.database.session() as session:
        session.add(
            Subscriber(
                phone_index=twilio_services.index.digest(BETO, Purpose.PHONE_INDEX),
                phone_sealed=b"x",
                status=SubscriberStatus.OPTED_OUT,
                opted_out_at=utcnow() - CONFIRMATION_WINDOW - timedelta(seconds=1),
            )
        )
    with twilio_services.database.session() as session:
        assert not permit_text(session, twilio_services.index, BETO, ReplyKind.OPT_OUT_CONFIRMATION)


def test_start_from_a_stranger_stores_nothing(alice: Phone, twilio_services: Services) -> None:
    assert alice.text("START") is not None
    assert state(twilio_services) == (0, 0)


def test_start_is_counted_unless_it_opts_back_in(alice: Phone, strict_limits: Services) -> None:
    answers = [alice.text("START") for _ in range(6)]
    assert answers[4] is not None and answers[4].startswith("Too many messages")
    assert answers[5] is None


def test_a_rate_limited_message_changes_nothing(alice: Phone, strict_limits: Services) -> None:
    alice.text("JOIN Cully")
    for _ in range(3):
        alice.text("HELP")
    alice.text("AYUDA")  # over the limit: told once, and not switched to Spanish
    found = subscriber(strict_limits, ALICE)
    assert found is not None and found.language is Language.EN


def test_a_too_long_message_is_replay_protected_and_counted(
    alice: Phone, strict_limits: Services
) -> None:
    sid = new_sid()
    assert alice.text("x" * 2000, sid=sid) is not None
    assert alice.text("x" * 2000, sid=sid) is None  # replayed
    answers = [alice.text("x" * 2000) for _ in range(4)]
    assert answers[-1] is None or answers[-1].startswith("Too many messages")
    assert answers[-2] is not None


def test_leave_with_a_typo_gets_did_you_mean(alice: Phone) -> None:
    alice.text("JOIN Kenton")
    alice.text("YES")
    answer = alice.text("LEAVE Kenten")
    assert answer == "We could not find that neighborhood. Did you mean Kenton?"


def test_rights_more_links_the_page_in_the_readers_language(alice: Phone) -> None:
    for body, language in (("RIGHTS MORE", "en"), ("DERECHOS MAS", "es")):
        answer = alice.text(body)
        assert answer is not None and answer.endswith(f"/rights?lang={language}")


def test_a_coordinators_wording_of_a_rights_answer_is_what_the_hotline_says(
    alice: Phone, twilio_services: Services
) -> None:
    from rapidresponse import wording
    from rapidresponse.models import Language, StaffRole
    from tests.web.staff_helpers import add_account

    coordinator = add_account(twilio_services, StaffRole.COORDINATOR)
    ours = "En casa: la puerta cerrada. Solo una orden firmada por un juez. Llame al 211."
    with twilio_services.database.session() as session:
        wording.save(session, Language.ES, "sms.rights_home", ours, coordinator.id)
        more = "Todo aqui: {url}"
        wording.save(session, Language.ES, "sms.rights_more", more, coordinator.id)
    assert alice.text("DERECHOS CASA") == ours
    answer = alice.text("derechos mas")
    assert answer is not None and answer.startswith("Todo aqui: http")
    alice.text("LANG EN")
    english = alice.text("RIGHTS HOME")
    assert english is not None and english.startswith("At home:")  # English: the catalog's


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (IntegrityError("INSERT … '+15035550101'", None, Exception(ALICE)), 503),
        (RuntimeError(f"could not answer {ALICE}"), 500),
    ],
)
def test_a_failure_is_answered_and_its_log_names_no_number(
    sms_app: Flask,
    twilio_services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    status: int,
) -> None:
    """A database that refuses a write (not one that is away: that text is spooled) is a
    503 to retry; anything else a 500. Either way the log says the error's type only."""

    def broken(*_: object, **__: object) -> None:
        raise failure

    monkeypatch.setattr(sms, "handle_within_budget", broken)
    with caplog.at_level(logging.INFO):
        response = send(sms_app.test_client(), valid_params())
    assert response.status_code == status  # type: ignore[attr-defined]
    if status == 503:
        assert response.headers["Retry-After"] == "5"  # type: ignore[attr-defined]
    assert type(failure).__name__ in caplog.text
    assert ALICE not in caplog.text and ALICE[2:] not in caplog.text
    assert not twilio_services.storage.failing  # a refusal says nothing of a lock

"""TwilioSender against a local fake of Twilio's Messages API."""

from __future__ import annotations

import logging
import re
import socket
import traceback

import pytest

from dispatch.senders import SendError, TwilioSender
from tests.dispatch.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    MESSAGING_SERVICE_SID,
    PUBLIC_URL,
)
from tests.twilio_fake import Answer, FakeTwilio, RecordedRequest

RECIPIENT = "+15035550123"
RECIPIENT_DIGITS = "5035550123"
BODY = "ICE checkpoint at NE 82nd & Sandy. Stay clear; know your rights."


def only_request(fake: FakeTwilio) -> RecordedRequest:
    requests = fake.requests
    assert len(requests) == 1, f"expected one request, got {len(requests)}"
    return requests[0]


def send_error(sender: TwilioSender, to: str = RECIPIENT, body: str = BODY) -> SendError:
    with pytest.raises(SendError) as caught:
        sender.send(to, body)
    return caught.value


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the request ----------------------------------------------------------------------------


def test_it_posts_to_the_account_messages_resource(
    twilio_sender: TwilioSender, fake_twilio: FakeTwilio
) -> None:
    twilio_sender.send(RECIPIENT, BODY)

    request = only_request(fake_twilio)
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.account_sid == ACCOUNT_SID
    assert request.auth == (ACCOUNT_SID, AUTH_TOKEN)
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")


def test_it_sends_from_a_number(twilio_sender: TwilioSender, fake_twilio: FakeTwilio) -> None:
    twilio_sender.send(RECIPIENT, BODY)

    form = only_request(fake_twilio).form
    assert form["From"] == [FROM_NUMBER]
    assert form["To"] == [RECIPIENT]
    assert form["Body"] == [BODY]
    assert "MessagingServiceSid" not in form


def test_it_sends_through_a_messaging_service(fake_twilio: FakeTwilio) -> None:
    sender = TwilioSender(
        ACCOUNT_SID,
        AUTH_TOKEN,
        MESSAGING_SERVICE_SID,
        public_url=PUBLIC_URL,
        api_url=fake_twilio.url,
    )

    sender.send(RECIPIENT, BODY)

    form = only_request(fake_twilio).form
    assert form["MessagingServiceSid"] == [MESSAGING_SERVICE_SID]
    assert "From" not in form
    assert form["To"] == [RECIPIENT]


def test_it_names_the_delivery_in_the_status_callback(
    twilio_sender: TwilioSender, fake_twilio: FakeTwilio
) -> None:
    twilio_sender.send(RECIPIENT, BODY, callback_id="d-42")

    form = only_request(fake_twilio).form
    assert form["StatusCallback"] == [f"{PUBLIC_URL}/sms/status?delivery=d-42"]


def test_it_asks_for_no_status_callback_when_the_delivery_is_not_tracked(
    twilio_sender: TwilioSender, fake_twilio: FakeTwilio
) -> None:
    twilio_sender.send(RECIPIENT, BODY)

    assert "StatusCallback" not in only_request(fake_twilio).form


def test_a_trailing_slash_on_the_public_url_does_not_double_up(fake_twilio: FakeTwilio) -> None:
    sender = TwilioSender(
        ACCOUNT_SID,
        AUTH_TOKEN,
        FROM_NUMBER,
        public_url=PUBLIC_URL + "/",
        api_url=fake_twilio.url + "/",
    )

    sender.send(RECIPIENT, BODY, callback_id="d-7")

    assert only_request(fake_twilio).value("StatusCallback") == (
        f"{PUBLIC_URL}/sms/status?delivery=d-7"
    )


def test_it_sets_a_validity_period_when_asked(
    twilio_sender: TwilioSender, fake_twilio: FakeTwilio
) -> None:
    twilio_sender.send(RECIPIENT, BODY, validity_period=900)

    assert only_request(fake_twilio).form["ValidityPeriod"] == ["900"]
    assert fake_twilio.messages[0].validity_period == 900


def test_it_leaves_the_validity_period_to_twilio_otherwise(
    twilio_sender: TwilioSender, fake_twilio: FakeTwilio
) -> None:
    twilio_sender.send(RECIPIENT, BODY)

    assert "ValidityPeriod" not in only_request(fake_twilio).form


def test_it_returns_the_provider_sid(twilio_sender: TwilioSender, fake_twilio: FakeTwilio) -> None:
    sid = twilio_sender.send(RECIPIENT, BODY)

    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    assert [message.sid for message in fake_twilio.messages] == [sid]


def test_unicode_body_arrives_intact(twilio_sender: TwilioSender, fake_twilio: FakeTwilio) -> None:
    body = "Redada en la calle Álvarez: ¡no abran la puerta sin orden judicial! 🚨"

    twilio_sender.send(RECIPIENT, body)

    assert only_request(fake_twilio).form["Body"] == [body]
    assert fake_twilio.messages[0].body == body


# -- errors ---------------------------------------------------------------------------------


def test_21610_is_a_permanent_error(twilio_sender: TwilioSender, fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail_next(status=400, code=21610)

    error = send_error(twilio_sender)

    assert error.permanent
    assert error.code == 21610


def test_21211_is_a_permanent_error(twilio_sender: TwilioSender, fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail_next(status=400, code=21211)

    error = send_error(twilio_sender)

    assert error.permanent
    assert error.code == 21211


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, 20429), (500, 20500), (503, 20503)],
    ids=["429", "500", "503"],
)
def test_429_and_500_are_transient(
    twilio_sender: TwilioSender, fake_twilio: FakeTwilio, status: int, code: int
) -> None:
    fake_twilio.fail_next(status=status, code=code)

    error = send_error(twilio_sender)

    assert not error.permanent
    assert error.code == code


def test_an_html_error_page_is_transient(
    twilio_sender: TwilioSender, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.answer_next(Answer(502, "<html><body>Bad Gateway</body></html>"))

    assert not send_error(twilio_sender).permanent


def test_bad_credentials_wait_for_an_operator_rather_than_drop_the_delivery(
    fake_twilio: FakeTwilio,
) -> None:
    sender = TwilioSender(
        ACCOUNT_SID, "0" * 32, FROM_NUMBER, public_url=PUBLIC_URL, api_url=fake_twilio.url
    )

    error = send_error(sender)

    assert not error.permanent
    assert error.code == 20003
    assert fake_twilio.messages == []


def test_the_sender_recovers_once_the_provider_does(
    twilio_sender: TwilioSender, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.fail_next(status=429, code=20429, retry_after=2)

    send_error(twilio_sender)
    sid = twilio_sender.send(RECIPIENT, BODY)

    assert [message.sid for message in fake_twilio.messages] == [sid]


def test_an_unreachable_provider_is_a_transient_error() -> None:
    sender = TwilioSender(
        ACCOUNT_SID,
        AUTH_TOKEN,
        FROM_NUMBER,
        public_url=PUBLIC_URL,
        api_url=f"http://127.0.0.1:{closed_port()}",
        timeout=2,
    )

    error = send_error(sender)

    assert not error.permanent
    assert error.code is None
    assert "could not reach the provider" in str(error)


def test_a_provider_that_does_not_answer_in_time_is_a_transient_error(
    fake_twilio: FakeTwilio,
) -> None:
    fake_twilio.answer_next(Answer(201, {}, delay=0.6))
    sender = TwilioSender(
        ACCOUNT_SID,
        AUTH_TOKEN,
        FROM_NUMBER,
        public_url=PUBLIC_URL,
        api_url=fake_twilio.url,
        timeout=0.2,
    )

    error = send_error(sender)

    assert not error.permanent


def test_errors_never_quote_the_number_or_the_body(
    twilio_sender: TwilioSender, fake_twilio: FakeTwilio
) -> None:
    def quoting(request: RecordedRequest) -> Answer:
        return Answer.error(
            400,
            21211,
            f"The 'To' number {request.value('To')} is not a valid phone number "
            f"for the message {request.value('Body')!r}.",
        )

    fake_twilio.policy = quoting

    error = send_error(twilio_sender)

    # What RQ keeps in its failed-job registry is the formatted traceback.
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    for text in texts:
        assert RECIPIENT_DIGITS not in text
        assert BODY not in text
        assert "Sandy" not in text
    assert error.code == 21211


def test_nothing_the_sdk_logs_carries_the_number_or_the_body(
    twilio_sender: TwilioSender, fake_twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    fake_twilio.fail_next(status=400, code=21211)  # Twilio's own text quotes the number
    with caplog.at_level(logging.DEBUG):
        send_error(twilio_sender)
        twilio_sender.send(RECIPIENT, BODY)

    assert caplog.records, "expected the SDK to log its requests"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert RECIPIENT_DIGITS not in logged
    assert "Sandy" not in logged
    assert AUTH_TOKEN not in logged


# -- known gaps in dispatch/senders.py (strict: they fail loudly once fixed) ----------------


def test_a_429_passes_on_how_long_twilio_asked_us_to_wait(
    twilio_sender: TwilioSender, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.fail_next(status=429, code=20429, retry_after=2)

    assert send_error(twilio_sender).retry_after == 2


def test_an_alphanumeric_sender_id_that_starts_with_mg_is_a_from(
    fake_twilio: FakeTwilio,
) -> None:
    sender = TwilioSender(
        ACCOUNT_SID, AUTH_TOKEN, "MGHALERTS", public_url=PUBLIC_URL, api_url=fake_twilio.url
    )

    sender.send(RECIPIENT, BODY)

    assert only_request(fake_twilio).form.get("From") == ["MGHALERTS"]

"""The broadcast path's sender: the twilio SDK's asyncio client, many requests at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from dispatch.senders import AsyncTwilioSender, SendError
from tests.dispatch.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, PUBLIC_URL
from tests.twilio_fake import Answer, FakeTwilio

T = TypeVar("T")
RECIPIENT = "+15035550123"


def run(fake: FakeTwilio, action: Callable[[AsyncTwilioSender], Awaitable[T]], **kw: float) -> T:
    async def main() -> T:
        sender = AsyncTwilioSender(
            ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, public_url=PUBLIC_URL, api_url=fake.url, **kw
        )
        try:
            return await action(sender)
        finally:
            await sender.close()

    return asyncio.run(main())


def one(sender: AsyncTwilioSender, delivery: str = "d1") -> Awaitable[str]:
    return sender.send(RECIPIENT, "hello", callback_id=delivery, validity_period=1800)


def test_it_returns_the_sid_and_names_the_delivery(fake_twilio: FakeTwilio) -> None:
    sid = run(fake_twilio, one)
    [message] = fake_twilio.messages
    assert sid == message.sid
    assert message.status_callback == f"{PUBLIC_URL}/sms/status?delivery=d1"
    assert message.validity_period == 1800


def test_many_requests_are_in_flight_at_once(fake_twilio: FakeTwilio) -> None:
    slow = 0.3
    fake_twilio.policy = lambda request: _delayed(fake_twilio, slow)

    async def twenty(sender: AsyncTwilioSender) -> list[str]:
        return await asyncio.gather(*(one(sender, f"d{n}") for n in range(20)))

    started = time.monotonic()
    sids = run(fake_twilio, twenty, concurrency=20)
    assert len(set(sids)) == 20
    assert time.monotonic() - started < 20 * slow / 4  # one at a time would take 6 s


def _delayed(fake: FakeTwilio, seconds: float) -> Answer | None:
    time.sleep(seconds)  # each request on its own server thread
    return None


def test_429_keeps_retry_after(fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail_next(status=429, code=20429, retry_after=7)
    with pytest.raises(SendError) as caught:
        run(fake_twilio, one)
    error = caught.value
    assert (error.permanent, error.retry_after, error.unknown_outcome) == (False, 7.0, False)
    assert RECIPIENT[-7:] not in str(error)


@pytest.mark.parametrize(
    ("code", "permanent"), [(21610, True), (21211, True), (30006, True), (21606, False)]
)
def test_recipient_errors_are_permanent_and_configuration_errors_are_not(
    fake_twilio: FakeTwilio, code: int, permanent: bool
) -> None:
    fake_twilio.fail_next(status=400, code=code)
    with pytest.raises(SendError) as caught:
        run(fake_twilio, one)
    assert (caught.value.code, caught.value.permanent) == (code, permanent)


def test_no_answer_in_time_is_an_unknown_outcome(fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail_next(status=500, delay=2.0)
    with pytest.raises(SendError) as caught:
        run(fake_twilio, one, timeout=0.5)
    assert caught.value.unknown_outcome and not caught.value.permanent


def test_a_refused_connection_is_not_an_unknown_outcome() -> None:
    async def main() -> None:
        sender = AsyncTwilioSender(
            ACCOUNT_SID,
            AUTH_TOKEN,
            FROM_NUMBER,
            public_url=PUBLIC_URL,
            api_url="http://127.0.0.1:9",
        )
        try:
            await one(sender)
        finally:
            await sender.close()

    with pytest.raises(SendError) as caught:
        asyncio.run(main())
    assert not caught.value.unknown_outcome  # nothing left the machine: safe to send again

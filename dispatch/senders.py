"""SMS senders: one small interface, chosen by SMS_BACKEND.

Like healthchecks' transports, a sender has one method, ``send()``, which returns the
provider's message id or raises ``SendError``; ``permanent`` tells the caller not to
retry. Error messages never carry the phone number or the text (they end up in logs and
in RQ's failed-job registry).
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
import uuid
from datetime import timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Protocol, cast
from urllib.parse import urlencode

import aiohttp
from redis import Redis
from redis.exceptions import RedisError
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from dispatch.pacer import Pacer
from dispatch.queues import QueueName, enqueue_in
from rapidresponse import redaction
from rapidresponse.broadcast import BAD_NUMBER_CODES, OPTED_OUT_CODES
from rapidresponse.config import Settings
from rapidresponse.crypto import BlindIndex, Purpose
from rapidresponse.db import Database
from rapidresponse.models import Channel, OutboxMessage, utcnow
from rapidresponse.shredding import ShreddingCipher, outbox_key
from rapidresponse.sms import segment
from rapidresponse.subscribers import ReplyKind, permit_text
from rapidresponse.whatsapp import ADDRESS_PREFIX, Content

# Twilio error codes that will not get better by retrying. 21610: the recipient texted
# STOP to our number; 21211: invalid 'To'; 21614: not a mobile number; 30005: unknown
# or inactive destination; 30006: landline or unreachable carrier.
# 21408: no permission to send to that region; 21612: no route between the numbers.
# Configuration errors (401 bad credentials, 21606 bad sender) are NOT permanent for the
# recipient: they are fixed by an operator, after which the delivery must still go out.
PERMANENT_CODES = OPTED_OUT_CODES | BAD_NUMBER_CODES | frozenset({21408, 21612})

MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
# The SDK logs every request at INFO: noise at a thousand a second, so only warnings.
_log = logging.getLogger(__name__)
_quiet_logger = logging.getLogger("twilio.async_http_client")
_quiet_logger.setLevel(logging.WARNING)
MIN_TWILIO_ERROR_CODE = 10000  # Twilio's codes have five digits; smaller ones are HTTP statuses


class SendError(Exception):
    """The provider did not accept the message.

    Args:
        message: what went wrong, without the number or the text.
        permanent: retrying will not help (bad number, opted out).
        code: the provider's error code, when it gave one.
        retry_after: seconds the provider asked us to wait, when it said.
        unknown_outcome: the request may have reached the provider (a timeout, a dropped
            connection): sending again may deliver it twice.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        code: int | None = None,
        retry_after: float | None = None,
        unknown_outcome: bool = False,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code
        self.retry_after = retry_after
        self.unknown_outcome = unknown_outcome


class Sender(Protocol):
    def send(
        self,
        to: str,
        body: str,
        *,
        callback_id: str | None = None,
        validity_period: int | None = None,
    ) -> str:
        """Send ``body`` to the E.164 number ``to``; return the provider's message id.

        Args:
            to: the recipient, E.164.
            body: the text.
            callback_id: names the Delivery in the StatusCallback URL, when tracked.
            validity_period: seconds after which the carrier should drop it undelivered.

        Raises:
            SendError: the provider refused or could not be reached.
        """
        ...


def status_callback_url(public_url: str, callback_id: str) -> str:
    return f"{public_url}/sms/status?{urlencode({'delivery': callback_id})}"


class _TwilioAccount:
    """The SDK client for one account and sender, over the given HTTP client.

    ``api_url`` replaces https://api.twilio.com, so tests and staging can point the
    sender at a local Twilio-compatible server.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        sender: str,
        *,
        public_url: str,
        api_url: str,
        http: Any,
        to_prefix: str = "",
    ) -> None:
        if not sender:
            raise ValueError("sender: a phone number or a Messaging Service sid is needed")
        self.public_url = public_url.rstrip("/")
        self.sender = sender
        self.to_prefix = to_prefix  # "whatsapp:" for the WhatsApp sender
        self.client = Client(account_sid, auth_token, http_client=http)
        self.client.api.base_url = api_url.rstrip("/")


class TwilioSender(_TwilioAccount):
    """Sends one message at a time through Twilio's Messages API with the official SDK."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        sender: str,
        *,
        public_url: str,
        api_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
    ) -> None:
        self.http = _HeaderKeepingHttpClient(timeout=timeout)
        super().__init__(
            account_sid, auth_token, sender, public_url=public_url, api_url=api_url, http=self.http
        )

    def send(
        self,
        to: str,
        body: str,
        *,
        callback_id: str | None = None,
        validity_period: int | None = None,
    ) -> str:
        options = _message_options(
            self.sender, self.public_url, to, body, callback_id, validity_period
        )
        try:
            message = self.client.messages.create(**options)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _send_error(exc, self.http.last_headers()) from None
        except (TwilioException, OSError) as exc:
            # Connection refused, timeout, TLS failure: the outcome may be unknown.
            raise SendError(f"could not reach the provider ({exc.__class__.__name__})") from None
        return str(message.sid)

    def forget(self, sid: str) -> None:
        """Delete a message (its number and text) from the provider's records.

        A message the provider no longer has (404) counts as forgotten.

        Raises:
            SendError: the provider refused (say, a message still in progress) or could
                not be reached; a later try may succeed.
        """
        try:
            self.client.messages(sid).delete()
        except (TwilioRestException, TwilioServiceException) as exc:
            if getattr(exc, "status", None) == HTTPStatus.NOT_FOUND:
                return
            raise _send_error(exc, self.http.last_headers()) from None
        except (TwilioException, OSError) as exc:
            raise SendError(f"could not reach the provider ({exc.__class__.__name__})") from None


class AsyncSender(Protocol):
    """Sends many messages at once from one event loop (the broadcast path)."""

    async def send(
        self,
        to: str,
        body: str,
        *,
        callback_id: str | None,
        validity_period: int | None,
        content: Content | None = None,
    ) -> str:
        """Like ``Sender.send``; raises ``SendError``. With ``content`` (WhatsApp outside
        its 24 h window) the approved template carries ``body`` instead of free text."""
        ...

    async def close(self) -> None: ...


class AsyncTwilioSender(_TwilioAccount):
    """Twilio's Messages API through the SDK's asyncio client, many requests in flight.

    One request at a time spends most of its life waiting for the network; a broadcast
    keeps up to ``concurrency`` requests open over pooled keep-alive connections.
    Create it inside a running event loop and ``close()`` it there.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        sender: str,
        *,
        public_url: str,
        api_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
        concurrency: int = 50,
        to_prefix: str = "",
    ) -> None:
        self.http = _AsyncHeaderKeepingHttpClient(timeout=timeout, concurrency=concurrency)
        super().__init__(
            account_sid,
            auth_token,
            sender,
            public_url=public_url,
            api_url=api_url,
            http=self.http,
            to_prefix=to_prefix,
        )

    async def send(
        self,
        to: str,
        body: str,
        *,
        callback_id: str | None,
        validity_period: int | None,
        content: Content | None = None,
    ) -> str:
        options = _message_options(
            self.sender,
            self.public_url,
            self.to_prefix + to,
            body,
            callback_id,
            validity_period,
            content,
        )
        try:
            message = await self.client.messages.create_async(**options)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _send_error(exc, self.http.last_headers()) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise SendError(
                f"no answer from the provider ({exc.__class__.__name__})", unknown_outcome=True
            ) from None
        except (TwilioException, aiohttp.ClientError, OSError) as exc:
            # Failed before the request left: connection refused, DNS, TLS.
            raise SendError(f"could not reach the provider ({exc.__class__.__name__})") from None
        return str(message.sid)

    async def close(self) -> None:
        await self.http.close()


def _message_options(
    sender: str,
    public_url: str,
    to: str,
    body: str,
    callback_id: str | None,
    validity_period: int | None,
    content: Content | None = None,
) -> dict[str, object]:
    options: dict[str, object] = {"to": to}
    if content is None:
        options["body"] = body
    else:
        options["content_sid"], options["content_variables"] = content.sid, content.variables
    # An alphanumeric sender id may start with "MG" too; only a real sid is a service.
    if MESSAGING_SERVICE_SID.fullmatch(sender):
        options["messaging_service_sid"] = sender
    else:
        options["from_"] = sender
    if callback_id is not None:
        options["status_callback"] = status_callback_url(public_url, callback_id)
    if validity_period is not None:
        options["validity_period"] = validity_period
    return options


_last_async_headers: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "rapidresponse_twilio_headers", default=None
)


class _AsyncHeaderKeepingHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The SDK's asyncio client with a bounded connection pool and a real timeout.

    It remembers each task's last response headers: the SDK's exceptions drop them, and
    with them Twilio's Retry-After.
    """

    def __init__(self, timeout: float, concurrency: int) -> None:
        super().__init__(pool_connections=False, timeout=timeout, logger=_quiet_logger)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        _last_async_headers.set(None)
        request_headers = dict(headers or {})
        if auth is not None:
            request_headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
        async with self.session.request(
            method.upper(),
            url,
            params=cast(Any, params),
            data=data,
            headers=request_headers,
            allow_redirects=allow_redirects,
        ) as answer:
            text = await answer.text()
            _last_async_headers.set(answer.headers)
            return Response(answer.status, text, answer.headers)

    def last_headers(self) -> Any:
        return _last_async_headers.get()


class _HeaderKeepingHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The SDK's client, remembering each thread's last response headers.

    The SDK's exceptions drop the headers, and with them Twilio's Retry-After.
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._local = threading.local()

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self._local.headers = None
        response = super().request(*args, **kwargs)
        self._local.headers = response.headers
        return response

    def last_headers(self) -> Any:
        return getattr(self._local, "headers", None)


def _send_error(exc: TwilioRestException | TwilioServiceException, headers: Any) -> SendError:
    code = exc.code if isinstance(exc.code, int) and exc.code >= MIN_TWILIO_ERROR_CODE else None
    # Twilio's own message can quote the 'To' number, so we build ours from the code.
    return SendError(
        f"provider answered HTTP {exc.status} (error {code})",
        permanent=code in PERMANENT_CODES,
        code=code,
        retry_after=retry_after_seconds(headers.get("Retry-After") if headers else None),
    )


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class SimulatorSender:
    """Keeps outbound messages in the database outbox that the simulator page shows.

    The number and the text are sealed like everything else, so the demo database
    is no softer a target than a real one. With a Redis connection, a tracked send (one
    naming its Delivery) gets the status callbacks Twilio would send, a moment later
    (see ``dispatch.simulator``), so the board's 'delivered' counts mean something.
    """

    def __init__(
        self,
        database: Database,
        cipher: ShreddingCipher,
        index: BlindIndex,
        redis: Redis | None = None,
        channel: Channel = Channel.SMS,
    ) -> None:
        self.database = database
        self.cipher = cipher
        self.index = index
        self.redis = redis
        self.channel = channel  # the simulated phone's conversation it lands in

    def send(
        self,
        to: str,
        body: str,
        *,
        callback_id: str | None = None,
        validity_period: int | None = None,
    ) -> str:
        sid = simulated_sid()
        outbox_id = store_phone_message(
            self.database,
            self.cipher,
            self.index,
            to,
            body,
            sid=sid,
            inbound=False,
            channel=self.channel.value,
        )
        if callback_id is not None and self.redis is not None:  # after the commit
            for delay, stage in SIMULATED_REPORTS:
                enqueue_in(
                    self.redis, QueueName.REPLIES, delay, REPORT_JOB, outbox_id, callback_id, stage
                )
        return sid


def simulated_sid() -> str:
    return "SM" + uuid.uuid4().hex


def store_phone_message(
    database: Database,
    cipher: ShreddingCipher,
    index: BlindIndex,
    phone: str,
    body: str,
    *,
    sid: str,
    inbound: bool,
    channel: str = "sms",
) -> int:
    """One message of a simulated phone's conversation (on ``channel``: "sms" or
    "whatsapp"), sealed under the day's shred key (erased with it, like report text);
    returns its row id."""
    key = outbox_key(utcnow().date().isoformat())
    with database.session() as session:
        row = OutboxMessage(
            sid=sid,
            to_index=index.digest(phone, Purpose.PHONE_INDEX),
            to_sealed=cipher.seal(key, phone, Purpose.OUTBOX_TO),
            body_sealed=cipher.seal(key, body, Purpose.OUTBOX_BODY),
            segments=segment(body).segments,
            inbound=inbound,
            channel=channel,
        )
        session.add(row)
        session.flush()
        return row.id


# Twilio reports 'sent' when the carrier takes a message and 'delivered' when the phone
# does, typically a few seconds apart; the simulator does the same, as a job.
SIMULATED_REPORTS = ((timedelta(seconds=1), "sent"), (timedelta(seconds=3), "final"))
REPORT_JOB = "dispatch.simulator.report_delivery"  # named: it imports our Services


class OptOutGuard:
    """Wraps the real sender: nothing reaches an opted-out number, whatever code path asks.

    Checked here, at the last step before the provider, and not only in the handlers, so
    that no later feature can forget it. An opted-out number gets nothing, except the
    one STOP confirmation (``send_reply`` with that kind), which the database lets
    through once. With ``redact_after`` (PROVIDER_REDACTION), every message it sends is
    deleted at the provider that long after it left.
    """

    def __init__(
        self,
        inner: Sender,
        database: Database,
        cipher: ShreddingCipher,
        index: BlindIndex,
        pacer: Pacer | None = None,
        redact_after: timedelta | None = None,
    ) -> None:
        self.inner = inner
        self.database = database
        self.cipher = cipher  # seals the ids waiting to be deleted at the provider
        self.index = index
        self.pacer = pacer
        self.redact_after = redact_after

    def send(
        self,
        to: str,
        body: str,
        *,
        callback_id: str | None = None,
        validity_period: int | None = None,
    ) -> str:
        return self.send_reply(
            to, body, ReplyKind.NORMAL, callback_id=callback_id, validity_period=validity_period
        )

    def send_reply(
        self,
        to: str,
        body: str,
        kind: ReplyKind,
        *,
        callback_id: str | None = None,
        validity_period: int | None = None,
    ) -> str:
        with self.database.session() as session:
            allowed = permit_text(session, self.index, to, kind)
        if not allowed:
            raise SendError(
                "the recipient has opted out", permanent=True, code=next(iter(OPTED_OUT_CODES))
            )
        self._wait_for_slot(body)
        sid = self.inner.send(to, body, callback_id=callback_id, validity_period=validity_period)
        if self.redact_after is not None:
            with self.database.session() as session:
                redaction.schedule(session, self.cipher, sid, utcnow() + self.redact_after)
        return sid

    def _wait_for_slot(self, body: str) -> None:
        """Pages and replies share the number's rate with broadcasts."""
        if self.pacer is None:
            return
        try:
            wait = self.pacer.reserve([segment(body).segments])[0]
        except (RedisError, OSError) as error:
            # A page must not wait for Redis: the carrier queues a brief excess anyway.
            _log.warning("pacer unreachable (%s); sending unpaced", error.__class__.__name__)
            return
        if wait > 0:
            time.sleep(wait)


def make_sender(
    settings: Settings,
    database: Database,
    cipher: ShreddingCipher,
    index: BlindIndex,
    pacer: Pacer | None = None,
    redis: Redis | None = None,
) -> OptOutGuard:
    """The sender SMS_BACKEND names, behind the opt-out guard (and the pacer, if any).

    ``redis`` lets the simulator schedule its delivery reports.
    """
    backend = _backend(settings, database, cipher, index, redis)
    return OptOutGuard(backend, database, cipher, index, pacer, redaction_delay(settings))


def redaction_delay(settings: Settings) -> timedelta | None:
    """How long after it leaves a reply is deleted at the provider; None: never."""
    if settings.sms_backend != "twilio" or not settings.provider_redaction:
        return None
    return redaction.SETTLE


def _backend(
    settings: Settings,
    database: Database,
    cipher: ShreddingCipher,
    index: BlindIndex,
    redis: Redis | None,
) -> Sender:
    if settings.sms_backend == "twilio":
        return twilio_sender(settings)
    return SimulatorSender(database, cipher, index, redis)


def twilio_sender(settings: Settings) -> TwilioSender:
    """The Twilio account the settings name (config checks they are complete)."""
    assert settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from
    return TwilioSender(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        settings.twilio_from,
        public_url=settings.public_url,
        api_url=settings.twilio_api_url,
    )


class AsyncSimulatorSender:
    """The simulator's outbox behind the broadcast path's asyncio interface."""

    def __init__(self, inner: SimulatorSender) -> None:
        self.inner = inner

    async def send(
        self,
        to: str,
        body: str,
        *,
        callback_id: str | None,
        validity_period: int | None,
        content: Content | None = None,
    ) -> str:
        # A template says the same text in its approved frame; the phone shows the text.
        return self.inner.send(to, body, callback_id=callback_id, validity_period=validity_period)

    async def close(self) -> None:
        return None


def make_async_sender(
    settings: Settings,
    database: Database,
    cipher: ShreddingCipher,
    index: BlindIndex,
    redis: Redis | None = None,
    channel: Channel = Channel.SMS,
) -> AsyncSender:
    """The broadcast path's sender for SMS_BACKEND on ``channel``; call inside the event
    loop. WhatsApp goes from WHATSAPP_FROM (config checks it is set before a ledger ever
    names WhatsApp with Twilio).

    The opt-out check for broadcasts is made by the batch job itself, for a whole
    chunk at a time, just before it sends (see ``dispatch.broadcast``).
    """
    if settings.sms_backend == "twilio":
        on_whatsapp = channel is Channel.WHATSAPP
        sender = settings.whatsapp_from if on_whatsapp else settings.twilio_from
        assert settings.twilio_account_sid and settings.twilio_auth_token and sender
        return AsyncTwilioSender(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            sender,
            public_url=settings.public_url,
            api_url=settings.twilio_api_url,
            concurrency=settings.send_concurrency,
            to_prefix=ADDRESS_PREFIX if on_whatsapp else "",
        )
    return AsyncSimulatorSender(SimulatorSender(database, cipher, index, redis, channel))
